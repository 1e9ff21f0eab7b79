"""The one place where a MaculaOS architecture maps to Debian, QEMU, EFI and GRUB names."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class ArchInfo:
    debian: str
    qemu_binary: str
    qemu_machine: str
    qemu_cpu: str
    efi_code: str
    efi_vars: str
    grub_target: str
    efi_boot_file: str
    kernel_package: str
    grub_efi_package: str
    console: str


class Architecture(enum.StrEnum):
    amd64 = "amd64"
    arm64 = "arm64"

    @property
    def info(self) -> ArchInfo:
        return _INFO[self]

    @classmethod
    def parse(cls, value: str) -> Architecture:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(a.value for a in cls)
            raise ValueError(f"unknown arch {value!r}: allowed values are {allowed}") from None


_INFO: dict[Architecture, ArchInfo] = {
    Architecture.amd64: ArchInfo(
        debian="amd64",
        qemu_binary="qemu-system-x86_64",
        qemu_machine="q35",
        # TCG emulates rep stosb/movsb one byte per iteration: without ERMS and FSRM the
        # kernel and glibc zero and copy memory 8 bytes at a time. Measured on the image's first
        # boot: SSH after 141-143 s with "max", 104-112 s without them. Clearing the pages of
        # a vmalloc (the xz dictionary of a compressed module, the bochs framebuffer) still
        # stalls a module load at times (23 s seen once, 22-105 s before; docs/reliability.md).
        qemu_cpu="max,-erms,-fsrm",
        efi_code="/usr/share/OVMF/OVMF_CODE_4M.fd",
        efi_vars="/usr/share/OVMF/OVMF_VARS_4M.fd",
        grub_target="x86_64-efi",
        efi_boot_file="BOOTX64.EFI",
        kernel_package="linux-image-amd64",
        grub_efi_package="grub-efi-amd64-bin",
        console="ttyS0",
    ),
    Architecture.arm64: ArchInfo(
        debian="arm64",
        qemu_binary="qemu-system-aarch64",
        qemu_machine="virt",
        qemu_cpu="cortex-a72",
        efi_code="/usr/share/AAVMF/AAVMF_CODE.fd",
        efi_vars="/usr/share/AAVMF/AAVMF_VARS.fd",
        grub_target="arm64-efi",
        efi_boot_file="BOOTAA64.EFI",
        kernel_package="linux-image-arm64",
        grub_efi_package="grub-efi-arm64-bin",
        console="ttyAMA0",
    ),
}
