"""Facts about the disk and the release that many files repeat: the one owner of each. Every
other copy (Ansible YAML, Jinja templates, systemd units, shell, HCL) is derived from here or
checked against it by tests/unit/test_layout_owners.py, the way ``arch.py`` owns the
architecture names. Standard library only (it ships to nodes).
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Partition:
    number: int  # GPT partition number (GRUB addresses slots by it: ``gpt2``)
    name: str  # GPT partition name (PARTLABEL)
    fs_label: str | None  # filesystem label, where the partition has a filesystem


ESP = Partition(1, "esp", "MACULAOS_ESP")
SLOT_A = Partition(2, "rootfs-a", None)
SLOT_B = Partition(3, "rootfs-b", None)
STATE = Partition(4, "MACULAOS_STATE", "MACULAOS_STATE")
PARTITIONS = (ESP, SLOT_A, SLOT_B, STATE)
SLOTS = {"A": SLOT_A, "B": SLOT_B}  # RAUC bootname -> partition

# The version rule: semantic versions without leading zeros, an optional pre-release and
# build part. Written with [.] and [+] so that Python, Jinja (Python re) and Packer (Go RE2)
# read the very same text.
VERSION_PATTERN = (
    r"^(0|[1-9][0-9]*)[.](0|[1-9][0-9]*)[.](0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?$"
)
VERSION = re.compile(VERSION_PATTERN)


def compatible(arch: str) -> str:
    """RAUC's compatible string: a bundle installs only on a node with the same one."""
    return f"maculaos-{arch}"
