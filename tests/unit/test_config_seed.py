"""First-boot seed from a MACULAOS_CONFIG / cidata volume (the file picking; mounting is
exercised by the VM tier)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

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


def test_existing_config_is_never_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "config.yaml"
    dest.write_text("x: 1\n")
    (tmp_path / "MACULAOS_CONFIG").touch()
    assert seed.seed(dest, by_label=tmp_path) is None
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
