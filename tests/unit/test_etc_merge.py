"""Issue 9 item 6: a node's /etc changes follow it to a new release, and the release's new
files and system users reach it (ansible/roles/kernel/files/usr/lib/maculaos/etc-merge, run
here by the shell, on real directory trees with a real overlayfs whiteout where the host
allows making one)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
MERGE = REPO / "ansible/roles/kernel/files/usr/lib/maculaos/etc-merge"
BUSYBOX = shutil.which("busybox")
SH = [BUSYBOX, "sh"] if BUSYBOX else ["sh"]

PASSWD_V1 = "root:x:0:0:root:/root:/bin/bash\nmacula:x:1000:1000::/home/macula:/bin/bash\n"
SHADOW_V1 = "root:*:20000:0:99999:7:::\nmacula:!:20000:0:99999:7:::\n"
GROUP_V1 = "root:x:0:\nsudo:x:27:macula\nmacula:x:1000:\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def merge(
    tmp: Path, old: dict[str, str], new: dict[str, str], upper: dict[str, str]
) -> tuple[Path, list[str]]:
    o, n, u = tree(tmp / "old", old), tree(tmp / "new", new), tree(tmp / "upper", upper)
    out = tmp / "out"
    r = subprocess.run(
        [*SH, str(MERGE), str(o), str(n), str(u), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    return out, sorted(r.stdout.splitlines())


def files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_item6_a_new_system_user_reaches_a_node_whose_person_added_a_user(tmp_path: Path) -> None:
    """Today's fault: the person's useradd copied passwd up, and the release's new system
    user never showed. Now both are there, and the person's password change stays."""
    new_passwd = PASSWD_V1.replace(
        "\nmacula:", "\nmaculasvc:x:990:990::/nonexistent:/usr/sbin/nologin\nmacula:", 1
    )
    alice_shadow = "alice:$y$a:20001:0:99999:7:::\n"
    person_group = GROUP_V1.replace("sudo:x:27:macula", "sudo:x:27:macula,alice")
    out, log = merge(
        tmp_path,
        old={"passwd": PASSWD_V1, "shadow": SHADOW_V1, "group": GROUP_V1},
        new={"passwd": new_passwd, "shadow": SHADOW_V1 + "maculasvc:!:20100::::::\n",
             "group": GROUP_V1 + "maculasvc:x:990:\n"},
        upper={
            "passwd": PASSWD_V1 + "alice:x:1001:1001::/home/alice:/bin/bash\n",
            "shadow": SHADOW_V1.replace("macula:!:", "macula:$y$hash:") + alice_shadow,
            "group": person_group + "alice:x:1001:\n",
        },
    )  # fmt: skip
    assert log == ["merge group", "merge passwd", "merge shadow"]
    got = files(out)
    assert got["passwd"].splitlines() == [
        "root:x:0:0:root:/root:/bin/bash",
        "maculasvc:x:990:990::/nonexistent:/usr/sbin/nologin",
        "macula:x:1000:1000::/home/macula:/bin/bash",
        "alice:x:1001:1001::/home/alice:/bin/bash",
    ]
    assert "macula:$y$hash:" in got["shadow"] and "maculasvc:!:" in got["shadow"]
    assert "alice:$y$a:" in got["shadow"]
    assert "sudo:x:27:macula,alice" in got["group"] and "maculasvc:x:990:" in got["group"]


def test_item6_without_the_old_release_the_persons_entries_win(tmp_path: Path) -> None:
    """The old slot could not be read (OLD missing): nothing the person set is lost."""
    shadow = SHADOW_V1.replace("macula:!:", "macula:$y$hash:")
    out, log = merge(tmp_path, {}, {"shadow": SHADOW_V1, "motd": "v2\n"},
                     {"shadow": shadow, "motd": "v1\n"})  # fmt: skip
    got = files(out)
    assert "macula:$y$hash:" in got["shadow"] and "root:*:" in got["shadow"]
    assert got["motd"] == "v1\n" and got["motd.maculaos-new"] == "v2\n"
    assert log == ["conflict motd", "merge shadow"]


def test_item6_defaults_edits_and_node_files(tmp_path: Path) -> None:
    out, log = merge(
        tmp_path,
        old={"motd": "v1\n", "ssh/sshd_config": "v1 defaults\n", "default/app": "A=1\n",
             "gone.conf": "old\n", "edited-gone.conf": "old\n"},
        new={"motd": "v2\n", "ssh/sshd_config": "v1 defaults\n", "default/app": "A=2\n",
             "systemd/system/new.service": "[Unit]\n"},
        upper={
            "motd": "v1\n",  # copied up, never changed: the new default must show
            "ssh/sshd_config": "person's\n",  # default unchanged: the person's stays
            "default/app": "A=person\n",  # both changed: person's kept, new beside it
            "ssh/ssh_host_ed25519_key": "KEY\n",  # the node's identity
            "gone.conf": "old\n",  # dropped by the release, untouched
            "edited-gone.conf": "mine\n",  # dropped by the release, but edited
        },
    )  # fmt: skip
    got = files(out)
    assert "motd" not in got and "gone.conf" not in got
    assert got["ssh/sshd_config"] == "person's\n"
    assert got["default/app"] == "A=person\n" and got["default/app.maculaos-new"] == "A=2\n"
    assert got["ssh/ssh_host_ed25519_key"] == "KEY\n" and got["edited-gone.conf"] == "mine\n"
    assert "conflict default/app" in log and "drop motd" in log


def test_item6_modes_owners_and_links_survive(tmp_path: Path) -> None:
    upper = tree(tmp_path / "upper", {"ssh/key": "secret\n"})
    (upper / "ssh/key").chmod(0o600)
    os.symlink("/usr/share/zoneinfo/Europe/Berlin", upper / "localtime")
    tree(tmp_path / "old", {"ssh/.keep": ""})
    os.symlink("/usr/share/zoneinfo/Etc/UTC", tmp_path / "old/localtime")
    tree(tmp_path / "new", {"ssh/.keep": ""})
    os.symlink("/usr/share/zoneinfo/Etc/UTC", tmp_path / "new/localtime")
    out, log = merge(tmp_path, {}, {}, {})
    assert stat.S_IMODE((out / "ssh/key").stat().st_mode) == 0o600
    assert os.readlink(out / "localtime") == "/usr/share/zoneinfo/Europe/Berlin"
    assert log == ["keep localtime", "keep ssh/key"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a whiteout is a 0:0 character device: root")
def test_item6_a_deleted_default_stays_deleted_while_the_release_ships_it(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    os.mknod(upper / "issue", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.mknod(upper / "obsolete", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    out, log = merge(tmp_path, {"issue": "1\n", "obsolete": "x\n"}, {"issue": "2\n"}, {})
    assert stat.S_ISCHR((out / "issue").lstat().st_mode)
    assert not (out / "obsolete").exists() and not (out / "obsolete").is_symlink()
    assert log == ["drop obsolete", "keep issue"]


def test_item6_an_existing_output_is_refused(tmp_path: Path) -> None:
    for d in ("old", "new", "upper", "out"):
        (tmp_path / d).mkdir()
    dirs = [str(tmp_path / d) for d in ("old", "new", "upper", "out")]
    r = subprocess.run(
        [*SH, str(MERGE), *dirs], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 2 and "exists" in r.stderr


NAMES = st.sampled_from(["a", "b", "sub/c", "sub/d e", "x-y.conf", "ünï", "sub/deep/f"])
TEXT = st.sampled_from(["", "1\n", "2\n", "3\n", "a b\n", "\x00bin\n", "no newline"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    old=st.dictionaries(NAMES, TEXT, max_size=5),
    new=st.dictionaries(NAMES, TEXT, max_size=5),
    upper=st.dictionaries(NAMES, TEXT, max_size=5),
)
def test_item6_three_way_rules_hold_for_any_trees(
    tmp_path_factory: pytest.TempPathFactory,
    old: dict[str, str],
    new: dict[str, str],
    upper: dict[str, str],
) -> None:
    """What the node sees after the merge (the overlay of OUT over NEW) is, for every path:
    the node's version where only the node changed it, the new default where only the
    release changed it, the node's where both did (with the default beside it)."""

    def ok(d: dict[str, str]) -> bool:  # a name cannot be a file and a directory at once
        return not any(k.startswith(j + "/") for k in d for j in d)

    if not (ok(old) and ok(new) and ok(upper) and ok({**old, **new, **upper})):
        return
    tmp = tmp_path_factory.mktemp("m")
    out, _ = merge(tmp, old, new, upper)
    seen = {**{k: v for k, v in new.items()}, **files(out)}
    for path, mine in upper.items():
        if path in old and old[path] == mine:  # an untouched copy
            assert seen.get(path) == new.get(path), path
        elif path in new and path in old and old[path] != new[path]:
            assert seen[path] == mine and seen[path + ".maculaos-new"] == new[path], path
        else:
            assert seen[path] == mine, path
    for path in set(new) - set(upper):
        assert seen[path] == new[path]


def test_item6_group_members_of_both_sides_and_id_clashes_are_reported(tmp_path: Path) -> None:
    old_group = "root:x:0:\nadm:x:4:\n"
    out, log = merge(
        tmp_path,
        old={"group": old_group, "passwd": "root:x:0:0::/root:/bin/sh\n"},
        new={"group": "root:x:0:\nadm:x:4:maculasvc\nmaculasvc:x:991:\n",
             "passwd": "root:x:0:0::/root:/bin/sh\nmaculasvc:x:991:991::/:/bin/false\n"},
        upper={"group": "root:x:0:\nadm:x:4:alice\nprometheus:x:991:\n",
               "passwd": "root:x:0:0::/root:/bin/sh\nprometheus:x:991:991::/:/bin/false\n"},
    )  # fmt: skip
    got = files(out)
    assert "adm:x:4:alice,maculasvc" in got["group"].splitlines()
    assert "conflict group:prometheus (id 991 used twice)" in log
    assert "conflict passwd:prometheus (id 991 used twice)" in log


def test_item6_mode_changes_and_a_stale_maculaos_new(tmp_path: Path) -> None:
    upper = tree(tmp_path / "upper", {"motd": "v1\n", "secret.conf": "mine\n",
                                      "app.conf": "mine\n", "app.conf.maculaos-new": "v2\n",
                                      "-dash": "x\n"})  # fmt: skip
    (upper / "motd").chmod(0o600)  # the person only tightened it
    (upper / "secret.conf").chmod(0o644)
    old = tree(tmp_path / "old", {"motd": "v1\n", "secret.conf": "s1\n", "app.conf": "v2\n",
                                  "-dash": "x\n"})  # fmt: skip
    new = tree(tmp_path / "new", {"motd": "v2\n", "secret.conf": "s2\n", "app.conf": "v3\n",
                                  "-dash": "x\n"})  # fmt: skip
    (old / "secret.conf").chmod(0o644)
    (new / "secret.conf").chmod(0o600)  # the release made it secret
    out, log = merge(tmp_path, {}, {}, {})  # the trees above, as they are
    got = files(out)
    assert got["motd"] == "v2\n" and stat.S_IMODE((out / "motd").stat().st_mode) == 0o600
    assert got["secret.conf"] == "mine\n"
    assert stat.S_IMODE((out / "secret.conf").stat().st_mode) == 0o600
    assert got["app.conf.maculaos-new"] == "v3\n"  # not the stale v2 one
    assert "keep-mode motd" in log and "keep -dash" in log


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tiny tmpfs: root")
def test_item6_a_merge_that_runs_out_of_space_fails_and_says_so(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        tree(tmp_path / "upper", {f"f{i}": "x" * 8192 for i in range(20)})
        (tmp_path / "old").mkdir()
        (tmp_path / "new").mkdir()
        r = subprocess.run(
            [*SH, str(MERGE), *(str(tmp_path / d) for d in ("old", "new", "upper")),
             str(small / "out")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert r.returncode == 1 and "could not be written" in r.stderr
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_item6_too_many_entries_fail_fast(tmp_path: Path) -> None:
    tree(tmp_path / "upper", {f"f{i}": "" for i in range(30)})
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    r = subprocess.run(
        [*SH, str(MERGE), *(str(tmp_path / d) for d in ("old", "new", "upper", "out"))],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ["PATH"], "ETC_MERGE_MAX": "10"},
    )  # fmt: skip
    assert r.returncode == 1 and "more than 10" in r.stderr
