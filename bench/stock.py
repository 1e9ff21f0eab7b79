"""A stock Debian trixie disk for comparison: the mmdebstrap base disk (same kernel package as
the image) with an ESP and GRUB, booted with the same firmware and QEMU arguments."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from maculaos import disk
from maculaos.arch import Architecture
from maculaos.build.basedisk import BaseDisk

GRUB_CFG = """\
set timeout=0
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
menuentry "Debian trixie (stock)" {
  linux (hd0,gpt2)/vmlinuz root=/dev/vda2 rw console=tty0 console=ttyS0,115200 quiet
  initrd (hd0,gpt2)/initrd.img
}
"""
GRUB_MODULES = [
    "part_gpt",
    "fat",
    "ext2",
    "normal",
    "linux",
    "configfile",
    "echo",
    "test",
    "serial",
    "terminal",
    "efi_gop",
]


def build_stock_disk(base: BaseDisk, out: Path) -> Path:
    """Return a GPT disk (ESP + ext4 root) made from the base disk; cached next to it."""
    if out.exists():
        return out
    arch: Architecture = base.arch
    with tempfile.TemporaryDirectory(prefix="maculaos-stock-") as tmp:
        t = Path(tmp)
        root = t / "root.ext4"
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(base.disk), str(root)], check=True)
        # the base disk's fstab names the bare /dev/vda it is booted from by Packer
        fstab = t / "fstab"
        fstab.write_text("/dev/vda2 / ext4 rw 0 1\n")
        subprocess.run(
            ["debugfs", "-w", "-R", "rm /etc/fstab", str(root)], check=True, capture_output=True
        )
        subprocess.run(
            ["debugfs", "-w", "-R", f"write {fstab} /etc/fstab", str(root)],
            check=True,
            capture_output=True,
        )
        esp = t / "esp"
        (esp / "EFI" / "BOOT").mkdir(parents=True)
        (esp / "EFI" / "debian").mkdir(parents=True)
        (esp / "EFI" / "debian" / "grub.cfg").write_text(GRUB_CFG)
        subprocess.run(
            [
                "grub-mkimage",
                f"--format={arch.info.grub_target}",
                f"--output={esp / 'EFI' / 'BOOT' / arch.info.efi_boot_file}",
                "--prefix=/EFI/debian",
                *GRUB_MODULES,
            ],
            check=True,
        )
        specs = disk.parse_specs(
            [
                {
                    "name": "esp",
                    "type": "esp",
                    "size_mib": 64,
                    "filesystem": "vfat",
                    "source": str(esp),
                },
                {
                    "name": "root",
                    "filesystem": "raw",
                    "source": str(root),
                    "min_mib": root.stat().st_size // disk.MIB,
                },
            ]
        )
        size = (disk.required_mib(specs)) * disk.MIB
        seed = "stock-debian"
        raw = t / "stock.img"
        disk.write(disk.plan(specs, size, seed), str(raw), seed, size_bytes=size)
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out)], check=True)
    return out
