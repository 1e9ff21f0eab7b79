"""Issue 9 items 1-3 and 12 (upgrade side): an install never overwrites the last good system,
a rolled-back release is not installed again by itself, LAST_GOOD never names a slot that is
not confirmed good, and read-only commands say plainly when they need root.

``maculaos upgrade --apply`` runs for real against a local update source; only RAUC (``rauc
info``/``rauc install``, which need a real slot) and the kernel command line are stood in."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maculaos import __main__ as cli_main
from maculaos.config import validate
from maculaos.upgrade import bootenv, cli, health, state
from maculaos.upgrade.bootenv import SLOTS, BootEnv, Slot
from tests.support import fakedisk, grubemu

BOOT_ID = "c0ffee00-0000-4000-8000-000000000001"


class Node:
    """A node's GRUB environment, upgrade state and an update source, in a temp dir."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.env_file = tmp / "esp"
        bootenv.init(self.env_file)
        self.source = tmp / "releases"
        self.source.mkdir()
        self.installed: list[str] = []
        self.booted = "A"
        self.cfg = validate.defaults()
        monkeypatch.setattr(bootenv, "ENV_DIR", self.env_file)
        monkeypatch.setattr(state, "STATE_DIR", tmp / "upgrade")
        monkeypatch.setattr(cli, "DOWNLOADS", tmp / "downloads")
        self.overlays = tmp / "state-overlay"
        monkeypatch.setattr(state, "OVERLAYS", self.overlays)
        monkeypatch.setattr(state, "boot_id", lambda *a: BOOT_ID)
        monkeypatch.setattr(state, "os_release_version", lambda *a: "0.1.0")
        monkeypatch.setattr(state, "slot_version", lambda name, booted: None)  # nothing to mount
        monkeypatch.setattr(cli, "_booted", lambda: self.booted)
        monkeypatch.setattr(bootenv, "booted_slot", lambda *a: self.booted)
        monkeypatch.setattr(cli, "_config", lambda: self.cfg)
        monkeypatch.setattr(cli, "_compatible", lambda: "maculaos-amd64")
        monkeypatch.setattr(cli, "_arch", lambda: "amd64")
        monkeypatch.setattr(cli, "rauc_info", self._rauc_info)
        fakedisk.install(monkeypatch, tmp / "disks")  # booted from vda, names point there
        real_run = subprocess.run

        def run(argv: list[str], *a: Any, **kw: Any) -> Any:
            if argv[:2] == ["rauc", "install"]:
                self.installed.append(Path(argv[2]).name)
                return subprocess.CompletedProcess(argv, 0)
            return real_run(argv, *a, **kw)

        monkeypatch.setattr(subprocess, "run", run)

    @staticmethod
    def _rauc_info(bundle: Path) -> dict[str, Any]:
        version = bundle.name.split("-")[2]
        return {"update": {"compatible": "maculaos-amd64", "version": version}}

    def publish(self, version: str, content: bytes | None = None) -> str:
        path = self.source / f"macula-os-{version}-amd64.raucb"
        path.write_bytes(content or f"bundle {version}".encode())
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def judged(self, healthy: bool = True, boot_id: str = BOOT_ID) -> None:
        data = state.load()
        data["last_health"] = {
            "slot": self.booted, "version": "0.1.0", "healthy": healthy,
            "reason": "ssh.service up" if healthy else "required unit ssh.service failed",
            "time": state.now(), "boot_id": boot_id,
        }  # fmt: skip
        state.save(data)

    def apply(self, *extra: str) -> int:
        return cli_main.main(["upgrade", "--apply", "--from", str(self.source), *extra])


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    return Node(tmp_path, monkeypatch)


# item 1: never overwrite the last good system


def test_item1_apply_refuses_while_the_running_slot_is_on_trial(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    """Running B on trial: A is the only known-good system and must not be written."""
    env = BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 2)}, "A")
    bootenv.write(env)
    node.booted = "B"
    node.judged()
    node.publish("0.2.0")
    before = grubemu.read_dir(node.env_file)
    assert node.apply() == 1
    err = capsys.readouterr().err
    assert "not installing now" in err and "trial (2 boots left)" in err
    assert "slot A may hold the only known-good system" in err and "Allowed once" in err
    assert node.installed == [] and grubemu.read_dir(node.env_file) == before
    assert state.load()["installs"] == {}


def test_item1_apply_refuses_before_the_health_gate_has_judged_this_boot(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    node.judged(boot_id="an-earlier-boot")
    node.publish("0.2.0")
    assert node.apply() == 1
    assert "has not judged this boot yet" in capsys.readouterr().err
    assert node.installed == []


def test_item1_apply_refuses_on_an_unhealthy_boot_while_the_other_slot_is_confirmed(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    bootenv.write(BootEnv(["A", "B"], {"A": Slot(True, None), "B": Slot(True, None)}, "A"))
    node.judged(healthy=False)
    node.publish("0.2.0")
    assert node.apply() == 1
    err = capsys.readouterr().err
    assert "this boot is unhealthy (required unit ssh.service failed)" in err
    assert "--ignore-health" in err and "--rollback" in err and node.installed == []
    assert node.apply("--ignore-health") == 0  # a person who knows better
    assert node.installed == ["macula-os-0.2.0-amd64.raucb"]


def test_item1_an_unhealthy_boot_may_install_when_nothing_confirmed_is_overwritten(
    node: Node,
) -> None:
    """Slot B is empty (bad): an install cannot lose a known-good system, and it may be the
    fix for what makes this boot unhealthy (an offline node updating from a USB stick)."""
    node.judged(healthy=False)
    node.publish("0.2.0")
    assert node.apply() == 0 and node.installed == ["macula-os-0.2.0-amd64.raucb"]


def test_item1_apply_never_overwrites_a_pending_rollback_target(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    """Running A, B established; `--rollback` (no reboot) made B primary: an install would
    go into B, the slot the node is about to boot."""
    bootenv.write(BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, None)}, "B"))
    node.judged()
    node.publish("0.2.0")
    assert node.apply() == 1
    assert "slot B is set to boot next" in capsys.readouterr().err
    assert node.installed == []


def test_item1_apply_installs_once_the_boot_is_confirmed(node: Node) -> None:
    node.judged()
    digest = node.publish("0.2.0")
    assert node.apply() == 0
    assert node.installed == ["macula-os-0.2.0-amd64.raucb"]
    assert state.load()["installs"]["B"]["sha256"] == digest


def test_item6_an_install_drops_the_target_slots_etc_layer_only(node: Node) -> None:
    """The slot about to get a new release loses its old /etc layer (the initramfs merges the
    running slot's into a new one at its first boot); the running slot's stays."""
    for slot in ("A", "B"):
        (node.overlays / f"etc.{slot}/upper").mkdir(parents=True)
        (node.overlays / f"etc.{slot}/upper/hostname").write_text(f"{slot}\n")
    node.judged()
    node.publish("0.2.0")
    assert node.apply() == 0
    assert not (node.overlays / "etc.B").exists()
    assert (node.overlays / "etc.A/upper/hostname").read_text() == "A\n"
    assert sorted(p.name for p in node.overlays.iterdir()) == ["etc.A"]


def test_item1_the_timer_logs_a_refusal_and_does_not_fail(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    node.cfg["maculaos.upgrade.auto_apply"] = True
    node.publish("0.2.0")  # the gate has not judged this boot
    args = cli_main.parser().parse_args(["upgrade", "--auto", "--from", str(node.source)])
    assert cli.cmd_auto(args) == 0
    assert "no update installed: not installing now" in capsys.readouterr().err
    assert node.installed == []


def test_item1_status_says_when_installing_is_blocked(
    node: Node, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bootenv.write(BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 1)}, "A"))
    node.booted = "B"
    monkeypatch.setattr(state, "slot_version", lambda name, booted: "0.1.0")
    assert cli_main.main(["upgrade", "status", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["install_blocked"] and "trial (1 boot left)" in out["install_blocked"]


# item 7: only the disk the node booted from is written


@pytest.mark.parametrize(("own", "labels_on"), [(None, "vda"), ("vda", "vdb")])
def test_item7_no_install_or_rollback_onto_a_disk_that_may_not_be_ours(
    node: Node,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    own: str | None,
    labels_on: str,
) -> None:
    """A second MaculaOS disk attached: either the initramfs could not tell which disk booted
    (None), or the partition names point at the other disk (vdb)."""
    node.judged()
    node.publish("0.2.0")
    bootenv.write(BootEnv(["A", "B"], {"A": Slot(True, None), "B": Slot(True, None)}, "A"))
    fakedisk.install(monkeypatch, tmp_path / "second", own=own, labels_on=labels_on)
    before = grubemu.read_dir(node.env_file)
    assert node.apply() == 1
    err = capsys.readouterr().err
    assert "not installing" in err and "nothing changed" in err
    why = "2 disks carry the same ESP" if own is None else "not a partition of the boot disk vda"
    assert why in err
    assert cli_main.main(["upgrade", "--rollback"]) == 1
    assert "not rolling back" in capsys.readouterr().err
    assert node.installed == [] and grubemu.read_dir(node.env_file) == before
    assert cli_main.main(["upgrade", "status", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["install_blocked"]
    if own is None:
        assert out["boot_disk"]["disk"] is None and "2 disks" in out["boot_disk"]["problem"]


# item 2: a release that was rolled back is not installed again by itself


def _roll_back(node: Node, version: str, digest: str) -> None:
    """What the health gate does when GRUB fell back from slot B."""
    env = BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 0)}, "A")
    bootenv.write(env)
    data = state.load()
    data["installs"]["B"] = {"version": version, "sha256": digest, "tries": 3,
                             "installed_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    data["attempts"].append({"slot": "B", "version": version, "time": "2026-01-01T00:05:00+00:00",
                             "reason": "required unit ssh.service failed"})  # fmt: skip
    assert health.detect_rollback(env, "A", "0.1.0", data) is not None


def test_item2_rolled_back_release_is_remembered_and_skipped(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = node.publish("0.3.0")
    _roll_back(node, "0.3.0", digest)
    node.judged()
    failed = state.load()["failed_releases"]
    assert [(f["version"], f["sha256"]) for f in failed] == [("0.3.0", digest)]
    assert "ssh.service failed" in failed[0]["reason"]
    assert node.apply() == 0
    out = capsys.readouterr().out
    assert "skipping 0.3.0: it was rolled back on this node" in out and "--retry-failed" in out
    assert "up to date" in out and node.installed == []
    # the timer skips it too
    node.cfg["maculaos.upgrade.auto_apply"] = True
    args = cli_main.parser().parse_args(["upgrade", "--auto", "--from", str(node.source)])
    assert cli.cmd_auto(args) == 0 and node.installed == []


def test_item2_an_older_good_release_is_still_offered_past_a_failed_one(node: Node) -> None:
    _roll_back(node, "0.3.0", node.publish("0.3.0"))
    node.publish("0.2.0")
    node.judged()
    assert node.apply() == 0
    assert node.installed == ["macula-os-0.2.0-amd64.raucb"]


def test_item2_a_person_can_insist_with_retry_failed(node: Node) -> None:
    _roll_back(node, "0.3.0", node.publish("0.3.0"))
    node.judged()
    assert node.apply("--retry-failed") == 0
    assert node.installed == ["macula-os-0.3.0-amd64.raucb"]


def test_item2_a_republished_bundle_of_the_same_version_is_a_new_release(node: Node) -> None:
    _roll_back(node, "0.3.0", node.publish("0.3.0"))
    node.publish("0.3.0", b"the fixed 0.3.0")
    node.judged()
    assert node.apply() == 0
    assert node.installed == ["macula-os-0.3.0-amd64.raucb"]


def test_item2_status_lists_failed_releases(
    node: Node, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _roll_back(node, "0.3.0", node.publish("0.3.0"))
    monkeypatch.setattr(state, "slot_version", lambda name, booted: "0.1.0")
    assert cli_main.main(["upgrade", "status"]) == 0
    out = capsys.readouterr().out
    assert "rolled back, not installed again by itself" in out and "0.3.0" in out


# item 3: LAST_GOOD only names a slot confirmed good since it was last written


def test_item3_a_slot_being_written_is_never_the_fallback() -> None:
    """Running B on trial (LAST_GOOD=A); A is being rewritten when B runs out of tries: GRUB
    must boot B (completely written), never the torn A."""
    env = BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 2)}, "A")
    env.set_state("A", False)  # RAUC: the target slot is bad while it is written
    assert env.last_good == ""
    env.slots["B"].left = 0  # B never became healthy
    assert env.choose() == ("B", True)


def test_item3_last_good_moves_to_the_established_slot_before_a_write() -> None:
    env = BootEnv(["A", "B"], {"A": Slot(True, None), "B": Slot(True, None)}, "B")
    env.set_state("B", False)
    assert env.last_good == "A"
    env.set_primary("B", 3)
    assert env.last_good == "A" and env.choose() == ("B", False) and env.recovery("B") == "A"


def test_item3_old_environments_without_a_valid_last_good_read_as_none() -> None:
    env = BootEnv.from_variables({"ORDER": "A B", "A_OK": "1", "LAST_GOOD": "C"})
    assert env.last_good == ""
    assert BootEnv.from_variables({"A_OK": "1", "A_LEFT": "x"}).slots["A"] == Slot(True, 0)


def _grub_boot(env: BootEnv) -> str:
    """One boot as grub.cfg does it: choose, and spend a try of a trial slot."""
    chosen, fallback = env.choose()
    slot = env.slots[chosen]
    if not fallback and slot.left is not None:
        slot.left -= 1
    return chosen


def _through_policy(env: BootEnv) -> BootEnv:
    """``env`` written as a policy copy (SEQ 9) with the counter GRUB would hold for it."""
    policy = env.policy(9)
    counter = {}
    for name in SLOTS:
        if policy[f"{name}_TRIES"]:
            left = env.slots[name].left or 0
            counter[f"{name}_CTR"] = policy[f"{name}_TRIAL"]
            counter[f"{name}_BOOTS"] = str(int(policy[f"{name}_TRIES"]) - left)
    block = bootenv.render_block(policy)
    return BootEnv.from_policy(bootenv.parse_block(block), counter, 9)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("install"), st.sampled_from(SLOTS), st.integers(1, 9)),
        st.tuples(st.just("torn"), st.sampled_from(SLOTS), st.just(0)),
        st.tuples(st.just("boot"), st.just("A"), st.just(0)),
        st.tuples(st.just("good"), st.just("A"), st.just(0)),
        st.tuples(st.just("bad"), st.sampled_from(SLOTS), st.just(0)),
        st.tuples(st.just("rollback"), st.sampled_from(SLOTS), st.just(0)),
    ),
    max_size=40,
)


@given(OPS)
def test_item3_last_good_is_always_a_confirmed_slot_and_fallback_is_safest(
    ops: list[tuple[str, str, int]],
) -> None:
    """Any sequence of installs (complete or torn by a power cut), boots, health verdicts and
    rollbacks: LAST_GOOD names a slot confirmed good since it was written, or nothing; GRUB
    boots a slot with tries left when there is one, else a completely written slot when
    there is one; recovery never names the slot just chosen."""
    env = BootEnv.factory()
    running = "A"
    for op, name, n in ops:
        if op == "install":  # RAUC: bad while written, then primary on trial
            env.set_state(name, False)
            env.set_primary(name, n)
        elif op == "torn":  # power cut in the middle of a write
            env.set_state(name, False)
        elif op == "boot":
            running = _grub_boot(env)
        elif op == "good":  # the health gate confirms the running slot
            env.set_state(running, True)
        elif op == "bad":
            env.set_state(name, False)
        elif op == "rollback" and env.established(name):
            env.set_primary(name, None)
        assert env.last_good == "" or env.established(env.last_good), (op, env)
        again = BootEnv.from_variables(bootenv.parse_block(bootenv.render_block(env.variables())))
        assert again == env
        assert _through_policy(env) == env  # the redundant layout reads back the same state
        chosen, fallback = env.choose()
        if any(env.slots[s].bootable for s in SLOTS):
            assert not fallback and env.slots[chosen].bootable
            assert chosen == next(s for s in env.order if env.slots[s].bootable)
        elif any(env.slots[s].ok for s in SLOTS):
            assert fallback and env.slots[chosen].ok
        else:
            assert fallback and chosen == env.order[0]
        assert env.recovery(chosen) != chosen


# item 12 (upgrade side): read-only commands as the macula user


def test_item12_status_as_a_normal_user_says_it_needs_root(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "access", lambda *a: False)
    assert cli_main.main(["upgrade", "status"]) == 1
    err = capsys.readouterr().err
    assert "needs root" in err and "sudo maculaos upgrade status" in err
    assert "Traceback" not in err


def test_item12_apply_as_a_normal_user_says_it_needs_root(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert node.apply() == 1
    assert "maculaos upgrade --apply needs root" in capsys.readouterr().err


def test_item12_check_never_falls_back_to_the_default_source_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from maculaos.config import paths  # noqa: PLC0415

    config = tmp_path / "config.yaml"
    config.write_text("maculaos:\n  upgrade:\n    url: https://updates.example/\n")
    monkeypatch.setattr(paths, "NODE_CONFIG", config)
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != config)
    assert cli_main.main(["upgrade", "--check"]) == 1
    err = capsys.readouterr().err
    assert f"cannot read {config}" in err and "sudo" in err and "--from" in err


def test_install_refusal_is_none_only_for_a_confirmed_healthy_boot() -> None:
    env = BootEnv.factory()
    ok = {"last_health": {"slot": "A", "healthy": True, "boot_id": "x"}}
    assert cli.install_refusal(env, "A", ok, "x") is None
    assert cli.install_refusal(env, "A", ok, "y") is not None
    assert cli.install_refusal(env, "A", {"last_health": None}, "x") is not None
    assert cli.install_refusal(env, "A", {"last_health": "junk"}, "x") is not None
    other = {"last_health": {"slot": "B", "healthy": True, "boot_id": "x"}}
    assert cli.install_refusal(env, "A", other, "x") is not None


def test_a_damaged_or_newer_boot_environment_is_a_clear_error(
    node: Node, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both copies damaged, or an ESP switched to a layout this release does not know (a
    newer release was booted): one line naming it, nothing written, no traceback."""
    monkeypatch.setattr(state, "slot_version", lambda name, booted: "0.1.0")
    (node.env_file / "grub.cfg").write_text("# maculaos-boot-layout: 3\n")
    assert cli_main.main(["upgrade", "status"]) == 1
    err = capsys.readouterr().err
    assert "layout 3; this release knows 2" in err and "Traceback" not in err
    (node.env_file / "grub.cfg").unlink()
    for copy in bootenv.COPIES:
        (node.env_file / copy / bootenv.BLOCK).write_bytes(b"\0" * 1024)
    node.judged()
    node.publish("0.2.0")
    assert node.apply() == 1
    err = capsys.readouterr().err
    assert "both copies of the boot environment are damaged" in err and node.installed == []
