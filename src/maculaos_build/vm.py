"""Boot disk images under QEMU (TCG) for tests and benchmarks, and reach them over SSH."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from maculaos.arch import Architecture
from maculaos.log import die
from maculaos_build.paths import OUTPUT


def _bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


KEPT_CONSOLES = 60  # console logs kept in output/vm-logs/ (a bench or power-cut loop makes many)

SSH_OPTS = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "BatchMode=yes",
]
# The harness's own commands share one SSH connection per VM (a handshake costs the guest
# about 2 s of emulated CPU; a multiplexed command 0.2 s). A connection dies with the boot it
# reached (QEMU exits at each reset under -no-reboot); the next command opens a new one. Tests
# of SSH itself (keys, passwords) use SSH_OPTS alone, so they always authenticate anew.
MUX_OPTS = [
    "-o",
    "ControlMaster=auto",
    "-o",
    "ControlPersist=60",
    "-o",
    "ServerAliveInterval=10",
    "-o",
    "ServerAliveCountMax=30",
]


@dataclass
class VM:
    """One QEMU guest booted from a copy-on-write overlay of ``image``."""

    image: Path
    key: Path
    arch: Architecture = Architecture.amd64
    user: str = "macula"
    disk_size: str = "4G"
    memory: int = 1024
    cpus: int = 1
    accel: str = "tcg"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="maculaos-vm-")))
    port: int = field(default_factory=free_port)
    mac: str = field(
        default_factory=lambda: "52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3))
    )
    extra_drives: list[Path] = field(default_factory=list)  # raw, read-only
    extra_disks: list[Path] = field(default_factory=list)  # qcow2, writable
    # put the extra disks before the node's own on the bus (they become vda, ...; the
    # firmware still boots the node's disk: bootindex)
    extra_disks_first: bool = False
    # direct kernel boot through the same OVMF firmware (fw_cfg), for disks without a loader
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    process: subprocess.Popen[bytes] | None = None
    booted_at: float = 0.0
    # resets the guest asked for (reboot, panic=5, GRUB's reboot), each a fresh QEMU process
    resets: int = 0
    # where this QEMU process's console output starts in serial.log (append=on)
    console_start: int = 0
    # stop() or power_cut() ended QEMU on purpose: revive() leaves it off
    stopped: bool = False

    @property
    def serial_log(self) -> Path:
        return self.workdir / "serial.log"

    def console_tail(self, size: int = 3000) -> str | None:
        """The end of the console log, for an error message (None before the first start)."""
        if not self.serial_log.exists():
            return None
        return self.serial_log.read_text(errors="replace")[-size:]

    def keep_console(self) -> Path | None:
        """Copy the console log to output/vm-logs/ (the work directory is deleted when the VM
        stops): a failed boot in CI can be read afterwards."""
        if not self.serial_log.exists():
            return None
        logs = OUTPUT / "vm-logs"
        kept = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.workdir.name}.log"
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.serial_log, kept)
        for old in sorted(logs.glob("*.log"))[:-KEPT_CONSOLES]:  # names sort by time
            old.unlink(missing_ok=True)
        return kept

    def prepare(self) -> None:
        fmt = "qcow2" if self.image.suffix == ".qcow2" else "raw"
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", "-f", fmt, str(self.image)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        # never smaller than the image itself (a shorter overlay cuts its filesystems off)
        size = max(int(info["virtual-size"]), _bytes(self.disk_size))
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                str(self.image.resolve()),
                "-F",
                fmt,
                str(self.workdir / "disk.qcow2"),
                str(size),
            ],
            check=True,
        )
        shutil.copy(self.arch.info.efi_vars, self.workdir / "efivars.fd")

    def command(self) -> list[str]:
        info = self.arch.info
        return [
            info.qemu_binary,
            "-machine",
            f"{info.qemu_machine},accel={self.accel}",
            "-cpu",
            info.qemu_cpu,
            "-smp",
            str(self.cpus),
            "-m",
            str(self.memory),
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={info.efi_code}",
            "-drive",
            f"if=pflash,format=raw,file={self.workdir / 'efivars.fd'}",
            *(self._extra_disk_args() if self.extra_disks_first else []),
            "-drive",
            f"if=none,id=disk0,format=qcow2,file={self.workdir / 'disk.qcow2'}",
            "-device",
            # with -kernel, QEMU's loader option ROM holds boot index 0
            f"virtio-blk-pci,drive=disk0,bootindex={1 if self.kernel else 0}",
            "-netdev",
            f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device",
            f"virtio-net-pci,netdev=n0,mac={self.mac}",
            "-display",
            "none",
            "-chardev",
            f"file,id=ser0,path={self.serial_log},append=on",
            "-serial",
            "chardev:ser0",
            "-no-user-config",
            # A guest reset ends this QEMU process and revive() starts a new one: the
            # machine comes back from a cold start. After warm resets under TCG the boot
            # twice hung with no output for 600-900 s, once before the firmware's boot
            # manager spoke, once after it started GRUB; cause unknown (docs/reliability.md,
            # "Hangs after a warm reset in the emulator"). Real x86 reboots are warm resets:
            # the VM tier no longer exercises that path.
            "-no-reboot",
            *(
                ["-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.append]
                if self.kernel
                else []
            ),
            *[
                arg
                for drive in self.extra_drives
                for arg in ("-drive", f"if=virtio,format=raw,readonly=on,file={drive}")
            ],
            *([] if self.extra_disks_first else self._extra_disk_args()),
        ]

    def _extra_disk_args(self) -> list[str]:
        """Explicit devices: QEMU gives PCI slots (and so vda, vdb, ...) in command-line order
        to -device options, and only afterwards to if=virtio drives."""
        args: list[str] = []
        for i, disk in enumerate(self.extra_disks):
            args += ["-drive", f"if=none,id=extra{i},format=qcow2,file={disk}"]
            args += ["-device", f"virtio-blk-pci,drive=extra{i}"]
        return args

    def start(self) -> None:
        if not self.process:
            self.prepare()
        self.booted_at = time.monotonic()
        self._launch()

    def _launch(self) -> None:
        self.console_start = self.serial_log.stat().st_size if self.serial_log.exists() else 0
        self.stopped = False
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)

    @property
    def control_path(self) -> Path:
        """The socket of this VM's shared SSH connection (MUX_OPTS): short whatever TMPDIR is
        (a socket's path has at most 107 bytes, and ssh adds 17 while it makes one)."""
        return Path("/tmp") / f"mcs-{self.workdir.name}"

    def ssh_args(self, *command: str) -> list[str]:
        return [
            "ssh",
            *SSH_OPTS,
            *MUX_OPTS,
            "-o",
            f"ControlPath={self.control_path}",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            f"{self.user}@127.0.0.1",
            *command,
        ]

    def ssh(self, *command: str, check: bool = True, timeout: float = 120) -> str:
        r = subprocess.run(
            self.ssh_args(*command), check=False, capture_output=True, text=True, timeout=timeout
        )
        if check and r.returncode != 0:
            if self.process and self.process.poll() is not None and not self.stopped:
                raise RuntimeError(
                    f"ssh {' '.join(command)}: QEMU exited ({self.process.returncode}; the guest "
                    f"reset or powered off, {self.resets} resets so far); console: "
                    f"{self.serial_log}"
                )
            raise RuntimeError(f"ssh {' '.join(command)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def revive(self) -> None:
        """Start QEMU again when the guest reset the machine (-no-reboot ended the process);
        a guest that powered off, or a QEMU that failed, is an error."""
        if self.stopped or not self.process or self.process.poll() is None:
            return
        # only what this QEMU process printed: an earlier boot's "Power down" decides nothing
        with self.serial_log.open("rb") as f:
            f.seek(self.console_start)
            since = f.read().decode(errors="replace")
        if self.process.returncode != 0 or "reboot: Power down" in since:
            die(
                f"QEMU exited ({self.process.returncode}) after {self.resets} guest resets; "
                f"console: {self.serial_log}",
                hint=self.console_tail(),
            )
        self.resets += 1
        self._launch()

    def wait_ssh(self, timeout: float = 300) -> float:
        """Wait until SSH runs a command; return seconds since start()."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.revive()
            r = subprocess.run(self.ssh_args("true"), check=False, capture_output=True, timeout=30)
            if r.returncode == 0:
                return time.monotonic() - self.booted_at
            time.sleep(1)
        die(
            f"no SSH after {timeout:.0f}s; console log: {self.serial_log}",
            hint=self.console_tail(),
        )

    def reboot(self, timeout: float = 600) -> float:
        boot_id = self.ssh("cat", "/proc/sys/kernel/random/boot_id").strip()
        self.ssh("sudo", "systemctl", "reboot", check=False, timeout=30)
        self.booted_at = time.monotonic()
        return self.wait_new_boot(boot_id, timeout)

    def boot_id(self) -> str | None:
        """This boot's id, or None while SSH does not answer (a reboot in progress)."""
        self.revive()
        try:
            r = subprocess.run(
                self.ssh_args("cat", "/proc/sys/kernel/random/boot_id"),
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    def wait_new_boot(self, old_boot_id: str, timeout: float = 600) -> float:
        """Wait for SSH on a boot other than ``old_boot_id`` (however many reboots the node
        goes through on its own in between); seconds waited."""
        start = time.monotonic()
        while time.monotonic() < start + timeout:
            current = self.boot_id()
            if current and current != old_boot_id:
                return time.monotonic() - start
            time.sleep(2)
        die(
            f"no new boot within {timeout:.0f}s; console log: {self.serial_log}",
            hint=self.console_tail(),
        )

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL QEMU (what the guest wrote to its disk so far stays)."""
        self.stopped = True
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def power_on(self) -> None:
        """Start the same machine again (same disk, same EFI variables)."""
        self.booted_at = time.monotonic()
        self._launch()

    def stop(self) -> None:
        self.stopped = True
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running(vm: VM) -> Iterator[VM]:
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()
        try:
            vm.keep_console()
        except OSError as e:  # a full disk must not hide the test's own failure
            print(f"console log not kept: {e}")
        finally:
            shutil.rmtree(vm.workdir, ignore_errors=True)


def seed_volume(config_text: str, out: Path, label: str = "MACULAOS_CONFIG") -> Path:
    """An ISO 9660 volume labelled ``label`` holding config.yaml, as a provisioning tool or a
    cloud-init NoCloud seed would make it (FAT labels stop at 11 characters, too short for
    MACULAOS_CONFIG; a FAT stick is labelled cidata instead)."""
    src = out.parent / "seed-tree"
    src.mkdir(parents=True, exist_ok=True)
    (src / "config.yaml").write_text(config_text)
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    return out
