"""The health gate: decides whether this boot is good, marks the slot good, or spends a try.

Healthy = every required unit active (the config's list, plus k3s / mesh units when they are
enabled) and, unless switched off, a default route with a routable address. A required unit
that has *failed* ends the wait at once; anything else gets until the timeout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from maculaos import bootdisk
from maculaos.upgrade import bootenv, esp, state

# joined to the required set when enabled (they arrive with the k3s and mesh issues)
OPTIONAL_UNITS = ("k3s.service", "k3s-agent.service", "macula-mesh.service")
CMDLINE = Path("/proc/cmdline")
POLL_S = 2
# what `systemctl is-enabled` answers 0 for
ENABLED_STATES = (
    "enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient"
)  # fmt: skip
UNITS_EVERY = 5  # rounds: the units' states are read at least every POLL_S * UNITS_EVERY s


def _show(units: Sequence[str], props: str) -> list[dict[str, str]]:
    """``systemctl show --property=Id,<props>`` for each of ``units``, in one process."""
    out = subprocess.run(
        ["systemctl", "show", f"--property=Id,{props}", "--", *units],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # a unit systemd did not answer for (a D-Bus failure prints nothing) reads as unknown,
    # never as up: the states are matched to the units by position
    blocks = out.split("\n\n")
    blocks += [""] * (len(units) - len(blocks))
    return [
        dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        for _, block in zip(units, blocks, strict=False)
    ]


def unit_states(units: list[str]) -> dict[str, tuple[str, str]]:
    """unit -> (LoadState, ActiveState)"""
    return {
        unit: (props.get("LoadState", "?"), props.get("ActiveState", "?"))
        for unit, props in zip(units, _show(units, "LoadState,ActiveState"), strict=False)
    }


def enabled_optional_units(units: tuple[str, ...] = OPTIONAL_UNITS) -> list[str]:
    """Those of ``units`` that are enabled, in one call to systemd (a process each costs an
    emulated boot a fraction of a second)."""
    return [
        unit
        for unit, props in zip(units, _show(units, "UnitFileState"), strict=False)
        if props.get("UnitFileState") in ENABLED_STATES
    ]


def network_problem(proc: Path = Path("/proc/net")) -> str | None:
    """None when there is a default route (IPv4 or IPv6) on an interface that is up."""
    try:
        for line in (proc / "route").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1] == "00000000" and int(fields[3], 16) & 1:
                return None
        for line in (proc / "ipv6_route").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "0" * 32 and fields[1] == "00" and fields[9] != "lo":
                return None
    except OSError as e:
        return f"cannot read routes: {e.strerror}"
    return "no default route (network not up)"


def evaluate(
    units: list[str],
    network: bool,
    timeout: float,
    states: Callable[[list[str]], dict[str, tuple[str, str]]] = unit_states,
    net: Callable[[], str | None] = network_problem,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, str]:
    deadline = clock() + timeout
    rounds = 0
    while True:
        problems: list[str] = []
        if network:
            problem = net()
            if problem:
                problems.append(problem)
        final = clock() >= deadline
        # Asking systemd costs a process and a D-Bus call (a second of an emulated CPU, which
        # the rest of the boot wants); the routing table is a file. While the network is
        # still coming up, the units are looked at every UNITS_EVERY rounds (a failed one
        # still ends the wait then), and on the last round.
        if not problems or final or rounds % UNITS_EVERY == 0:
            for unit, (load, active) in states(units).items():
                if load == "not-found":
                    return False, f"required unit {unit} does not exist"
                if active == "failed":
                    return False, f"required unit {unit} failed"
                if active != "active":
                    problems.append(f"{unit} is {active}")
        rounds += 1
        if not problems:
            what = ", ".join(units) + (" and the network" if network else "")
            return True, f"{what} up"
        if final:
            return False, f"not healthy after {timeout:.0f}s: " + "; ".join(problems)
        sleep(POLL_S)


def _config() -> dict[str, Any]:
    from maculaos.config import layers  # noqa: PLC0415

    return layers.load().values


def gate(reboot: Callable[[], None], config: dict[str, Any] | None = None) -> int:
    """The boot-time gate (maculaos-health.service)."""
    booted = bootenv.booted_slot(CMDLINE)
    if booted is None:
        print("not booted from a MaculaOS slot (no rauc.slot=): nothing to judge")
        return 0
    cfg = config if config is not None else _config()
    try:
        bootenv.ensure_esp()
    except bootdisk.NotOwnDisk as e:
        print(f"not judging this boot: {e}")
        return 0
    running = state.os_release_version() or "unknown"
    with bootenv.locked():
        env = bootenv.read()
        damage = list(env.problems)  # a write below may mend it: remember what was seen
        data = state.load()
        detect_rollback(env, booted, running, data)

    units = list(cfg["maculaos.upgrade.health_units"]) + enabled_optional_units()
    healthy, reason = evaluate(
        units, cfg["maculaos.upgrade.health_network"], cfg["maculaos.upgrade.health_timeout"]
    )
    with bootenv.locked():
        return _verdict(booted, running, healthy, reason, damage, reboot)


def _verdict(
    booted: str, running: str, healthy: bool, reason: str, damage: list[str],
    reboot: Callable[[], None],
) -> int:  # fmt: skip
    env = bootenv.read()
    data = state.load()
    slot = env.slots[booted]
    data["last_health"] = {
        "slot": booted,
        "version": running,
        "healthy": healthy,
        "reason": reason,
        "time": state.now(),
        "boot_id": state.boot_id(),  # `upgrade --apply` waits for this boot's verdict
    }
    if healthy:
        if slot.left is not None:
            install = data["installs"].get(booted, {})
            install["confirmed"] = state.now()
            data["installs"][booted] = install
            print(f"{running} (slot {booted}) is healthy: marked good ({reason})")
        if env.slots[booted] != bootenv.Slot(True, None) or env.last_good != booted:
            env.set_state(booted, True)
            bootenv.write(env)
        update_esp(data, running)
        repair_boot_environment(data, booted, damage)
        state.save(data)
        state.banner(_rollback_banner(data))
        return 0
    data["attempts"].append(
        {
            "slot": booted,
            "version": running,
            "reason": reason,
            "time": state.now(),
            "boots_left": slot.left,
        }
    )
    state.save(data)
    if slot.left is None:
        print(f"UNHEALTHY: {running} (slot {booted}): {reason}; slot stays good (not on trial)")
        state.banner(f"MaculaOS: this boot is unhealthy: {reason}\n  (maculaos upgrade status)\n")
        return 1
    nxt, fallback = env.choose()
    then = f"next boot: slot {nxt}" + (" (last good)" if fallback else "")
    print(
        f"UNHEALTHY: {running} (slot {booted}, on trial, {slot.left} boot(s) left): {reason}; "
        f"rebooting to spend a try ({then})",
        flush=True,
    )
    reboot()
    return 1


def update_esp(data: dict[str, Any], running: str) -> None:
    """After a good boot: the ESP follows this release's boot logic (maculaos.upgrade.esp). A
    failure is reported and tried again after the next good boot; the node boots either way."""
    try:
        changed = esp.sync()
    except (OSError, bootenv.BootEnvError) as e:
        print(f"ESP update to {running} failed (tried again after the next good boot): {e}")
        return
    if changed:
        print(f"ESP updated to the boot logic of {running}: {', '.join(changed)}", flush=True)
        data["esp_updates"] = [
            *data.get("esp_updates", [])[-9:],
            {"time": state.now(), "version": running, "files": changed},
        ]


def repair_boot_environment(data: dict[str, Any], booted: str, seen: list[str]) -> None:
    """After a good boot: rewrite a damaged copy of the boot environment or its counter, and
    remember what was repaired (``maculaos upgrade status`` shows it). ``seen``: the damage
    found at the start of the gate (a write since then went to the damaged copy)."""
    fixed = seen + [p for p in bootenv.repair(bootenv.read()) if p not in seen]
    if fixed:
        print("repaired the boot environment: " + "; ".join(fixed), flush=True)
        data["bootenv_repairs"] = [
            *data.get("bootenv_repairs", [])[-9:],
            {"time": state.now(), "slot": booted, "problems": fixed},
        ]


def detect_rollback(
    env: bootenv.BootEnv, booted: str, running: str, data: dict[str, Any]
) -> dict[str, Any] | None:
    """GRUB fell back: the primary is on trial with no boots left, and we run the other slot.
    Record why, mark the failed slot bad, make the running slot primary."""
    primary = env.primary
    slot = env.slots[primary]
    if primary == booted or not slot.ok or slot.left != 0:
        return None
    install = data["installs"].get(primary, {})
    # the slot's own os-release is the truth (a hand-run `rauc install` leaves no record)
    on_slot = state.slot_version(primary, booted)
    failed_version = on_slot or install.get("version", "unknown")
    digest = install.get("sha256") if install.get("version") == failed_version else None
    attempts = [
        a
        for a in data["attempts"]
        if a.get("slot") == primary and a.get("time", "") >= install.get("installed_at", "")
    ]
    reason = (
        attempts[-1]["reason"]
        if attempts
        else "it never reached the health check (kernel panic or failure early in boot)"
    )
    record = {
        "failed_slot": primary,
        "failed_version": failed_version,
        "tries": install.get("tries", len(attempts)),
        "unhealthy_boots_seen": len(attempts),
        "reason": reason,
        "running_slot": booted,
        "running_version": running,
        "time": state.now(),
    }
    env.set_state(primary, False)
    env.order = [booted, primary]
    bootenv.write(env)
    data["last_rollback"] = record
    state.remember_failed(data, failed_version, digest, reason, primary)
    state.save(data)
    print("ROLLBACK: " + state.rollback_text(record).replace("\n", " ").strip(), flush=True)
    return record


def _rollback_banner(data: dict[str, Any]) -> str | None:
    rb = data.get("last_rollback")
    if not rb:
        return None
    confirmed_after = [
        i for i in data["installs"].values() if str(i.get("confirmed", "")) > rb.get("time", "")
    ]
    return None if confirmed_after else state.rollback_text(rb)


def _reboot() -> None:
    subprocess.run(["systemctl", "reboot"], check=False)


def main() -> int:
    try:
        return gate(_reboot)
    except Exception as e:  # the gate must judge every boot, even when it breaks itself
        print(f"maculaos-health: {type(e).__name__}: {e}", file=sys.stderr)
        return _failed_gate()


def _failed_gate(reboot: Callable[[], None] = _reboot) -> int:
    """The gate could not judge this boot. On a trial slot that is an unhealthy verdict (spend
    a try: GRUB falls back when they are gone), else report only."""
    try:
        booted = bootenv.booted_slot(CMDLINE)
        trial = booted is not None and bootenv.read().slots[booted].left is not None
    except Exception:  # an unreadable environment: GRUB does not count trials without it
        trial = False
    if trial:
        print("maculaos-health: this trial boot cannot be judged: rebooting to spend a try",
              flush=True)  # fmt: skip
        reboot()
    return 1
