"""The VM harness restarts QEMU when the guest resets the machine (-no-reboot: every reboot a
cold start) and stops with the console when the guest powered off or QEMU failed. The exit
status a reset gives is checked with the real QEMU (paused: no firmware runs)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from maculaos.arch import Architecture
from maculaos.log import MaculaError
from maculaos_build import vm as vmlib


def _vm(tmp_path: Path, exit_code: int, console: str, before: str = "") -> vmlib.VM:
    vm = vmlib.VM(image=tmp_path / "x.qcow2", key=tmp_path / "key", workdir=tmp_path)
    vm.serial_log.write_text(before)
    vm.console_start = len(before.encode())
    with vm.serial_log.open("a") as f:
        f.write(console)
    vm.process = subprocess.Popen(["sh", "-c", f"exit {exit_code}"])
    vm.process.wait()
    return vm


def test_qemu_gets_no_reboot(tmp_path: Path) -> None:
    vm = vmlib.VM(image=Path("/x.qcow2"), key=Path("/k"), workdir=tmp_path)
    assert "-no-reboot" in vm.command()


def test_a_kernel_handed_over_keeps_boot_index_0_for_its_loader(tmp_path: Path) -> None:
    """With -kernel QEMU's loader option ROM takes boot index 0; the disk giving 0 too made QEMU
    refuse to start ("The bootindex 0 has already been used") and `bench boot` fail."""
    vm = vmlib.VM(image=Path("/x.qcow2"), key=Path("/k"), workdir=tmp_path)
    assert any(a.endswith("drive=disk0,bootindex=0") for a in vm.command())
    vm.kernel, vm.initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    cmd = vm.command()
    assert "-kernel" in cmd
    assert not [a for a in cmd if "bootindex=0" in a], cmd


def test_a_guest_reset_starts_qemu_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vm = _vm(
        tmp_path,
        0,
        "[  221.5] watchdog did not stop!\n[  221.6] reboot: Restarting system\n",
        # an earlier boot of this machine powered off: not this process's business
        before="[  99.0] reboot: Power down\n",
    )
    monkeypatch.setattr(vmlib.VM, "command", lambda self: ["sleep", "30"])
    vm.revive()
    try:
        assert vm.resets == 1
        assert vm.process is not None and vm.process.poll() is None
        assert vm.console_start == vm.serial_log.stat().st_size
        vm.revive()  # still running: nothing to do
        assert vm.resets == 1
    finally:
        vm.stop()
    vm.revive()  # stopped on purpose: stays off
    assert vm.resets == 1 and vm.process.poll() is not None


@pytest.mark.parametrize(
    ("code", "console"),
    [
        (0, "[  12.0] reboot: Restarting system\n...\n[  99.0] reboot: Power down\n"),
        (1, "qemu-system-x86_64: could not open disk image\n"),
    ],
    ids=["powered-off", "qemu-failed"],
)
def test_a_power_off_or_a_failed_qemu_is_an_error(tmp_path: Path, code: int, console: str) -> None:
    vm = _vm(tmp_path, code, console)
    with pytest.raises(MaculaError, match="QEMU exited"):
        vm.revive()
    assert vm.resets == 0


def test_a_power_cut_is_not_revived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vm = _vm(tmp_path, 0, "")
    monkeypatch.setattr(vmlib.VM, "command", lambda self: ["sleep", "30"])
    vm.power_cut()
    vm.revive()
    assert vm.resets == 0
    vm.power_on()
    try:
        assert not vm.stopped and vm.process is not None and vm.process.poll() is None
    finally:
        vm.stop()


def _qmp(path: Path, *commands: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        for _ in range(100):
            try:
                s.connect(str(path))
                break
            except OSError:
                time.sleep(0.1)
        f = s.makefile("rw")
        f.readline()  # greeting
        for name in ("qmp_capabilities", *commands):
            f.write(json.dumps({"execute": name}) + "\n")
            f.flush()
            f.readline()


@pytest.mark.skipif(
    shutil.which(Architecture.amd64.info.qemu_binary) is None, reason="no QEMU on this host"
)
def test_the_real_qemu_exits_0_on_a_guest_reset_under_no_reboot(tmp_path: Path) -> None:
    """What revive() relies on: under -no-reboot a reset (asked here over QMP; a guest asks
    through the chipset) ends QEMU with status 0."""
    sock = tmp_path / "qmp.sock"
    qemu = subprocess.Popen(
        [
            Architecture.amd64.info.qemu_binary,
            "-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-S",
            "-no-reboot", "-qmp", f"unix:{sock},server=on,wait=off",
        ],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _qmp(sock, "system_reset")
        assert qemu.wait(timeout=30) == 0
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
