"""First-boot seed from a MACULAOS_CONFIG / cidata volume (the file picking; mounting is
exercised by the VM tier)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
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
    # no udev name and nothing found: udev is waited for once, then no seed, nothing written
    dest = tmp_path / "config.yaml"
    settled: list[bool] = []
    assert (
        seed.seed(dest, by_label=tmp_path, probe=lambda: None, settle=lambda: settled.append(True))
        is None
    )
    assert not dest.exists() and settled == [True]


def test_a_seed_the_disks_know_is_taken_without_waiting_for_udev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """blkid's answer first (it also orders the labels), udev's names when blkid has none;
    the wait for udev only when neither knows one, and a look again after it."""
    links = tmp_path / "by-label"
    links.mkdir()
    (links / "cidata").touch()
    seen: list[str] = []

    def settle() -> None:
        seen.append("settle")

    def probe(answers: list[Path | None]) -> Callable[[], Path | None]:
        def ask() -> Path | None:
            seen.append("probe")
            return answers.pop(0)

        return ask

    dest = tmp_path / "config.yaml"
    # blkid names MACULAOS_CONFIG while udev only named cidata yet: blkid's wins, no wait
    mounted: list[Path] = []

    @contextlib.contextmanager
    def fake_mount(device: Path) -> Iterator[Path]:
        mounted.append(device)
        tree = tmp_path / "tree"
        tree.mkdir(exist_ok=True)
        (tree / "config.yaml").write_text("maculaos: {timezone: UTC}\n")
        yield tree

    monkeypatch.setattr(seed, "mounted", fake_mount)
    said = seed.seed(dest, links, probe([Path("/dev/vdb")]), settle)
    assert mounted == [Path("/dev/vdb")] and seen == ["probe"], (mounted, seen)
    assert said is not None and said.startswith("seeded") and dest.exists()
    # blkid cannot tell: udev's name
    dest.unlink()
    seen.clear()
    seed.seed(dest, links, probe([None]), settle)
    assert mounted[-1] == links / "cidata" and seen == ["probe"]
    # nothing yet: wait for udev once, then blkid finds the late drive
    dest.unlink()
    seen.clear()
    (links / "cidata").unlink()
    seed.seed(dest, links, probe([None, Path("/dev/sr0")]), settle)
    assert mounted[-1] == Path("/dev/sr0") and seen == ["probe", "settle", "probe"]


def test_existing_config_is_never_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "config.yaml"
    dest.write_text("x: 1\n")
    (tmp_path / "MACULAOS_CONFIG").touch()
    assert seed.seed(dest, by_label=tmp_path, probe=lambda: None, settle=lambda: None) is None
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
