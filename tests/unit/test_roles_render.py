"""Files the roles write from templates inside task files, rendered by Ansible's own templar
with the roles' defaults: one entry per line (a `join('\\n')` in a YAML block scalar renders a
literal backslash-n, which once made the dpkg filter file one useless line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = Path(__file__).resolve().parents[2] / "ansible" / "roles"


def _task(role: str, tasks_file: str, name_start: str) -> dict[str, Any]:
    tasks = yaml.safe_load((ROLES / role / "tasks" / tasks_file).read_text())
    return next(t for t in tasks if t["name"].startswith(name_start))


def _render(task: dict[str, Any], variables: dict[str, Any]) -> list[str]:
    own = {k: trust_as_template(v) for k, v in task.get("vars", {}).items()}
    variables = {**variables, **own}
    templar = Templar(loader=DataLoader(), variables=variables)
    text = templar.template(trust_as_template(task["ansible.builtin.copy"]["content"]))
    assert isinstance(text, str) and "\\n" not in text, text
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_initramfs_loads_the_filesystems_and_carries_the_drivers(arch: str) -> None:
    defaults = yaml.safe_load((ROLES / "kernel/defaults/main.yml").read_text())
    # /etc/initramfs-tools/modules: what every boot loads, the slot's filesystems only
    loaded = _render(
        _task("kernel", "configure.yml", "Put the slot's filesystems"),
        {**defaults, "kernel_arch": arch},
    )
    assert loaded == defaults["kernel_initramfs_load"]
    assert {"squashfs", "overlay", "ext4"} <= set(loaded)
    # maculaos-drivers: carried for udev to load when the hardware is there, one per line
    task = _task("kernel", "configure.yml", "Put the boot disks' drivers")
    lines = _render(task, {**defaults, "kernel_arch": arch})
    mods = defaults["kernel_initramfs_modules"]
    assert lines == mods["common"] + mods[arch]
    assert {"virtio_blk", "nvme", "usb_storage"} <= set(lines)
    assert not set(lines) & set(loaded)
    extra = _render(
        task, {**defaults, "kernel_arch": arch, "kernel_initramfs_modules_extra": ["x"]}
    )
    assert extra == [*lines, "x"]
    conf = _render(
        _task("kernel", "configure.yml", "Build a small initramfs"),
        {**defaults, "kernel_arch": arch},
    )
    assert f"MODULES={defaults['kernel_initramfs_policy'][arch]}" in conf


def test_the_dpkg_filter_file_has_one_filter_per_line() -> None:
    defaults = yaml.safe_load((ROLES / "base/defaults/main.yml").read_text())
    lines = _render(_task("base", "install.yml", "Keep documentation"), defaults)
    assert lines == defaults["base_dpkg_path_filters"]
    assert all(ln.startswith(("path-exclude=/", "path-include=/")) for ln in lines)
    assert "path-include=/usr/share/doc/*/copyright" in lines
