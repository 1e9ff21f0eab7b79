"""Layout validation and placement (pure functions)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from maculaos import disk

MIB = disk.MIB

LAYOUT = [
    {"name": "esp", "type": "esp", "size_mib": 64, "filesystem": "vfat"},
    {"name": "rootfs-a", "type": "root-x86-64", "size_mib": 1024},
    {"name": "rootfs-b", "type": "root-x86-64", "size_mib": 1024},
    {"name": "MACULAOS_STATE", "filesystem": "ext4", "min_mib": 256},
]


def test_plan_places_partitions_aligned_and_fills_the_rest() -> None:
    specs = disk.parse_specs(LAYOUT)
    p = disk.plan(specs, 2400 * MIB, "seed")
    starts = [x.start for x in p.partitions]
    assert starts == [2048, 2048 + 64 * 2048, 2048 + 1088 * 2048, 2048 + 2112 * 2048]
    assert all(
        x.start % disk.ALIGN_SECTORS == 0 and x.size % disk.ALIGN_SECTORS == 0 for x in p.partitions
    )
    state = p.partitions[-1]
    # 2400 MiB disk: 1 MiB head, 2112 MiB fixed, the last MiB holds the backup GPT
    assert state.size == (2400 - 1 - 2112 - 1) * 2048
    assert state.start + state.size <= p.disk_sectors - disk.GPT_BACKUP_SECTORS - 1


def test_plan_is_deterministic_and_seed_dependent() -> None:
    specs = disk.parse_specs(LAYOUT)
    a, b = disk.plan(specs, 2400 * MIB, "x"), disk.plan(specs, 2400 * MIB, "x")
    c = disk.plan(specs, 2400 * MIB, "y")
    assert a == b
    assert a.disk_uuid != c.disk_uuid
    assert len({x.uuid for x in a.partitions}) == 4


def test_layout_that_does_not_fit_names_sizes() -> None:
    specs = disk.parse_specs(LAYOUT)
    with pytest.raises(disk.LayoutError, match=r"needs 2370 MiB .* holds 2000 MiB"):
        disk.plan(specs, 2000 * MIB, "s")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"name": ""}, r"partitions\[0\]\.name"),
        ({"name": "a", "type": "nope"}, r"type 'nope' is not known"),
        ({"name": "a", "size_mib": -1}, r"size_mib must be a positive integer"),
        ({"name": "a", "filesystem": "btrfs"}, r"filesystem 'btrfs' is not allowed"),
        ({"name": "a", "filesystem": "raw"}, r"source is required"),
        ({"name": "a", "source": "/x"}, r"source needs a filesystem"),
    ],
)
def test_bad_partition_specs_name_the_key(bad: dict[str, object], message: str) -> None:
    with pytest.raises(disk.LayoutError, match=message):
        disk.parse_specs([bad])


def test_two_rest_partitions_rejected() -> None:
    with pytest.raises(disk.LayoutError, match="only one partition may take the rest"):
        disk.parse_specs([{"name": "a"}, {"name": "b"}])


def test_duplicate_names_rejected() -> None:
    with pytest.raises(disk.LayoutError, match="used twice"):
        disk.parse_specs([{"name": "a", "size_mib": 1}, {"name": "a", "size_mib": 1}])


def test_sfdisk_script_round_trips_through_same_table() -> None:
    p = disk.plan(disk.parse_specs(LAYOUT), 2400 * MIB, "seed")
    script = disk.sfdisk_script(p)
    assert 'name="rootfs-a"' in script and f"label-id: {p.disk_uuid}" in script
    dump = {
        "partitiontable": {
            "label": "gpt",
            "id": p.disk_uuid.upper(),
            "device": "x",
            "unit": "sectors",
            "partitions": [
                {
                    "node": f"x{i}",
                    "start": x.start,
                    "size": x.size,
                    "type": disk.TYPES[x.spec.type].upper(),
                    "uuid": x.uuid.upper(),
                    "name": x.spec.name,
                }
                for i, x in enumerate(p.partitions)
            ],
        }
    }
    current = disk.parse_sfdisk_json(json.dumps(dump))
    assert disk.same_table(current, p)
    dump["partitiontable"]["partitions"][1]["size"] += 2048  # type: ignore[index]
    assert not disk.same_table(disk.parse_sfdisk_json(json.dumps(dump)), p)


def test_source_larger_than_partition_rejected(tmp_path: Path) -> None:
    src = tmp_path / "big"
    with src.open("wb") as f:
        f.truncate(3 * MIB)
    specs = disk.parse_specs(
        [{"name": "a", "size_mib": 2, "filesystem": "raw", "source": str(src)}]
    )
    with pytest.raises(disk.LayoutError, match="is 3 MiB but the partition holds 2 MiB"):
        disk.check_sources(specs, disk.plan(specs, 8 * MIB, "s"))


@pytest.mark.skipif(
    not (shutil.which("mkfs.vfat") and shutil.which("mcopy")), reason="no dosfstools/mtools"
)
def test_the_esp_is_the_same_bytes_whenever_its_files_were_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, goal 6: FAT keeps a time for every entry; under SOURCE_DATE_EPOCH the ESP of
    two builds is byte-identical although each build made its files at its own time, and the
    build's own tree keeps its times."""
    specs = disk.parse_specs([{"name": "esp", "type": "esp", "size_mib": 8, "filesystem": "vfat"}])
    images = []
    for n, when in enumerate((1_000_000_000, 1_700_000_000)):
        tree = tmp_path / f"tree{n}"
        (tree / "EFI/BOOT").mkdir(parents=True)
        (tree / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"MZ" + bytes(5000))
        (tree / "grub.cfg").write_text("set default=0\n")
        for p in (
            tree / "EFI/BOOT/BOOTX64.EFI",
            tree / "grub.cfg",
            tree / "EFI/BOOT",
            tree / "EFI",
        ):
            os.utime(p, (when, when))
        spec = dataclasses.replace(specs[0], source=str(tree))
        placed = disk.plan([spec], 16 * MIB, "seed").partitions[0]
        out = tmp_path / f"esp{n}.img"
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "1795810980")
        disk.make_filesystem(placed, str(out), "seed")
        images.append(out.read_bytes())
        assert (tree / "grub.cfg").stat().st_mtime == when  # the source is not touched
        assert not list(tmp_path.glob("*.tree"))  # the stamped copy is gone
    assert images[0] == images[1]
    # without SOURCE_DATE_EPOCH the files keep their own times: the images differ
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    spec = dataclasses.replace(specs[0], source=str(tmp_path / "tree0"))
    placed = disk.plan([spec], 16 * MIB, "seed").partitions[0]
    disk.make_filesystem(placed, str(tmp_path / "plain.img"), "seed")
    assert (tmp_path / "plain.img").read_bytes() != images[0]


@pytest.mark.skipif(
    not (shutil.which("mkfs.vfat") and shutil.which("mcopy")), reason="no dosfstools/mtools"
)
def test_a_source_date_epoch_before_1980_stamps_the_earliest_fat_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a git checkout the build's SOURCE_DATE_EPOCH is 0, which FAT cannot hold."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "grub.cfg").write_text("x\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    copy = disk._stamped_copy(str(tree), str(tmp_path / "copy"))
    assert Path(copy, "grub.cfg").stat().st_mtime == disk.FAT_EPOCH
    spec = disk.parse_specs(
        [{"name": "esp", "type": "esp", "size_mib": 8, "filesystem": "vfat", "source": str(tree)}]
    )
    placed = disk.plan(spec, 16 * MIB, "seed").partitions[0]
    disk.make_filesystem(placed, str(tmp_path / "esp.img"), "seed")
    listed = subprocess.run(
        ["mdir", "-i", str(tmp_path / "esp.img"), "::/"], capture_output=True, text=True, check=True
    ).stdout
    assert "1980-01-0" in listed, listed


@pytest.mark.parametrize("value", ["", "x", "-5", "1e9", "9" * 13])
def test_a_source_date_epoch_that_is_not_a_time_is_ignored(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    assert disk.source_date_epoch() is None
