"""Node identity: hostname ``<prefix>-XXXX`` from the primary MAC address."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from maculaos.log import die


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def primary_interface(sysfs: Path = Path("/sys/class/net")) -> Path | None:
    """The physical Ethernet/Wi-Fi interface with the lowest ifindex (its sysfs directory).

    Physical means: backed by a device (``device`` link) with ARP type 1, so bridges, veths,
    WireGuard and CNI interfaces created later never change a node's name.
    """
    best: tuple[int, Path] | None = None
    if not sysfs.is_dir():
        return None
    for iface in sysfs.iterdir():
        if not (iface / "device").exists() or _read(iface / "type") != "1":
            continue
        mac = _read(iface / "address").lower()
        if not mac or mac == "00:00:00:00:00:00":
            continue
        index = int(_read(iface / "ifindex") or 1 << 30)
        if best is None or index < best[0]:
            best = (index, iface)
    return best[1] if best else None


def primary_mac(sysfs: Path = Path("/sys/class/net")) -> str | None:
    """MAC of the primary interface (see primary_interface)."""
    iface = primary_interface(sysfs)
    return _read(iface / "address").lower() if iface else None


def hostname_for(mac: str, prefix: str = "macula") -> str:
    digits = mac.replace(":", "").lower()
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        die(f"not a MAC address: {mac!r}")
    return expand_hostname(prefix + "-${RANDOM_SUFFIX}", mac)


def expand_hostname(template: str, mac: str | None) -> str:
    """``macula-${RANDOM_SUFFIX}`` -> ``macula-XXXX`` (last 4 hex digits of the MAC)."""
    if "${RANDOM_SUFFIX}" not in template:
        return template
    suffix = mac.replace(":", "").lower()[-4:] if mac else "0000"
    return template.replace("${RANDOM_SUFFIX}", suffix)


def wait_primary_mac(sysfs: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        mac = primary_mac(sysfs)
        if mac or time.monotonic() >= deadline:
            return mac
        time.sleep(0.2)


def apply_hostname(name: str, etc: Path = Path("/etc"), live: bool = True) -> bool:
    """Write /etc/hostname and set the running hostname; return True when something changed."""
    path = etc / "hostname"
    changed = _read(path) != name
    if changed:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(name + "\n")
        os.replace(tmp, path)
    if live and socket.gethostname() != name:
        socket.sethostname(name)
        changed = True
    return changed
