"""Turn Packer's output into the release artifacts: .img, .qcow2, SHA256SUMS, manifest.json."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maculaos import layout, squashfs
from maculaos.arch import Architecture
from maculaos.disk import file_digest
from maculaos.log import die, step

# unsquashfs -lln: mode, owner, size; the size is right-aligned, so its padding goes with it
DIR_SIZE = re.compile(r"^(d\S+ \S+)\s+\d+")
# unsquashfs -lln: mode owner/group size-or-device date time path[ -> target]
LISTED = re.compile(r"^\S+ \S+\s+\d+(?:,\s*\d+)? \d{4}-\d\d-\d\d \d\d:\d\d (/.*)$")
# the release compressors' options (the guest's "none" is compressed again with one of these)
COMPRESSOR_OPTS: dict[str, tuple[str, ...]] = {"gzip": ("-Xcompression-level", "6"), "xz": ()}


def sha256(path: Path) -> str:
    return file_digest(str(path))


def artifact_name(version: str, arch: Architecture, ext: str) -> str:
    return f"macula-os-{version}-{arch.value}.{ext}"


def finalize(
    packer_dir: Path,
    output: Path,
    version: str,
    arch: Architecture,
    build_seconds: float | None = None,
    compression: str | None = None,
    add: Callable[[Path, dict[str, Any]], list[str]] | None = None,
) -> Path:
    disk = packer_dir / "build-vm-1"
    info_file = packer_dir / "build-info.json"
    if not disk.exists() or not info_file.exists():
        die(
            f"Packer output incomplete in {packer_dir} (need build-vm-1 and build-info.json)",
            hint="look at the packer log above and at the serial log next to that directory",
        )
    build_info = json.loads(info_file.read_text())
    if add and not (compression and build_info["squashfs"]["compression"] != compression):
        die(
            f"the build VM packed the slot with {build_info['squashfs']['compression']}: there "
            "is no repacking on this host to add the SBOM to",
            hint="the wrapper has the VM pack it uncompressed (squashfs_compression none)",
        )
    out = output / f"{version}-{arch.value}"
    out.mkdir(parents=True, exist_ok=True)
    img = out / artifact_name(version, arch, "img")
    qcow = out / artifact_name(version, arch, "qcow2")
    with step(f"raw image {img.name}"):
        subprocess.run(
            ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(disk), str(img)], check=True
        )
    if compression and build_info["squashfs"]["compression"] != compression:
        with step(f"slot squashfs compressed with {compression} on this host"):
            build_info["squashfs"] = recompress_slot(
                img, build_info, compression, packer_dir, add=add
            )
    with step(f"compressed qcow2 {qcow.name}"):
        subprocess.run(
            [
                "qemu-img",
                "convert",
                "-c",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                "compression_type=zstd",
                str(img),
                str(qcow),
            ],
            check=True,
        )
    sums = {p.name: sha256(p) for p in (img, qcow)}
    (out / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    manifest = {
        **build_info,
        "build_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(build_seconds, 1) if build_seconds is not None else None,
        "artifacts": {
            p.name: {
                "sha256": sums[p.name],
                "size": p.stat().st_size,
                "allocated": p.stat().st_blocks * 512,
            }
            for p in (img, qcow)
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def recompress_slot(
    img: Path,
    build_info: dict[str, Any],
    compression: str,
    workdir: Path | None = None,
    add: Callable[[Path, dict[str, Any]], list[str]] | None = None,
) -> dict[str, Any]:
    """Pack slot A's tree again with ``compression``, natively on this host, in place in
    ``img``; the new ``squashfs`` entry of build-info. The build VM packs the slot uncompressed:
    under TCG mksquashfs spends a minute compressing, xz four times that (docs/decisions/0011).
    Same tree, block size, timestamps and sorted entries: the same bytes every time. ``add``
    may put files into the unpacked tree first (the SBOM, made from that tree) and returns
    their paths; the packed slot must list exactly what the VM's did plus those (owners, modes,
    links, times) before it is written."""
    if compression not in COMPRESSOR_OPTS:
        die(f"slot compression {compression!r} is not one of {', '.join(COMPRESSOR_OPTS)}")
    if os.geteuid() != 0:  # as anyone else unsquashfs drops owners, setuid bits, capabilities
        die(
            "compressing the slot needs root: unsquashfs restores owners, setuid bits and file "
            "capabilities only as root",
            hint="run scripts/build.sh as root",
        )
    part = slot_a(build_info, "build-info")
    offset, capacity = part["start_sector"] * 512, part["size_sectors"] * 512
    old = build_info["squashfs"]
    size = int(old["size"])
    with tempfile.TemporaryDirectory(dir=workdir or img.parent, prefix=".repack-") as tmp:
        raw, tree, packed = Path(tmp) / "slot", Path(tmp) / "root", Path(tmp) / "packed"
        copy_slot(img, part, old, raw, "the build VM recorded")
        with raw.open("rb") as f:  # the superblock's block size (offset 12, little-endian)
            block_size = int.from_bytes(f.read(16)[12:16], "little")
        _run(["unsquashfs", "-no-progress", "-d", str(tree), str(raw)], "unsquashfs")
        added = add(tree, build_info) if add else []
        spec = squashfs.SquashfsSpec(
            source=str(tree),
            dest=str(packed),
            compression=compression,
            compression_opts=COMPRESSOR_OPTS[compression],
            block_size=str(block_size),
            source_date_epoch=int(build_info["source_date_epoch"]),
        )
        squashfs.validate(spec)
        _run(squashfs.command(spec, str(packed)), "mksquashfs")
        if _contents(packed, without=added) != _contents(raw):
            die("the compressed slot does not list what the build VM packed (owners, modes, "
                "links or times differ)")  # fmt: skip
        new = packed.stat().st_size
        if new > capacity:
            die(f"the {compression} slot squashfs ({new} bytes) does not fit slot A ({capacity})")
        digest = file_digest(str(packed))
        with packed.open("rb") as src, img.open("r+b") as dst:
            dst.seek(offset)
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        if new < size:  # what the uncompressed slot left behind: a hole, as if never written
            _clear(img, offset + new, size - new)
    return {"compression": compression, "size": new, "sha256": digest}


def slot_a(info: dict[str, Any], source: str) -> dict[str, Any]:
    """Slot A's entry in the partition table of ``info`` (build-info or manifest.json)."""
    part: dict[str, Any] | None = next(
        (p for p in info["partition_table"]["partitions"] if p.get("name") == layout.SLOT_A.name),
        None,
    )
    if part is None:
        die(f"{source} names no {layout.SLOT_A.name} partition: not a MaculaOS A/B image")
    return part


def copy_slot(
    img: Path, part: dict[str, Any], recorded: dict[str, Any], dest: Path, by: str
) -> Path:
    """Copy slot A's squashfs (``recorded``: its size and sha256) out of ``img`` to ``dest``,
    verified against that sha256 (``by`` says who recorded it)."""
    with img.open("rb") as src, dest.open("wb") as out:
        src.seek(part["start_sector"] * 512)
        left = int(recorded["size"])
        while left:
            chunk = src.read(min(left, 1 << 22))
            if not chunk:
                die(f"{img.name} ends inside slot A's squashfs")
            out.write(chunk)
            left -= len(chunk)
    if file_digest(str(dest)) != recorded["sha256"]:
        die(f"{img.name}: slot A does not match the squashfs sha256 {by}")
    return dest


def listed_path(line: str) -> str | None:
    """The path an ``unsquashfs -lln -d ""`` line lists (a symlink's target left out)."""
    m = LISTED.match(line)
    return m.group(1).split(" -> ")[0] if m else None


def mask_dir_size(line: str) -> str:
    """An ``unsquashfs -lln`` line with a directory's size (and its right-aligned padding)
    replaced by "-": the size of a directory's on-disk listing, which squashfs-tools versions
    lay out differently. Any other entry's line is returned as it is."""
    return DIR_SIZE.sub(r"\1 -", line)


def _contents(image: Path, without: list[str] | None = None) -> tuple[str, int]:
    """What a squashfs holds, as unsquashfs lists it (path, type, mode, owner, size, time, link
    target) and its inode count (hard links share one). A directory's size is left out: it is
    the size of its on-disk listing, which squashfs-tools versions lay out differently.
    ``without``: paths (relative, regular files) that must each be listed exactly once, as a
    regular file; they are left out of the listing and the count."""
    said = subprocess.run(
        ["unsquashfs", "-lln", "-d", "", str(image)], capture_output=True, text=True, check=False
    ).stdout
    skip = {f"/{p}" for p in without or []}
    lines: list[str] = []
    seen: list[str] = []
    for ln in said.splitlines():
        path = listed_path(ln)
        if path in skip and path and ln.startswith("-"):
            seen.append(path)
        else:
            lines.append(ln)
    if sorted(seen) != sorted(skip):
        return "(added files missing or listed twice)", -1
    listing = "\n".join(mask_dir_size(ln) for ln in lines)
    stats = subprocess.run(
        ["unsquashfs", "-s", str(image)], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"^Number of inodes (\d+)", stats, re.M)
    inodes = int(found.group(1)) if found else -1
    return listing, inodes - len(seen)


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        die(f"{what} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")


def _clear(img: Path, start: int, length: int) -> None:
    """Zeros over [start, start+length): a hole where the filesystem can punch one."""
    punched = subprocess.run(
        ["fallocate", "--punch-hole", "--offset", str(start), "--length", str(length), str(img)],
        capture_output=True,
        check=False,
    )
    if punched.returncode == 0:
        return
    zeros = bytes(1 << 22)
    with img.open("r+b") as f:
        f.seek(start)
        while length:
            f.write(zeros[: min(length, len(zeros))])
            length -= min(length, len(zeros))
