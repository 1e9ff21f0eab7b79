"""The disk this node booted from, as the initramfs found it (local-top/maculaos-disk).

GRUB puts its ESP's GPT partition GUID on the kernel command line (``maculaos.esp=``); the
initramfs looks for the one disk that carries it and, when there is exactly one, makes that
disk's partitions win the ``/dev/disk/by-*`` names and writes ``/run/maculaos/own-disk``.
Every writer of a partition (RAUC, the boot environment, the state grower) goes through here
first, so a second MaculaOS disk with the same labels (the stick the node was installed from,
another node's disk, an older image) is never written (docs/decisions/0008). Standard
library only (it ships to nodes).
"""

from __future__ import annotations

import os
from pathlib import Path

RUN = Path("/run/maculaos")
SYS_BLOCK = Path("/sys/class/block")
BY_PARTLABEL = Path("/dev/disk/by-partlabel")


class NotOwnDisk(Exception):
    """Which disk the node booted from is not known for sure: nothing may be written."""


def _status(run: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = (run / "boot-disk").read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines()[:16]:
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()[:300]
    return out


def own_disk(run: Path | None = None) -> str:
    """The kernel name of the boot disk (``vda``, ``nvme0n1``); NotOwnDisk with the reason
    when the initramfs could not tell it for sure."""
    run = run or RUN
    try:
        name = (run / "own-disk").read_text().strip()
    except OSError:
        reason = _status(run).get("REASON") or (
            "the initramfs did not record it (booted without MaculaOS's initramfs?)"
        )
        raise NotOwnDisk(
            f"the disk this node booted from is not known for sure: {reason}. Nothing on any "
            "disk is written until it is: remove the other MaculaOS disk (or give it new "
            "GUIDs: sgdisk -G DEVICE on another machine) and reboot"
        ) from None
    if not name or "/" in name or name.startswith("."):
        raise NotOwnDisk(f"/run/maculaos/own-disk names no disk ({name!r})")
    return name


def describe(run: Path | None = None) -> dict[str, str | None]:
    """For status output: the boot disk, or why it is not known."""
    try:
        return {"disk": own_disk(run), "problem": None}
    except NotOwnDisk as e:
        return {"disk": None, "problem": str(e)}


def partition(
    label: str,
    run: Path | None = None,
    by_partlabel: Path | None = None,
    sys_block: Path | None = None,
) -> Path:
    """The device of the partition named ``label`` on the boot disk; NotOwnDisk when the
    boot disk is not known or the name points at another disk."""
    disk = own_disk(run)
    sys_block = sys_block or SYS_BLOCK
    seq = _status(run or RUN).get("DISKSEQ", "")
    if seq:
        try:
            now = (sys_block / disk / "diskseq").read_text().strip()
        except OSError:
            now = ""
        if now != seq:
            raise NotOwnDisk(
                f"the boot disk {disk} went away (disk sequence {seq}, now {now or 'none'}); "
                "nothing is written until the node reboots"
            )
    link = (by_partlabel or BY_PARTLABEL) / label
    if not os.path.lexists(link):
        raise NotOwnDisk(f"no partition named {label} ({link} is missing)")
    dev = Path(os.path.realpath(link))
    parent = Path(os.path.realpath(sys_block / dev.name)).parent.name
    if not dev.name or parent != disk:
        raise NotOwnDisk(
            f"{link} is {dev}, not a partition of the boot disk {disk}; not touching it"
        )
    return dev
