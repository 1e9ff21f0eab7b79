"""arch.py is the reference for per-architecture names; the Ansible role vars and the Packer
locals that must repeat them (they run where our Python is not importable) are checked
against it here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from maculaos.arch import Architecture

REPO = Path(__file__).resolve().parents[2]


def role_vars(role: str) -> dict[str, dict[str, str]]:
    data = yaml.safe_load((REPO / "ansible" / "roles" / role / "vars" / "main.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_role_vars_match_arch_py() -> None:
    image, kernel = role_vars("image"), role_vars("kernel")
    for arch in Architecture:
        info = arch.info
        assert image["_image_grub_package"][arch.value] == info.grub_efi_package
        assert image["_image_grub_target"][arch.value] == info.grub_target
        assert image["_image_efi_boot_file"][arch.value] == info.efi_boot_file
        assert image["_image_console"][arch.value] == info.console
        assert kernel["_kernel_package"][arch.value] == info.kernel_package


def test_packer_locals_match_arch_py() -> None:
    text = (REPO / "packer" / "maculaos.pkr.hcl").read_text()

    def table(name: str) -> dict[str, str]:
        block = re.search(name + r"\s*=\s*\{(.*?)\}", text, re.S)
        assert block, name
        return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', block.group(1)))

    for arch in Architecture:
        info = arch.info
        assert table("qemu_binary")[arch.value] == info.qemu_binary
        assert table("machine_type")[arch.value] == info.qemu_machine
        assert table("cpu")[arch.value] == info.qemu_cpu
        assert table("console")[arch.value] == info.console
        assert table("firmware")[arch.value] == info.efi_code
