"""First-boot seed: take config.yaml from a volume labelled MACULAOS_CONFIG or cidata (a USB
stick, a QEMU drive) when the node has no config yet, so unattended installs need no console."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
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


def seed(node_config: Path, by_label: Path = BY_LABEL) -> str | None:
    """Copy a seed config into place if there is none yet; return what was done."""
    if node_config.exists():
        return None
    # first boot: let udev finish naming the drives we were booted with
    subprocess.run(["udevadm", "settle", "--timeout=5"], check=False, capture_output=True)
    device = find_seed_device(by_label)
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
