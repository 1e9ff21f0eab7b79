"""maculaos_squashfs against the real mksquashfs: reproducible, idempotent, check mode."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.modhelper import run_module

pytestmark = pytest.mark.integration


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("NAME=MaculaOS\n")
    (root / "proc").mkdir()
    (root / "proc" / "junk").write_text("runtime state")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(os.urandom(4096))
    return root


def _args(tree: Path, dest: Path) -> dict[str, object]:
    return {
        "src": str(tree),
        "dest": str(dest),
        "compression": "gzip",
        "source_date_epoch": 1700000000,
    }


def test_builds_then_second_run_reports_no_change(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "root.squashfs"
    first = run_module("maculaos_squashfs", _args(tree, dest))
    assert first["changed"] is True and dest.exists()
    assert first["size"] == dest.stat().st_size
    second = run_module("maculaos_squashfs", _args(tree, dest))
    assert second["changed"] is False
    assert second["sha256"] == first["sha256"]
    listing = subprocess.run(
        ["unsquashfs", "-l", str(dest)], capture_output=True, text=True, check=True
    ).stdout
    assert "squashfs-root/etc/os-release" in listing
    assert "squashfs-root/proc/junk" not in listing  # default excludes


def test_timestamps_do_not_change_the_bytes(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "root.squashfs"
    first = run_module("maculaos_squashfs", _args(tree, dest))
    os.utime(tree / "etc" / "os-release", (1, 1))
    again = run_module("maculaos_squashfs", _args(tree, dest))
    assert again["changed"] is False and again["sha256"] == first["sha256"]


def test_content_change_is_a_change_with_diff(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "root.squashfs"
    first = run_module("maculaos_squashfs", _args(tree, dest))
    (tree / "etc" / "os-release").write_text("NAME=Other\n")
    again = run_module("maculaos_squashfs", _args(tree, dest), diff=True)
    assert again["changed"] is True
    assert again["diff"]["before"]["sha256"] == first["sha256"]
    assert again["diff"]["after"]["sha256"] != first["sha256"]


def test_check_mode_reports_change_without_writing(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "root.squashfs"
    result = run_module("maculaos_squashfs", _args(tree, dest), check_mode=True)
    assert result["changed"] is True
    assert not dest.exists()
    assert not (tmp_path / "out").exists()


def test_bad_compression_and_missing_source_are_named(tmp_path: Path) -> None:
    result = run_module(
        "maculaos_squashfs", {"src": str(tmp_path / "nope"), "dest": str(tmp_path / "x")}
    )
    assert result["failed"] and "is not a directory" in result["msg"]
    result = run_module(
        "maculaos_squashfs",
        {"src": str(tmp_path), "dest": str(tmp_path / "x"), "excludes": ["/etc"]},
    )
    assert result["failed"] and "no leading /" in result["msg"]


def test_none_packs_nothing_compressed_and_takes_no_options(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "plain.squashfs"
    result = run_module("maculaos_squashfs", {**_args(tree, dest), "compression": "none"})
    assert result["changed"] is True
    said = subprocess.run(
        ["unsquashfs", "-s", str(dest)], capture_output=True, text=True, check=True
    ).stdout
    for part in ("Inodes are", "Data is", "Fragments are", "Xattrs are"):
        assert f"{part} uncompressed" in said, said
    # the random file is stored as it is: the image is at least as large as the tree
    assert dest.stat().st_size > 4096
    refused = run_module(
        "maculaos_squashfs",
        {
            **_args(tree, dest),
            "compression": "none",
            "compression_opts": ["-Xcompression-level", "6"],
        },
    )
    assert refused["failed"] and "takes no compression_opts" in refused["msg"]


def test_issue10_the_kernel_and_initramfs_are_stored_as_they_are(tmp_path: Path) -> None:
    """GRUB reads them out of the slot at every boot and they are compressed already: their
    blocks are stored raw (no xz for GRUB to undo), everything else is compressed."""
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    text = "".join(f"line {i} of a very compressible file\n" for i in range(40000))
    (root / "boot" / "vmlinuz-6.12.0-1-amd64").write_text(text + "kernel")
    (root / "boot" / "initrd.img-6.12.0-1-amd64").write_text(text + "initramfs")
    (root / "boot" / "config-6.12.0-1-amd64").write_text(text + "config")
    size = len(text)
    dest = tmp_path / "slot.squashfs"
    result = run_module("maculaos_squashfs", {**_args(root, dest), "compression": "xz"})
    assert result["changed"] is True, result
    # two files raw, the third (same size) compressed to a few KiB
    assert 2 * size < dest.stat().st_size < 2 * size + 64 * 1024
    out = tmp_path / "out"
    subprocess.run(["unsquashfs", "-q", "-d", str(out), str(dest)], check=True, capture_output=True)
    assert (out / "boot" / "vmlinuz-6.12.0-1-amd64").read_text() == text + "kernel"
    assert (out / "boot" / "initrd.img-6.12.0-1-amd64").read_text() == text + "initramfs"
