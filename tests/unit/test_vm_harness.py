"""The VM harness restarts QEMU when the guest resets the machine (-no-reboot: a cold start
for every reboot) and stops with the console when the guest powered off or QEMU failed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from maculaos.log import MaculaError
from maculaos_build import vm as vmlib


def _vm(tmp_path: Path, exit_code: int, console: str) -> vmlib.VM:
    vm = vmlib.VM(image=tmp_path / "x.qcow2", key=tmp_path / "key", workdir=tmp_path)
    vm.serial_log.write_text(console)
    vm.process = subprocess.Popen(["sh", "-c", f"exit {exit_code}"])
    vm.process.wait()
    return vm


def test_qemu_gets_no_reboot(tmp_path: Path) -> None:
    vm = vmlib.VM(image=Path("/x.qcow2"), key=Path("/k"), workdir=tmp_path)
    assert "-no-reboot" in vm.command()


def test_a_guest_reset_starts_qemu_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vm = _vm(tmp_path, 0, "[  221.5] watchdog did not stop!\n[  221.6] reboot: Restarting system\n")
    monkeypatch.setattr(vmlib.VM, "command", lambda self: ["sleep", "30"])
    vm.revive()
    try:
        assert vm.resets == 1
        assert vm.process is not None and vm.process.poll() is None
        vm.revive()  # still running: nothing to do
        assert vm.resets == 1
    finally:
        vm.stop()


@pytest.mark.parametrize(
    ("code", "console"),
    [
        (0, "[  12.0] reboot: Restarting system\n...\n[  99.0] reboot: Power down\n"),
        (0, "[  12.0] reboot: System halted\n"),
        (1, "qemu-system-x86_64: could not open disk image\n"),
    ],
    ids=["powered-off", "halted", "qemu-failed"],
)
def test_a_power_off_or_a_failed_qemu_is_an_error(tmp_path: Path, code: int, console: str) -> None:
    vm = _vm(tmp_path, code, console)
    with pytest.raises(MaculaError, match="QEMU exited"):
        vm.revive()
    assert vm.resets == 0
