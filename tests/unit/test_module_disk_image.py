"""maculaos_disk_image against real sfdisk/mkfs/mtools on an image file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.unit.modhelper import run_module

pytestmark = pytest.mark.integration


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    esp = tmp_path / "esp"
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    (esp / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"MZ" + bytes(1000))
    slot = tmp_path / "slot.bin"
    slot.write_bytes(b"hsqs" + b"\x01" * (3 * 1024 * 1024))
    return esp, slot


def _args(target: Path, esp: Path, slot: Path, size: int = 40) -> dict[str, object]:
    return {
        "target": str(target),
        "size_mib": size,
        "partitions": [
            {
                "name": "esp",
                "type": "esp",
                "size_mib": 8,
                "filesystem": "vfat",
                "source": str(esp),
                "label": "MACULAOS_ESP",
            },
            {
                "name": "rootfs-a",
                "type": "root-x86-64",
                "size_mib": 8,
                "filesystem": "raw",
                "source": str(slot),
            },
            {"name": "rootfs-b", "type": "root-x86-64", "size_mib": 8},
            {
                "name": "MACULAOS_STATE",
                "filesystem": "ext4",
                "label": "MACULAOS_STATE",
                "min_mib": 4,
            },
        ],
    }


def test_writes_gpt_filesystems_and_slot(sources: tuple[Path, Path], tmp_path: Path) -> None:
    esp, slot = sources
    target = tmp_path / "disk.img"
    result = run_module("maculaos_disk_image", _args(target, esp, slot))
    assert result["changed"] is True, result
    assert target.stat().st_size == 40 * 1024 * 1024
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(target)], check=True, capture_output=True, text=True
        ).stdout
    )["partitiontable"]
    assert [p["name"] for p in table["partitions"]] == [
        "esp",
        "rootfs-a",
        "rootfs-b",
        "MACULAOS_STATE",
    ]
    assert table["id"].lower() == result["partition_table"]["disk_uuid"]
    parts = result["partition_table"]["partitions"]
    # the slot bytes sit at rootfs-a's offset
    with target.open("rb") as f:
        f.seek(parts[1]["start_sector"] * 512)
        assert f.read(slot.stat().st_size) == slot.read_bytes()
    # the ESP is a FAT filesystem holding the tree (read back without mounting)
    esp_off = parts[0]["start_sector"] * 512
    listing = subprocess.run(
        ["mdir", "-i", f"{target}@@{esp_off}", "-b", "::/EFI/BOOT"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "BOOTX64.EFI" in listing
    # the state partition is an ext4 labelled MACULAOS_STATE
    state = tmp_path / "state.ext4"
    subprocess.run(
        [
            "dd",
            f"if={target}",
            f"of={state}",
            "bs=512",
            f"skip={parts[3]['start_sector']}",
            f"count={parts[3]['size_sectors']}",
            "status=none",
        ],
        check=True,
    )
    label = subprocess.run(
        ["e2label", str(state)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert label == "MACULAOS_STATE"


def test_second_run_reports_no_change(sources: tuple[Path, Path], tmp_path: Path) -> None:
    esp, slot = sources
    target = tmp_path / "disk.img"
    assert run_module("maculaos_disk_image", _args(target, esp, slot))["changed"] is True
    before = target.read_bytes()
    again = run_module("maculaos_disk_image", _args(target, esp, slot))
    assert again["changed"] is False
    assert target.read_bytes() == before


def test_changed_source_rewrites(sources: tuple[Path, Path], tmp_path: Path) -> None:
    esp, slot = sources
    target = tmp_path / "disk.img"
    run_module("maculaos_disk_image", _args(target, esp, slot))
    slot.write_bytes(b"hsqs" + b"\x02" * 1024)
    assert run_module("maculaos_disk_image", _args(target, esp, slot))["changed"] is True


def test_check_mode_plans_without_writing(sources: tuple[Path, Path], tmp_path: Path) -> None:
    esp, slot = sources
    target = tmp_path / "disk.img"
    result = run_module("maculaos_disk_image", _args(target, esp, slot), check_mode=True)
    assert result["changed"] is True
    assert len(result["partition_table"]["partitions"]) == 4
    assert not target.exists()


def test_layout_too_big_fails_before_writing(sources: tuple[Path, Path], tmp_path: Path) -> None:
    esp, slot = sources
    target = tmp_path / "disk.img"
    result = run_module("maculaos_disk_image", _args(target, esp, slot, size=20))
    assert result["failed"]
    assert "layout does not fit the disk: it needs 30 MiB" in result["msg"]
    assert not target.exists()


def test_existing_blank_target_without_table_is_written(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    """A new, all-zero disk (Packer's second disk) has no partition table yet."""
    esp, slot = sources
    target = tmp_path / "blank.img"
    with target.open("wb") as f:
        f.truncate(40 * 1024 * 1024)
    result = run_module("maculaos_disk_image", _args(target, esp, slot))
    assert result["changed"] is True, result
    assert result["diff"]["before"] == {}
    assert run_module("maculaos_disk_image", _args(target, esp, slot))["changed"] is False
