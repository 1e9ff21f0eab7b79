"""The node's SSH host key maker (ansible/roles/base/files/usr/lib/maculaos/ssh-hostkey), run
against a temporary /etc/ssh the way power cuts and old releases leave it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "ansible/roles/base/files/usr/lib/maculaos"
SCRIPT = FILES / "ssh-hostkey"
FINGERPRINTS = FILES / "ssh-fingerprints"
KEY = "ssh_host_ed25519_key"
# what the scripts keep beside the keys to skip ssh-keygen on later boots
RECORDS = {".maculaos-hostkey-checked", ".maculaos-fingerprints"}


def run(ssh_dir: Path, script: Path = SCRIPT, path: str | None = None) -> str:
    env = {**os.environ, "MACULAOS_SSH_DIR": str(ssh_dir), "MACULAOS_RUN_DIR": str(ssh_dir.parent)}
    if path:
        env["PATH"] = path
    r = subprocess.run(
        ["sh", str(script)], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def keys(ssh_dir: Path) -> list[str]:
    return sorted(p.name for p in ssh_dir.iterdir() if p.name not in RECORDS)


@pytest.fixture
def no_keygen(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose ssh-keygen records each run, then does its work."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "keygen-ran"
    fake = bin_dir / "ssh-keygen"
    real = shutil.which("ssh-keygen")
    fake.write_text(f'#!/bin/sh\necho "$@" >> {ran}\nexec {real} "$@"\n')
    fake.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", ran


def public(path: Path) -> str:
    return " ".join(path.read_text().split()[:2])


@pytest.fixture
def ssh_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ssh"
    d.mkdir()
    return d


def test_first_boot_makes_one_ed25519_pair(ssh_dir: Path) -> None:
    assert "made this node's SSH host key" in run(ssh_dir)
    assert keys(ssh_dir) == [KEY, KEY + ".pub"]
    assert (ssh_dir / KEY).stat().st_mode & 0o777 == 0o600
    assert public(ssh_dir / (KEY + ".pub")).startswith("ssh-ed25519 ")
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(ssh_dir / KEY)], capture_output=True, text=True, check=True
    ).stdout
    assert " ".join(derived.split()[:2]) == public(ssh_dir / (KEY + ".pub"))


def test_later_boots_keep_the_key(ssh_dir: Path) -> None:
    run(ssh_dir)
    before = (ssh_dir / KEY).read_bytes(), (ssh_dir / (KEY + ".pub")).read_bytes()
    assert run(ssh_dir) == ""
    assert ((ssh_dir / KEY).read_bytes(), (ssh_dir / (KEY + ".pub")).read_bytes()) == before


@pytest.mark.parametrize("damage", ["missing", "empty", "other key"])
def test_a_good_private_key_keeps_the_identity_when_its_public_half_is_damaged(
    ssh_dir: Path, damage: str
) -> None:
    run(ssh_dir)
    private = (ssh_dir / KEY).read_bytes()
    want = public(ssh_dir / (KEY + ".pub"))
    pub = ssh_dir / (KEY + ".pub")
    if damage == "missing":
        pub.unlink()
    elif damage == "empty":
        pub.write_text("")
    else:
        other = ssh_dir / "other"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True
        )
        pub.write_text(other.with_suffix(".pub").read_text())
        other.unlink()
        other.with_suffix(".pub").unlink()
    assert "made" in run(ssh_dir)
    assert (ssh_dir / KEY).read_bytes() == private and public(pub) == want
    assert not list(ssh_dir.glob("*.tmp*"))


@pytest.mark.parametrize("damage", ["missing", "empty", "garbage", "torn tmp files"])
def test_an_unusable_private_key_gets_a_new_pair(ssh_dir: Path, damage: str) -> None:
    run(ssh_dir)
    old = public(ssh_dir / (KEY + ".pub"))
    private = ssh_dir / KEY
    if damage == "missing":
        private.unlink()
    elif damage == "empty":
        private.write_bytes(b"")
    elif damage == "garbage":
        private.write_bytes(os.urandom(300))
    else:  # a power cut during the first boot's keygen: only the temporary names exist
        private.unlink()
        (ssh_dir / (KEY + ".pub")).unlink()
        (ssh_dir / (KEY + ".tmp")).write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert "made this node's SSH host key" in run(ssh_dir)
    new = public(ssh_dir / (KEY + ".pub"))
    assert new != old and new.startswith("ssh-ed25519 ")
    assert keys(ssh_dir) == [KEY, KEY + ".pub"]


def test_keys_of_an_older_release_are_left_alone(ssh_dir: Path) -> None:
    """A node from a release that made RSA and ECDSA keys too: they stay (sshd offers them,
    so the fleet's known_hosts still matches); the ed25519 key is kept as it is."""
    for kind in ("rsa", "ecdsa", "ed25519"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(ssh_dir / f"ssh_host_{kind}_key")],
            check=True,
        )
    before = {p: (ssh_dir / p).read_bytes() for p in keys(ssh_dir)}
    assert run(ssh_dir) == ""
    assert {p: (ssh_dir / p).read_bytes() for p in keys(ssh_dir)} == before


def test_a_checked_pair_is_not_derived_again_on_later_boots(
    ssh_dir: Path, no_keygen: tuple[str, Path]
) -> None:
    run(ssh_dir)
    path, ran = no_keygen
    assert run(ssh_dir, path=path) == ""
    assert not ran.exists()


@pytest.mark.parametrize("damage", ["private garbage", "public of another key", "link retargeted"])
def test_a_pair_whose_bytes_changed_after_its_check_is_checked_again(
    ssh_dir: Path, tmp_path: Path, no_keygen: tuple[str, Path], damage: str
) -> None:
    """The record holds what the files contain: damage, another key, or a key kept elsewhere
    behind a link whose target was replaced are checked again (and mended or remade)."""
    run(ssh_dir)
    path, ran = no_keygen
    pub = ssh_dir / (KEY + ".pub")
    if damage == "private garbage":
        (ssh_dir / KEY).write_bytes(os.urandom(400))
    elif damage == "public of another key":
        other = tmp_path / "other"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True
        )
        pub.write_text(other.with_suffix(".pub").read_text())
    else:  # the keys live elsewhere (a link each), and another pair replaces them there
        store = tmp_path / "store"
        store.mkdir()
        for name in (KEY, KEY + ".pub"):
            (store / name).write_bytes((ssh_dir / name).read_bytes())
            (ssh_dir / name).unlink()
            (ssh_dir / name).symlink_to(store / name)
        run(ssh_dir)  # checked and recorded through the links
        (store / KEY).unlink()
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(store / "k")], check=True
        )
        (store / "k").rename(store / KEY)
        (store / "k.pub").rename(store / (KEY + ".pub"))
    run(ssh_dir, path=path)
    assert ran.read_text().startswith("-y ")
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(ssh_dir / KEY)], capture_output=True, text=True, check=True
    ).stdout
    assert " ".join(derived.split()[:2]) == public(pub)
    ran.unlink()
    assert run(ssh_dir, path=path) == "" and not ran.exists()


def test_a_repair_that_could_not_be_written_is_not_recorded(ssh_dir: Path, tmp_path: Path) -> None:
    """A wrong public half that cannot be replaced (no room, a directory in the way) is not
    recorded as checked: the next boot tries again."""
    run(ssh_dir)
    good = public(ssh_dir / (KEY + ".pub"))
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    (ssh_dir / (KEY + ".pub")).write_text(other.with_suffix(".pub").read_text())
    (ssh_dir / (KEY + ".pub.tmp")).mkdir()  # the write cannot happen
    env = {**os.environ, "MACULAOS_SSH_DIR": str(ssh_dir)}
    r = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "could not write" in r.stderr
    assert not (ssh_dir / ".maculaos-hostkey-checked").exists()
    (ssh_dir / (KEY + ".pub.tmp")).rmdir()
    assert "made" in run(ssh_dir) and public(ssh_dir / (KEY + ".pub")) == good
    assert (ssh_dir / ".maculaos-hostkey-checked").stat().st_mode & 0o777 == 0o600


def fingerprints_shown(ssh_dir: Path) -> str:
    return (ssh_dir.parent / "motd.d/40-maculaos-ssh").read_text()


def test_fingerprints_are_shown_without_ssh_keygen_until_a_key_changes(
    ssh_dir: Path, no_keygen: tuple[str, Path]
) -> None:
    run(ssh_dir)
    run(ssh_dir, FINGERPRINTS)
    first = fingerprints_shown(ssh_dir)
    want = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(ssh_dir / (KEY + ".pub"))],
        capture_output=True, text=True, check=True,
    ).stdout.split()[1]  # fmt: skip
    assert f"ED25519 {want}" in first
    assert (ssh_dir.parent / "issue.d/40-maculaos-ssh.issue").read_text() == first
    path, ran = no_keygen
    (ssh_dir.parent / "motd.d/40-maculaos-ssh").unlink()
    run(ssh_dir, FINGERPRINTS, path=path)
    assert fingerprints_shown(ssh_dir) == first and not ran.exists()
    # a new key (another node's disk image, a key a person replaced): shown anew
    (ssh_dir / KEY).unlink()
    run(ssh_dir)
    run(ssh_dir, FINGERPRINTS)
    assert fingerprints_shown(ssh_dir) != first
    assert "ED25519 SHA256:" in fingerprints_shown(ssh_dir)
