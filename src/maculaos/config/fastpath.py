"""Boot fast path: the fingerprint of everything that feeds the config, recorded after a clean
apply for ``boot.sh`` (the unit's ExecStart), which skips Python when it still matches.
Standard library only.

The primary interface's address is an input (the hostname is made from it), read once per
apply: the hostname and the record use the same one. Early in a boot the interface may not be
there yet (its driver not loaded, not yet renamed); then the address the last apply saw stands
in, kept in its own file so that an apply that may not record a fingerprint keeps it too."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from maculaos import identity

VOLATILE = ("/run/", "/tmp/", "/dev/", "/proc/", "/sys/")
HERE = Path(__file__).parent
# in the state directory: "<fingerprint> <primary interface's address, or - for none>"
FASTPATH_FILE = "config-fastpath"
MAC_FILE = "primary-mac"  # the primary interface's address the last apply saw
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
NONE = "-"


def fingerprint(node_config: Path, image_defaults: Path, cmdline: Path | None, mac: str) -> str:
    args = [node_config, image_defaults, cmdline or Path("/nonexistent/cmdline"), mac]
    return subprocess.run(
        ["sh", str(HERE / "fingerprint.sh"), *map(str, args), str(HERE / "applicators.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def last_seen_mac(state: Path) -> str | None:
    """The primary interface's address the last apply saw; None when there is none (or what is
    there is not an address)."""
    try:
        text = (state / MAC_FILE).read_bytes()[:64].decode("ascii").strip().lower()
    except (OSError, UnicodeDecodeError):
        return None
    return text if MAC.fullmatch(text) else None


def observe(state: Path, sysfs_net: Path) -> str | None:
    """The address this apply goes by: the primary interface's, else the last one seen. A live
    one is remembered for the applies that follow."""
    live = identity.primary_mac(sysfs_net)
    if live and MAC.fullmatch(live):
        if last_seen_mac(state) != live:
            state.mkdir(parents=True, exist_ok=True)
            tmp = state / (MAC_FILE + ".tmp")
            tmp.write_text(live + "\n")
            tmp.replace(state / MAC_FILE)
        return live
    return last_seen_mac(state)


def record(
    state: Path,
    eligible: bool,
    node_config: Path,
    image_defaults: Path,
    cmdline: Path | None,
    mac: str | None,
) -> str:
    """Write (or, when the next boot must apply in full, remove) the fast-path record for an
    apply that went by ``mac``; its digest, or "" when removed."""
    path = state / FASTPATH_FILE
    if not eligible:  # no digest either: the inputs may be what failed (a FIFO, a huge file)
        path.unlink(missing_ok=True)
        return ""
    seen = mac or NONE
    digest = fingerprint(node_config, image_defaults, cmdline, seen)
    state.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{digest} {seen}\n")
    tmp.replace(path)
    return digest
