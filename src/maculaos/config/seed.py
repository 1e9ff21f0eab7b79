"""First-boot seed: take config.yaml from a volume labelled MACULAOS_CONFIG or cidata (a USB
stick, a QEMU drive) when the node has no config yet, so unattended installs need no console."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from maculaos.config.applicators import write_file
from maculaos.config.validate import read

LABELS = ("MACULAOS_CONFIG", "cidata", "CIDATA")
FILES = ("config.yaml", "maculaos.yaml", "user-data")
BY_LABEL = Path("/dev/disk/by-label")


def find_seed_device(by_label: Path = BY_LABEL) -> Path | None:
    for label in LABELS:
        dev = by_label / label
        if dev.exists():
            return dev
    return None


@contextlib.contextmanager
def mounted(device: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="maculaos-seed-") as mnt:
        subprocess.run(["mount", "-o", "ro", str(device), mnt], check=True, capture_output=True)
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=False, capture_output=True)


def pick(tree: Path) -> Path | None:
    for name in FILES:
        if (tree / name).is_file():
            return tree / name
    return None


def install(source: Path, node_config: Path) -> str | None:
    """Copy the seed (bounded, like any config file) into place, 0600 from its creation on;
    an error when it cannot be read."""
    data, errors = read(source)
    if data is None:
        return "; ".join(errors) or f"{source}: no such file"
    write_file(node_config, data, 0o600)
    return None


def probe_labels(labels: tuple[str, ...] = LABELS) -> Path | None:
    """The first device whose filesystem label is one of ``labels`` (in that order), asking
    the disks themselves (blkid, no cache) rather than udev's names, which lag behind while
    udev is busy loading drivers at a first boot."""
    try:
        out = subprocess.run(
            ["blkid", "-c", "/dev/null", "-o", "export", "-s", "LABEL"],
            capture_output=True, text=True, check=False, timeout=15,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    found: dict[str, str] = {}
    for block in out.split("\n\n"):
        tags = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        dev, label = tags.get("DEVNAME", ""), tags.get("LABEL")
        if label in labels and dev.startswith("/dev/") and label not in found:
            found[label] = dev
    for label in labels:
        if label in found:
            return Path(found[label])
    return None


def settle_udev() -> None:
    subprocess.run(["udevadm", "settle", "--timeout=5"], check=False, capture_output=True)


def seed(
    node_config: Path,
    by_label: Path = BY_LABEL,
    probe: Callable[[], Path | None] = probe_labels,
    settle: Callable[[], None] = settle_udev,
) -> str | None:
    """Copy a seed config into place if there is none yet; return what was done.

    The disks are asked first; udev's by-label names stand in when blkid cannot run. Only when
    neither knows a seed volume does the unit wait for udev (at most 5 s) and look again: a
    drive whose driver udev loads late (a CD drive, storage behind a USB hub) may still bring
    one. A node seeded from a disk the kernel already knows does not wait: under emulation
    udev is busy for half a minute at a first boot, and that wait held every service back."""
    if node_config.exists():
        return None
    device = probe() or find_seed_device(by_label)
    if device is None:
        settle()
        device = probe() or find_seed_device(by_label)
    if device is None:
        return None
    with mounted(device) as tree:
        source = pick(tree)
        if source is None:
            return f"seed volume {device} has none of {', '.join(FILES)}"
        problem = install(source, node_config)
        if problem:
            return f"seed volume {device} not used: {problem}"
        return f"seeded {node_config} from {device}:{source.name}"
