"""Boot fast path: the fingerprint of everything that feeds the config, recorded after a clean
apply for ``boot.sh`` (the unit's ExecStart), which skips Python when it still matches.
Standard library only."""

from __future__ import annotations

import subprocess
from pathlib import Path

from maculaos import identity

VOLATILE = ("/run/", "/tmp/", "/dev/", "/proc/", "/sys/")
HERE = Path(__file__).parent
# in the state directory: "<fingerprint> <primary interface's address file> <its address or ->"
FASTPATH_FILE = "config-fastpath"


def mac_file(sysfs_net: Path = Path("/sys/class/net")) -> Path:
    iface = identity.primary_interface(sysfs_net)
    return iface / "address" if iface else Path("/nonexistent/no-network-interface")


def fingerprint(node_config: Path, image_defaults: Path, cmdline: Path | None, mac: str) -> str:
    args = [node_config, image_defaults, cmdline or Path("/nonexistent/cmdline"), mac]
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
    mac = _address(address)
    if mac == "-":  # no interface yet: the one the last apply saw stands, as in boot.sh
        previous = _last_seen(state)
        if previous:
            address, mac = Path(previous[0]), previous[1]
    digest = fingerprint(node_config, image_defaults, cmdline, mac)
    state.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{digest} {address} {mac}\n")
    tmp.replace(path)
    return digest


def _address(path: Path) -> str:
    """What boot.sh's ``cat`` gives for the address file, "-" when there is none (a MAC has no
    blanks; anything else is not an address and is recorded as none)."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "-"
    return text if text and len(text) <= 64 and not any(c.isspace() for c in text) else "-"


def _last_seen(state: Path) -> tuple[str, str] | None:
    try:
        fields = (state / FASTPATH_FILE).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return (fields[1], fields[2]) if len(fields) == 3 and fields[2] != "-" else None


def last_seen_mac(state: Path) -> str | None:
    """The primary interface's address the last recorded apply saw, if any."""
    seen = _last_seen(state)
    return seen[1].lower() if seen else None
