"""The build VM packs the slot uncompressed and the build host compresses it again, in place
in the disk image (docs/decisions/0011): the same tree, the same bytes every time, nothing of
the uncompressed slot left behind, and a slot that does not match what the VM recorded or
that no longer fits is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from maculaos import squashfs
from maculaos.arch import Architecture
from maculaos.disk import file_digest
from maculaos.log import MaculaError
from maculaos_build import finalize

pytestmark = pytest.mark.skipif(
    not (shutil.which("mksquashfs") and shutil.which("unsquashfs")), reason="no squashfs-tools"
)
START, SECTORS = 2048, 4096  # slot A at 1 MiB, 2 MiB long
COMPRESSOR_ID = {"gzip": 1, "xz": 4}


def _tree(root: Path) -> None:
    (root / "usr/lib/modules").mkdir(parents=True)
    (root / "etc").mkdir()
    text = "".join(f"line {i} of a compressible file\n" for i in range(20000))
    (root / "usr/lib/modules/big.ko").write_text(text)
    (root / "etc/os-release").write_text('NAME="MaculaOS"\n')
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    os.chmod(root / "etc/shadow", 0o640)
    os.link(root / "etc/os-release", root / "usr/os-release.hard")
    os.symlink("../etc/os-release", root / "usr/os-release")
    (root / "usr/bin").mkdir()
    (root / "usr/bin/su").write_bytes(b"\x7fELF")
    os.chmod(root / "usr/bin/su", 0o4755)
    if os.geteuid() == 0:
        os.chown(root / "etc/shadow", 0, 42)
        os.chown(root / "usr/lib/modules/big.ko", 1000, 1000)


def _image(tmp: Path, slot_size: int | None = None) -> tuple[Path, dict[str, Any]]:
    tree = tmp / "tree"
    _tree(tree)
    plain = tmp / "plain.squashfs"
    spec = squashfs.SquashfsSpec(str(tree), str(plain), compression="none", source_date_epoch=7)
    subprocess.run(squashfs.command(spec, str(plain)), check=True, capture_output=True)
    img = tmp / "disk.img"
    with img.open("wb") as f:
        f.truncate((START + SECTORS + 2048) * 512)
        f.seek(START * 512)
        f.write(plain.read_bytes())
    info = {
        "source_date_epoch": 7,
        "squashfs": {
            "compression": "none",
            "size": plain.stat().st_size,
            "sha256": file_digest(str(plain)),
        },
        "partition_table": {
            "partitions": [
                {"name": "esp", "start_sector": 34, "size_sectors": 2000},
                {"name": "rootfs-a", "start_sector": START, "size_sectors": slot_size or SECTORS},
            ]
        },
    }
    return img, info


def _slot(img: Path, size: int, extra: int = 0) -> bytes:
    with img.open("rb") as f:
        f.seek(START * 512)
        return f.read(size + extra)


def _listing(path: Path) -> str:
    said = subprocess.run(
        ["unsquashfs", "-lln", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return "\n".join(ln.replace(str(path), "") for ln in said.splitlines()[1:])


@pytest.mark.parametrize("compression", ["gzip", "xz"])
def test_the_slot_is_compressed_in_place_with_the_same_tree(
    tmp_path: Path, compression: str
) -> None:
    img, info = _image(tmp_path)
    before = _listing(tmp_path / "plain.squashfs")
    plain_size = info["squashfs"]["size"]
    entry = finalize.recompress_slot(img, info, compression)
    assert entry["compression"] == compression
    assert entry["size"] < plain_size / 4  # the text compresses; the slot really is packed
    packed = _slot(img, entry["size"], plain_size - entry["size"])
    assert hashlib.sha256(packed[: entry["size"]]).hexdigest() == entry["sha256"]
    # the superblock says which compressor; nothing of the uncompressed slot stays behind it
    assert struct.unpack_from("<H", packed, 20)[0] == COMPRESSOR_ID[compression]
    assert packed[entry["size"] :] == bytes(plain_size - entry["size"])
    out = tmp_path / "out.squashfs"
    out.write_bytes(packed[: entry["size"]])
    # same files, modes, owners, links and times
    assert _listing(out) == before
    unpacked = tmp_path / "x"
    subprocess.run(["unsquashfs", "-d", str(unpacked), str(out)], check=True, capture_output=True)
    assert (unpacked / "usr/lib/modules/big.ko").read_bytes() == (
        tmp_path / "tree/usr/lib/modules/big.ko"
    ).read_bytes()
    # and the same bytes when done again from the same tree
    img2, info2 = _image(tmp_path / "again")
    assert finalize.recompress_slot(img2, info2, compression) == entry


def test_a_slot_that_is_not_what_the_vm_recorded_is_refused(tmp_path: Path) -> None:
    img, info = _image(tmp_path)
    with img.open("r+b") as f:
        f.seek(START * 512 + 4096)
        f.write(b"tampered")
    with pytest.raises(MaculaError, match="does not match the squashfs sha256"):
        finalize.recompress_slot(img, info, "gzip")


def test_a_packed_slot_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    img, info = _image(tmp_path)
    info["partition_table"]["partitions"][1]["size_sectors"] = 8  # 4 KiB
    with pytest.raises(MaculaError, match="does not fit slot A"):
        finalize.recompress_slot(img, info, "xz")


def test_only_release_compressors(tmp_path: Path) -> None:
    img, info = _image(tmp_path)
    with pytest.raises(MaculaError, match="not one of gzip, xz"):
        finalize.recompress_slot(img, info, "lz4")


def test_only_root_may_compress_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpacked by anyone else, owners, setuid bits and capabilities would be lost silently."""
    img, info = _image(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(MaculaError, match="needs root"):
        finalize.recompress_slot(img, info, "gzip")


@pytest.mark.skipif(os.geteuid() != 0, reason="owners are kept only as root")
def test_a_packed_slot_that_lists_other_owners_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img, info = _image(tmp_path)
    before = img.read_bytes()
    real = squashfs.command
    monkeypatch.setattr(squashfs, "command", lambda spec, out: [*real(spec, out), "-all-root"])
    with pytest.raises(MaculaError, match="does not list what the build VM packed"):
        finalize.recompress_slot(img, info, "gzip")
    assert img.read_bytes() == before  # nothing written


def test_an_image_cut_short_inside_the_slot_is_named_not_a_hang(tmp_path: Path) -> None:
    """The copy out of the image (shared with bundle.slot_squashfs) stops at the image's end;
    that copy used to read empty chunks forever."""
    img, info = _image(tmp_path)
    with img.open("r+b") as f:
        f.truncate(START * 512 + 1000)
    with pytest.raises(MaculaError, match="ends inside slot A's squashfs"):
        finalize.copy_slot(img, {"start_sector": START}, info["squashfs"], tmp_path / "s", "x")


def test_files_added_to_the_tree_are_packed_and_nothing_else_changes(tmp_path: Path) -> None:
    """What the host adds (the SBOM) lands in the slot; the rest lists as the VM packed it."""
    img, info = _image(tmp_path)
    before = _listing(tmp_path / "plain.squashfs")

    def add(tree: Path, build_info: dict[str, Any]) -> list[str]:
        assert build_info is info
        (tree / "usr/bom.json").write_text("{}\n")
        return ["usr/bom.json"]

    entry = finalize.recompress_slot(img, info, "gzip", add=add)
    out = tmp_path / "out.squashfs"
    out.write_bytes(_slot(img, entry["size"]))
    after = _listing(out).splitlines()
    assert [ln for ln in after if ln.endswith("-root/usr/bom.json")]
    rest = [ln for ln in after if not ln.endswith("-root/usr/bom.json")]
    # (a directory's listed size is its listing's: /usr's grew by one entry)
    mask = finalize.mask_dir_size
    assert [mask(ln) for ln in rest] == [mask(ln) for ln in before.splitlines()]


def test_directory_sizes_of_another_width_list_alike() -> None:
    """Two squashfs-tools lay a directory out to sizes of different widths (999 and 1001):
    unsquashfs right-aligns the size, so the padding differs with it. Both list alike; a file's
    size still counts."""
    a = "drwxr-xr-x 0/0                     999 2026-11-28 02:17 /usr/share/x"
    b = "drwxr-xr-x 0/0                    1001 2026-11-28 02:17 /usr/share/x"
    mask = finalize.mask_dir_size
    assert mask(a) == mask(b)
    f1 = "-rw-r--r-- 0/0                     999 2026-11-28 02:17 /usr/share/x/f"
    f2 = "-rw-r--r-- 0/0                    1001 2026-11-28 02:17 /usr/share/x/f"
    assert mask(f1) != mask(f2)


@pytest.mark.parametrize("said", [[], ["usr/other.json"], ["usr/bom.json", "usr/b2.json"]])
def test_a_tree_changed_beyond_what_was_said_is_refused(tmp_path: Path, said: list[str]) -> None:
    img, info = _image(tmp_path)
    before = img.read_bytes()

    def add(tree: Path, build_info: dict[str, Any]) -> list[str]:
        (tree / "usr/bom.json").write_text("{}\n")
        return said

    with pytest.raises(MaculaError, match="does not list what the build VM packed"):
        finalize.recompress_slot(img, info, "gzip", add=add)
    assert img.read_bytes() == before


def test_a_link_to_the_added_path_does_not_count_as_the_file(tmp_path: Path) -> None:
    """The check parses each listed path: a symlink whose target names the added file is the
    link, not the file (the hook said it added a file and added only a link)."""
    img, info = _image(tmp_path)

    def add(tree: Path, build_info: dict[str, Any]) -> list[str]:
        (tree / "usr/link").symlink_to("/usr/bom.json")
        return ["usr/bom.json"]

    with pytest.raises(MaculaError, match="does not list what the build VM packed"):
        finalize.recompress_slot(img, info, "gzip", add=add)


def test_files_to_add_need_a_repack(tmp_path: Path) -> None:
    """An image must not ship without what the host adds because nothing was repacked."""
    packer = tmp_path / "packer"
    packer.mkdir()
    img, info = _image(tmp_path)
    shutil.copy(img, packer / "build-vm-1")
    info["squashfs"]["compression"] = "gzip"
    (packer / "build-info.json").write_text(json.dumps(info))
    with pytest.raises(MaculaError, match="no repacking on this host to add the SBOM"):
        finalize.finalize(
            packer, tmp_path / "out", "1.0.0", Architecture.amd64, compression="gzip",
            add=lambda tree, i: [],
        )  # fmt: skip
