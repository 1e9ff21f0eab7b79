"""Pull the plug during ``maculaos upgrade --apply`` and check the node comes back on a good
slot: one implementation for the VM tier (a few cuts) and tests/reliability (100)."""

from __future__ import annotations

import json
import time
from typing import Any

from maculaos_build import vm as vmlib


def settle(vm: vmlib.VM, tries: int = 3) -> None:
    """Wait until boot has finished, the health gate included. A node that reboots meanwhile
    (a health gate that failed rolls back) is waited for again: under -no-reboot its QEMU
    process ended and only the VM harness's waits start the next one."""
    for _ in range(tries):
        vm.wait_ssh(timeout=900)
        boot = vm.boot_id()
        vm.ssh("systemctl", "is-system-running", "--wait", check=False, timeout=900)
        if boot and vm.boot_id() == boot:
            return
    raise RuntimeError(f"the node did not settle in {tries} boots; console: {vm.serial_log}")


def status(vm: vmlib.VM) -> dict[str, Any]:
    return dict(json.loads(vm.ssh("sudo", "maculaos", "upgrade", "status", "--json")))


def cut_once(vm: vmlib.VM, source: str, delay: float, versions: tuple[str, ...]) -> dict[str, Any]:
    """Start an apply (always to the standby slot: --allow-downgrade), kill QEMU ``delay``
    seconds later, power on, and judge the boot."""
    settle(vm)  # (the previous cut's node may have rebooted by itself since)
    vm.ssh(
        "sudo systemd-run --collect --unit=apply-under-test maculaos upgrade --apply "
        f"--allow-downgrade --from {source}",
        timeout=60,
    )
    time.sleep(delay)
    progress = vm.ssh(
        "sudo journalctl -u apply-under-test -o cat --no-pager | tail -n 1", check=False
    ).strip()
    vm.power_cut()
    vm.power_on()
    boot_s = vm.wait_ssh(timeout=900)
    settle(vm)
    s = status(vm)
    booted = s["booted"]
    good = (
        s["running"] in versions
        and s["slots"][booted]["state"] == "good"
        and bool(s["last_health"] and s["last_health"]["healthy"])
    )
    return {
        "delay_s": round(delay, 1),
        "apply_progress_at_cut": progress,
        "booted": booted,
        "running": s["running"],
        "good": good,
        "boot_to_ssh_s": round(boot_s, 1),
        "slots": {k: v["state"] for k, v in s["slots"].items()},
    }
