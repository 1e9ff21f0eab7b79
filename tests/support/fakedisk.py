"""A stand-in for the kernel's view of two MaculaOS disks (sysfs, /dev/disk/by-partlabel and
what the initramfs wrote to /run/maculaos), for unit tests of maculaos.bootdisk and of the
commands that go through it. The VM tier has the real thing."""

from __future__ import annotations

from pathlib import Path

from maculaos import layout


def make(tmp: Path, own: str | None = "vda", labels_on: str = "vda") -> dict[str, Path]:
    """Disks vda and vdb with the MaculaOS partitions; the by-partlabel names point at
    ``labels_on``; ``own`` is what the initramfs recorded (None: it could not tell)."""
    run = tmp / "run"
    run.mkdir(parents=True)
    if own is not None:
        (run / "own-disk").write_text(own + "\n")
    else:
        (run / "boot-disk").write_text(
            "DISK=\nSTATUS=ambiguous\nREASON=2 disks carry the same ESP\n"
        )
    sys_block = tmp / "sys/class/block"
    sys_block.mkdir(parents=True)
    dev = tmp / "dev"
    by = dev / "disk/by-partlabel"
    by.mkdir(parents=True)
    for disk in ("vda", "vdb"):
        (sys_block / disk).symlink_to(tmp / "sys/devices" / disk)
        for p in layout.PARTITIONS:
            node = tmp / "sys/devices" / disk / f"{disk}{p.number}"
            node.mkdir(parents=True)
            (sys_block / node.name).symlink_to(node)
            (dev / node.name).touch()
    for p in layout.PARTITIONS:
        (by / p.name).symlink_to(dev / f"{labels_on}{p.number}")
    return {"run": run, "by_partlabel": by, "sys_block": sys_block}


def install(
    monkeypatch: object, tmp: Path, own: str | None = "vda", labels_on: str = "vda"
) -> None:
    """Point maculaos.bootdisk at a fake tree (``monkeypatch`` is pytest's)."""
    from maculaos import bootdisk  # noqa: PLC0415

    f = make(tmp, own, labels_on)
    monkeypatch.setattr(bootdisk, "RUN", f["run"])  # type: ignore[attr-defined]
    monkeypatch.setattr(bootdisk, "BY_PARTLABEL", f["by_partlabel"])  # type: ignore[attr-defined]
    monkeypatch.setattr(bootdisk, "SYS_BLOCK", f["sys_block"])  # type: ignore[attr-defined]
