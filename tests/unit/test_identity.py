"""Hostname from the primary MAC, against a fake sysfs tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from maculaos import identity
from maculaos.log import MaculaError


def iface(
    root: Path, name: str, mac: str, index: int, physical: bool = True, arptype: str = "1"
) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "address").write_text(mac + "\n")
    (d / "ifindex").write_text(f"{index}\n")
    (d / "type").write_text(arptype + "\n")
    if physical:
        (d / "device").mkdir()


def test_primary_is_lowest_ifindex_physical_ethernet(tmp_path: Path) -> None:
    iface(tmp_path, "lo", "00:00:00:00:00:00", 1, physical=False, arptype="772")
    iface(tmp_path, "cni0", "aa:aa:aa:aa:aa:01", 2, physical=False)
    iface(tmp_path, "wg0", "", 3, physical=False, arptype="65534")
    iface(tmp_path, "enp0s3", "52:54:00:AB:CD:EF", 5)
    iface(tmp_path, "enp0s4", "52:54:00:11:22:33", 4)
    assert identity.primary_mac(tmp_path) == "52:54:00:11:22:33"
    assert identity.hostname_for("52:54:00:AB:CD:EF") == "macula-cdef"


def test_no_interface_and_bad_mac(tmp_path: Path) -> None:
    assert identity.primary_mac(tmp_path) is None
    with pytest.raises(MaculaError, match="not a MAC address"):
        identity.hostname_for("zz:54:00:ab:cd:ef")


def test_apply_hostname_is_idempotent(tmp_path: Path) -> None:
    assert identity.apply_hostname("macula-cdef", etc=tmp_path, live=False) is True
    assert (tmp_path / "hostname").read_text() == "macula-cdef\n"
    assert identity.apply_hostname("macula-cdef", etc=tmp_path, live=False) is False
