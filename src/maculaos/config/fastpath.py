"""Boot fast path: the fingerprint of everything that feeds the config, recorded after a clean
apply for ``boot.sh`` (the unit's ExecStart), which skips Python when it still matches.
Standard library only."""

from __future__ import annotations

import subprocess
from pathlib import Path

from maculaos import identity

VOLATILE = ("/run/", "/tmp/", "/dev/", "/proc/", "/sys/")
HERE = Path(__file__).parent
FASTPATH_FILE = "config-fastpath"  # in the state directory: "<fingerprint> <mac file>"


def mac_file(sysfs_net: Path = Path("/sys/class/net")) -> Path:
    iface = identity.primary_interface(sysfs_net)
    return iface / "address" if iface else Path("/nonexistent/no-network-interface")


def fingerprint(
    node_config: Path, image_defaults: Path, cmdline: Path | None, address_file: Path
) -> str:
    args = [node_config, image_defaults, cmdline or Path("/nonexistent/cmdline"), address_file]
    return subprocess.run(
        ["sh", str(HERE / "fingerprint.sh"), *map(str, args), str(HERE / "applicators.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def record(
    state: Path,
    eligible: bool,
    node_config: Path,
    image_defaults: Path,
    cmdline: Path | None,
    sysfs_net: Path,
) -> str:
    """Write (or, when the next boot must apply in full, remove) the fast-path record; its
    digest, or "" when removed."""
    path = state / FASTPATH_FILE
    if not eligible:  # no digest either: the inputs may be what failed (a FIFO, a huge file)
        path.unlink(missing_ok=True)
        return ""
    address = mac_file(sysfs_net)
    digest = fingerprint(node_config, image_defaults, cmdline, address)
    state.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{digest} {address}\n")
    tmp.replace(path)
    return digest
