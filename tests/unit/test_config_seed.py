"""First-boot seed from a MACULAOS_CONFIG / cidata volume (the file picking; mounting is
exercised by the VM tier)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from maculaos.config import seed


def test_finds_labels_in_order(tmp_path: Path) -> None:
    assert seed.find_seed_device(tmp_path) is None
    (tmp_path / "cidata").touch()
    assert seed.find_seed_device(tmp_path) == tmp_path / "cidata"
    (tmp_path / "MACULAOS_CONFIG").touch()
    assert seed.find_seed_device(tmp_path) == tmp_path / "MACULAOS_CONFIG"


def test_picks_config_then_user_data_and_installs_0600(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    assert seed.pick(tree) is None
    (tree / "user-data").write_text("#cloud-config\n")
    assert seed.pick(tree) == tree / "user-data"
    (tree / "config.yaml").write_text("maculaos: {timezone: UTC}\n")
    assert seed.pick(tree) == tree / "config.yaml"
    dest = tmp_path / "var/lib/maculaos/config.yaml"
    seed.install(tree / "config.yaml", dest)
    assert dest.read_text() == "maculaos: {timezone: UTC}\n"
    assert dest.stat().st_mode & 0o777 == 0o600


def test_seed_found_by_asking_the_disks_when_udev_has_not_named_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a first boot udev may not have made /dev/disk/by-label yet: blkid's answer counts,
    a label seed does not know never does, and MACULAOS_CONFIG wins over cidata."""
    said = (
        "DEVNAME=/dev/vda2\nLABEL=MACULAOS_STATE\n\nDEVNAME=/dev/vdc\nLABEL=cidata\n\n"
        "DEVNAME=/dev/vdb\nLABEL=MACULAOS_CONFIG\n\nDEVNAME=/dev/vdd\nLABEL=MACULAOS_CONFIG\n"
    )
    calls: list[list[str]] = []

    def blkid(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, said, "")

    monkeypatch.setattr(subprocess, "run", blkid)
    assert seed.probe_labels() == Path("/dev/vdb")
    assert calls[0][:3] == ["blkid", "-c", "/dev/null"]  # no stale cache
    said = "DEVNAME=/dev/vda2\nLABEL=MACULAOS_STATE\n\nDEVNAME=/dev/vdc\nLABEL=CIDATA\n"
    assert seed.probe_labels() == Path("/dev/vdc")
    said = "DEVNAME=/dev/vda2\nLABEL=MACULAOS_STATE\n\nDEVNAME=vdx\nLABEL=cidata\n"
    assert seed.probe_labels() is None

    def hung(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(cmd, 15)

    monkeypatch.setattr(subprocess, "run", hung)
    assert seed.probe_labels() is None
    # no udev name and nothing found: no seed, nothing written
    dest = tmp_path / "config.yaml"
    assert seed.seed(dest, by_label=tmp_path, probe=lambda: None) is None
    assert not dest.exists()


def test_existing_config_is_never_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "config.yaml"
    dest.write_text("x: 1\n")
    (tmp_path / "MACULAOS_CONFIG").touch()
    assert seed.seed(dest, by_label=tmp_path, probe=lambda: None) is None
    assert dest.read_text() == "x: 1\n"


def test_item8_a_seed_file_is_read_bounded_like_any_config(tmp_path: Path) -> None:
    """A seed volume is hostile input too: a FIFO or a huge file is reported, not copied."""
    dest = tmp_path / "config.yaml"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    said: list[str | None] = []
    worker = threading.Thread(target=lambda: said.append(seed.install(fifo, dest)), daemon=True)
    worker.start()
    worker.join(10)  # reading a FIFO would wait for a writer forever
    assert said == [f"{fifo}: is not a regular file"]
    huge = tmp_path / "huge"
    with huge.open("wb") as f:
        f.truncate(64 << 20)
    assert "larger than 1024 KiB" in str(seed.install(huge, dest))
    assert not dest.exists()
