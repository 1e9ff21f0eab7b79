"""The health gate's verdicts (systemd and the routing table stood in by functions)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from maculaos.upgrade import bootenv, health, state
from maculaos.upgrade.bootenv import BootEnv, Slot


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def run(
    states: list[dict[str, tuple[str, str]]], net: list[str | None], timeout: float = 60
) -> tuple[bool, str]:
    clock = Clock()
    seq_s, seq_n = iter(states), iter(net)
    last_s: dict[str, Any] = {}
    last_n: list[str | None] = [None]

    def s(units: list[str]) -> dict[str, tuple[str, str]]:
        nonlocal last_s
        last_s = next(seq_s, last_s)
        return last_s

    def n() -> str | None:
        last_n[0] = next(seq_n, last_n[0])
        return last_n[0]

    return health.evaluate(["ssh.service"], True, timeout, s, n, clock.sleep, clock)


def test_healthy_once_units_and_network_are_up() -> None:
    ok, why = run(
        [{"ssh.service": ("loaded", "activating")}, {"ssh.service": ("loaded", "active")}],
        ["no default route (network not up)", None],
    )
    assert ok and "ssh.service" in why


def test_failed_unit_is_unhealthy_at_once() -> None:
    ok, why = run([{"ssh.service": ("loaded", "failed")}], [None])
    assert not ok and why == "required unit ssh.service failed"


def test_missing_unit_is_unhealthy() -> None:
    ok, why = run([{"ssh.service": ("not-found", "inactive")}], [None])
    assert not ok and "does not exist" in why


def test_timeout_names_what_was_missing() -> None:
    ok, why = run([{"ssh.service": ("loaded", "active")}], ["no default route (network not up)"])
    assert not ok and why.startswith("not healthy after 60s") and "no default route" in why


def test_units_are_asked_for_rarely_while_the_network_comes_up() -> None:
    """systemctl is a process per look: while only the route is missing, the gate asks
    systemd every 10 s, not every 2 s, and still sees a unit fail within those 10 s."""
    clock = Clock()
    asked: list[float] = []

    def s(units: list[str]) -> dict[str, tuple[str, str]]:
        asked.append(clock.t)
        return {"ssh.service": ("loaded", "failed" if clock.t >= 31 else "active")}

    def n() -> str | None:
        return "no default route (network not up)"

    ok, why = health.evaluate(["ssh.service"], True, 60, s, n, clock.sleep, clock)
    assert not ok and why == "required unit ssh.service failed"
    assert asked == [0, 10, 20, 30, 40]
    # the network up: the units are asked at once
    asked.clear()
    clock.t = 0
    net = iter(["no default route (network not up)", "no default route (network not up)", None])
    ok, why = health.evaluate(
        ["ssh.service"], True, 60, lambda u: {"ssh.service": ("loaded", "active")},
        lambda: next(net), clock.sleep, clock,
    )  # fmt: skip
    assert ok and clock.t == 4


def test_optional_units_are_read_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """One systemctl for every optional unit; enabled and static count, not-found, disabled
    and masked do not."""
    calls: list[list[str]] = []
    said = (
        "Id=k3s.service\nUnitFileState=enabled\n\n"
        "Id=k3s-agent.service\nUnitFileState=\n\n"
        "Id=macula-mesh.service\nUnitFileState=masked\n\n"
        "Id=a.service\nUnitFileState=static\n\nId=b.service\nUnitFileState=disabled\n"
    )

    def systemctl(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, said, "")

    monkeypatch.setattr(subprocess, "run", systemctl)
    units = (*health.OPTIONAL_UNITS, "a.service", "b.service")
    assert health.enabled_optional_units(units) == ["k3s.service", "a.service"]
    assert len(calls) == 1 and calls[0][:2] == ["systemctl", "show"]


def test_a_silent_systemctl_is_never_read_as_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemctl that prints nothing (D-Bus down) leaves the units unknown, not up."""
    monkeypatch.setattr(
        subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "")
    )
    assert health.unit_states(["ssh.service", "x.service"]) == {
        "ssh.service": ("?", "?"),
        "x.service": ("?", "?"),
    }
    assert health.enabled_optional_units() == []
    ok, why = health.evaluate(["ssh.service"], False, 4, sleep=lambda s: None, clock=iter(
        [0.0, 0.0, 2.0, 4.0, 6.0]).__next__)  # fmt: skip
    assert not ok and "ssh.service is ?" in why


def test_network_problem_reads_proc(tmp_path: Path) -> None:
    (tmp_path / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "ens3\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
    )
    (tmp_path / "ipv6_route").write_text("")
    assert health.network_problem(tmp_path) == "no default route (network not up)"
    with (tmp_path / "route").open("a") as f:
        f.write("ens3\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\n")
    assert health.network_problem(tmp_path) is None


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GRUB environment and an upgrade state directory in a temp dir."""
    env_dir = tmp_path / "esp"
    bootenv.init(env_dir)
    monkeypatch.setattr(bootenv, "ENV_DIR", env_dir)
    monkeypatch.setattr(state, "STATE_DIR", tmp_path / "upgrade")
    monkeypatch.setattr(state, "slot_version", lambda name, booted: None)  # no slot to mount
    return env_dir


def test_rollback_is_detected_and_recorded(node: Path) -> None:
    env = BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 0)}, "A")
    bootenv.write(env)
    data = state.load()
    data["installs"]["B"] = {
        "version": "0.3.0",
        "installed_at": "2026-01-01T00:00:00+00:00",
        "tries": 3,
    }
    data["attempts"].append(
        {"slot": "B", "version": "0.3.0", "reason": "required unit ssh.service failed",
         "time": "2026-01-01T00:05:00+00:00"}
    )  # fmt: skip
    record = health.detect_rollback(env, "A", "0.2.0", data)
    assert record is not None
    assert record["failed_version"] == "0.3.0" and record["tries"] == 3
    assert record["reason"] == "required unit ssh.service failed"
    after = bootenv.read()
    assert after.order == ["A", "B"] and not after.slots["B"].ok
    assert state.load()["last_rollback"]["failed_version"] == "0.3.0"
    assert "did not become healthy in 3 tries" in state.rollback_text(record)


def test_rollback_without_any_health_report_blames_early_boot(node: Path) -> None:
    env = BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 0)}, "A")
    data = state.load()
    data["installs"]["B"] = {"version": "0.3.0", "tries": 3}
    record = health.detect_rollback(env, "A", "0.2.0", data)
    assert record is not None and "kernel panic" in record["reason"]


def test_no_rollback_when_primary_is_running() -> None:
    env = BootEnv(["A", "B"], {"A": Slot(True, None), "B": Slot(True, None)}, "A")
    assert health.detect_rollback(env, "A", "0.2.0", {"installs": {}, "attempts": []}) is None


def test_a_failed_slot_is_named_by_its_own_os_release(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-run `rauc install` left no record (or an old one): the rollback names what the
    slot really held, and only then remembers the digest."""
    monkeypatch.setattr(state, "slot_version", lambda name, booted: "0.4.0")
    env = BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 0)}, "A")
    data = state.load()
    data["installs"]["B"] = {"version": "0.3.0", "sha256": "ab" * 32, "tries": 3}
    record = health.detect_rollback(env, "A", "0.2.0", data)
    assert record is not None and record["failed_version"] == "0.4.0"
    assert [(f["version"], f["sha256"]) for f in data["failed_releases"]] == [("0.4.0", None)]


def test_item1_a_gate_that_breaks_on_a_trial_boot_spends_a_try(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = bootenv.read()
    env.set_primary("B", 3)
    bootenv.write(env)
    monkeypatch.setattr(bootenv, "booted_slot", lambda *a: "B")
    reboots: list[int] = []
    assert health._failed_gate(lambda: reboots.append(1)) == 1
    assert reboots == [1]
    monkeypatch.setattr(bootenv, "booted_slot", lambda *a: "A")  # established: report only
    assert health._failed_gate(lambda: reboots.append(1)) == 1
    assert reboots == [1]
