"""Declarative GPT disk layouts: validate, place, write and compare, without mounting anything.

Standard library only: this file is shipped to target hosts as Ansible module_utils
(``plugins/module_utils/maculaos_disk.py`` is a link to it) and used by the on-device CLI.

Partition and disk GUIDs are derived from a digest of the inputs (as systemd-repart derives
them from a seed), so the same inputs give byte-identical tables and a second run can tell
"already written" from the table alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MIB = 1024 * 1024
SECTOR = 512
ALIGN_SECTORS = MIB // SECTOR  # 1 MiB alignment, as every partitioning tool does today
GPT_BACKUP_SECTORS = 33  # backup header + 32 sectors of entries at the end of the disk
NAMESPACE = uuid.UUID("6d61636c-756c-616f-732d-6469736b0001")

TYPES: dict[str, str] = {
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "root-x86-64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "root-arm64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
}
FILESYSTEMS = ("vfat", "ext4", "raw", "none")


class LayoutError(ValueError):
    """A layout that cannot be written; the message names the offending key."""


@dataclasses.dataclass(frozen=True)
class PartitionSpec:
    name: str
    type: str
    size_mib: int | None  # None: take the rest of the disk
    filesystem: str = "none"  # vfat (from a directory), ext4 (empty or from a directory), raw
    source: str | None = None  # directory (vfat/ext4) or file (raw) to place
    label: str | None = None  # filesystem label
    min_mib: int = 1


@dataclasses.dataclass(frozen=True)
class Placed:
    spec: PartitionSpec
    start: int  # sectors
    size: int  # sectors
    uuid: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "type": TYPES.get(self.spec.type, self.spec.type).upper(),
            "start_sector": self.start,
            "size_sectors": self.size,
            "size_mib": self.size * SECTOR // MIB,
            "uuid": self.uuid,
            "filesystem": self.spec.filesystem,
            "label": self.spec.label,
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    disk_uuid: str
    disk_sectors: int
    partitions: tuple[Placed, ...]

    def table(self) -> dict[str, Any]:
        return {
            "label": "gpt",
            "disk_uuid": self.disk_uuid,
            "size_mib": self.disk_sectors * SECTOR // MIB,
            "partitions": [p.as_dict() for p in self.partitions],
        }


def parse_specs(raw: Iterable[Mapping[str, Any]]) -> list[PartitionSpec]:
    """Turn user input (module parameters, YAML) into specs, naming the bad key on error."""
    specs: list[PartitionSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"partitions[{i}]"
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > 36:
            raise LayoutError(f"{where}.name must be a GPT name of 1 to 36 characters")
        where = f"partitions[{i}] ({name})"
        if name in seen:
            raise LayoutError(f"{where}.name is used twice; partition names must be unique")
        seen.add(name)
        ptype = item.get("type", "linux")
        if ptype not in TYPES and not _is_guid(ptype):
            raise LayoutError(
                f"{where}.type {ptype!r} is not known: use one of {', '.join(TYPES)} or a GUID"
            )
        size = item.get("size_mib")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise LayoutError(
                f"{where}.size_mib must be a positive integer (MiB) or null for "
                f"'the rest of the disk', got {size!r}"
            )
        fs = item.get("filesystem", "none")
        if fs not in FILESYSTEMS:
            raise LayoutError(
                f"{where}.filesystem {fs!r} is not allowed: use one of {', '.join(FILESYSTEMS)}"
            )
        source = item.get("source")
        if fs == "raw" and not source:
            raise LayoutError(f"{where}.source is required for filesystem raw (a file to place)")
        if fs == "none" and source:
            raise LayoutError(f"{where}.source needs a filesystem (vfat, ext4 or raw)")
        min_mib = item.get("min_mib", 1)
        if not isinstance(min_mib, int) or min_mib <= 0:
            raise LayoutError(f"{where}.min_mib must be a positive integer (MiB)")
        specs.append(
            PartitionSpec(
                name=name,
                type=ptype,
                size_mib=size,
                filesystem=fs,
                source=source,
                label=item.get("label"),
                min_mib=min_mib,
            )
        )
    if not specs:
        raise LayoutError("partitions must list at least one partition")
    rest = [s.name for s in specs if s.size_mib is None]
    if len(rest) > 1:
        raise LayoutError(
            f"only one partition may take the rest of the disk (size_mib: null), "
            f"got {', '.join(rest)}"
        )
    return specs


def _is_guid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def required_mib(specs: Iterable[PartitionSpec]) -> int:
    """Smallest disk (MiB) the layout fits on: 1 MiB head, partitions, 1 MiB tail for GPT."""
    return 2 + sum(s.size_mib if s.size_mib is not None else s.min_mib for s in specs)


def plan(specs: list[PartitionSpec], disk_bytes: int, seed: str) -> Plan:
    """Place partitions on a disk of ``disk_bytes``; raise LayoutError when they do not fit."""
    need = required_mib(specs)
    have = disk_bytes // MIB
    if need > have:
        parts = " + ".join(
            f"{s.name} {s.size_mib if s.size_mib is not None else s.min_mib}" for s in specs
        )
        raise LayoutError(
            f"layout does not fit the disk: it needs {need} MiB (1 head + {parts} + 1 tail) but "
            f"the target holds {have} MiB; make the disk at least {need} MiB or shrink the "
            f"partitions"
        )
    total = disk_bytes // SECTOR
    last_usable = total - GPT_BACKUP_SECTORS - 1
    end_limit = ((last_usable + 1) // ALIGN_SECTORS) * ALIGN_SECTORS
    fixed = sum(s.size_mib or 0 for s in specs) * ALIGN_SECTORS
    placed: list[Placed] = []
    start = ALIGN_SECTORS
    for s in specs:
        if s.size_mib is None:
            size = end_limit - ALIGN_SECTORS - fixed
        else:
            size = s.size_mib * ALIGN_SECTORS
        placed.append(Placed(s, start, size, str(uuid.uuid5(NAMESPACE, f"{seed}:{s.name}"))))
        start += size
    return Plan(str(uuid.uuid5(NAMESPACE, f"{seed}:disk")), total, tuple(placed))


def sfdisk_script(p: Plan) -> str:
    lines = ["label: gpt", f"label-id: {p.disk_uuid}", "unit: sectors", "first-lba: 2048", ""]
    for part in p.partitions:
        ptype = TYPES.get(part.spec.type, part.spec.type)
        lines.append(
            f"start={part.start}, size={part.size}, type={ptype}, uuid={part.uuid}, "
            f'name="{part.spec.name}"'
        )
    return "\n".join(lines) + "\n"


def parse_sfdisk_json(text: str) -> dict[str, Any]:
    """Normalise ``sfdisk --json`` output to the shape of Plan.table() (without fs/label)."""
    data = json.loads(text)["partitiontable"]
    parts = []
    for p in data.get("partitions", []):
        parts.append(
            {
                "name": p.get("name", ""),
                "type": p["type"].upper(),
                "start_sector": p["start"],
                "size_sectors": p["size"],
                "uuid": p.get("uuid", "").lower(),
            }
        )
    return {
        "label": data.get("label"),
        "disk_uuid": data.get("id", "").lower(),
        "partitions": parts,
    }


def same_table(current: Mapping[str, Any] | None, wanted: Plan) -> bool:
    if not current or current.get("label") != "gpt":
        return False
    want = wanted.table()
    if current.get("disk_uuid") != want["disk_uuid"].lower():
        return False
    keys = ("name", "type", "start_sector", "size_sectors", "uuid")
    cur_parts = [{k: p[k] for k in keys} for p in current["partitions"]]
    want_parts = [
        {k: (p[k].lower() if k == "uuid" else p[k]) for k in keys} for p in want["partitions"]
    ]
    return cur_parts == want_parts


# --- inputs digest -------------------------------------------------------------------------


def _hash_file(h: Any, path: str) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)


def tree_digest(root: str) -> str:
    """sha256 over a directory's relative paths, modes and file contents (sorted walk)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            h.update(f"{rel}\0{os.lstat(path).st_mode:o}\0".encode())
            if os.path.isfile(path) and not os.path.islink(path):
                _hash_file(h, path)
            elif os.path.islink(path):
                h.update(os.readlink(path).encode())
    return h.hexdigest()


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    _hash_file(h, path)
    return h.hexdigest()


def inputs_seed(specs: list[PartitionSpec]) -> str:
    """Digest of everything that determines the written bytes."""
    h = hashlib.sha256()
    for s in specs:
        h.update(json.dumps(dataclasses.asdict(s), sort_keys=True).encode())
        if s.source and os.path.isdir(s.source):
            h.update(tree_digest(s.source).encode())
        elif s.source:
            h.update(file_digest(s.source).encode())
    return h.hexdigest()


def check_sources(specs: list[PartitionSpec], p: Plan) -> None:
    """Every source exists, has the right kind and fits its partition (before any write)."""
    for part in p.partitions:
        s = part.spec
        if not s.source:
            continue
        if s.filesystem == "raw":
            if not os.path.isfile(s.source):
                raise LayoutError(f"partition {s.name}: source {s.source} is not a file")
            size = os.path.getsize(s.source)
            if size > part.size * SECTOR:
                raise LayoutError(
                    f"partition {s.name}: source {s.source} is {-(-size // MIB)} MiB but the "
                    f"partition holds {part.size * SECTOR // MIB} MiB; raise its size_mib"
                )
        elif not os.path.isdir(s.source):
            raise LayoutError(
                f"partition {s.name}: source {s.source} must be a directory for "
                f"filesystem {s.filesystem}"
            )


# --- writing -------------------------------------------------------------------------------


def target_size(path: str) -> int | None:
    """Size in bytes of a block device or existing file; None when the file does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISBLK(st.st_mode):
        with open(path, "rb") as f:
            return f.seek(0, os.SEEK_END)
    return st.st_size


def is_block(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


Runner = Callable[[list[str]], str]


def default_runner(cmd: list[str]) -> str:
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def read_table(path: str, run: Runner = default_runner) -> dict[str, Any] | None:
    try:
        return parse_sfdisk_json(run(["sfdisk", "--json", path]))
    except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError):
        return None


FAT_EPOCH = 315_619_200  # 1980-01-02T00:00:00Z: the earliest time FAT holds, in any time zone


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH from the environment (reproducible-builds.org), if it is a time."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() and len(value) <= 12 else None


def _stamped_copy(source: str, dest: str) -> str:
    """``source`` as the FAT filesystem will hold it. FAT keeps a time for every entry, and the
    files of a build's ESP tree carry the time they were made: under SOURCE_DATE_EPOCH a copy
    with every time set to it, so two builds write the same bytes (docs/decisions/0012).
    Without it, ``source`` itself."""
    epoch = source_date_epoch()
    if epoch is None:
        return source
    epoch = max(epoch, FAT_EPOCH)  # FAT cannot hold a time before 1980
    shutil.copytree(source, dest, symlinks=False)
    for top, dirs, files in os.walk(dest):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (epoch, epoch), follow_symlinks=False)
    os.utime(dest, (epoch, epoch))
    return dest


def make_filesystem(part: Placed, out: str, seed: str, run: Runner = default_runner) -> None:
    """Create the partition's filesystem as a sparse file ``out`` of the partition's size."""
    s = part.spec
    size = part.size * SECTOR
    with open(out, "wb") as f:
        f.truncate(size)
    if s.filesystem == "vfat":
        volid = hashlib.sha256(f"{seed}:{s.name}".encode()).hexdigest()[:8]
        run(["mkfs.vfat", "-i", volid, "-n", (s.label or s.name)[:11].upper(), out])
        if s.source:
            tree = _stamped_copy(s.source, out + ".tree")
            try:
                entries = sorted(os.listdir(tree))
                if entries:
                    # -m: each entry keeps its (stamped) time instead of the time of the copy
                    run(["mcopy", "-s", "-m", "-i", out, *[os.path.join(tree, e) for e in entries],
                         "::/"])  # fmt: skip
            finally:
                if tree != s.source:
                    shutil.rmtree(tree, ignore_errors=True)
    elif s.filesystem == "ext4":
        cmd = [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            (s.label or s.name)[:16],
            "-U",
            str(uuid.uuid5(NAMESPACE, f"{seed}:{s.name}:fs")),
            "-E",
            f"hash_seed={uuid.uuid5(NAMESPACE, f'{seed}:{s.name}:hash')}",
        ]
        if s.source:
            cmd += ["-d", s.source]
        run([*cmd, out])


def copy_into(src: str, dst_fd: int, offset: int, compare: bool) -> None:
    """Copy ``src`` to ``dst_fd`` at ``offset``; zero chunks are skipped (sparse) unless the
    target already holds non-zero data there (compare=True, for block devices)."""
    zero = bytes(MIB)
    with open(src, "rb") as f:
        pos = offset
        while chunk := f.read(MIB):
            if chunk == zero[: len(chunk)]:
                if compare and os.pread(dst_fd, len(chunk), pos) != zero[: len(chunk)]:
                    os.pwrite(dst_fd, chunk, pos)
            elif not compare or os.pread(dst_fd, len(chunk), pos) != chunk:
                os.pwrite(dst_fd, chunk, pos)
            pos += len(chunk)


def write(
    p: Plan, target: str, seed: str, run: Runner = default_runner, size_bytes: int | None = None
) -> None:
    """Write the partition table and every partition's content to ``target``."""
    block = is_block(target)
    if not block:
        assert size_bytes is not None
        with open(target, "wb") as f:
            f.truncate(size_bytes)
    with tempfile.NamedTemporaryFile("w", suffix=".sfdisk", delete=False) as script:
        script.write(sfdisk_script(p))
    try:
        run(
            [
                "sh",
                "-c",
                f"sfdisk -q --no-reread --no-tell-kernel --wipe always "
                f"'{target}' < '{script.name}'",
            ]
        )
    finally:
        os.unlink(script.name)
    fd = os.open(target, os.O_RDWR)
    try:
        with tempfile.TemporaryDirectory(prefix="maculaos-disk-") as tmp:
            for part in p.partitions:
                s = part.spec
                if s.filesystem == "none":
                    continue
                if s.filesystem == "raw":
                    assert s.source is not None
                    src = s.source
                else:
                    src = os.path.join(tmp, s.name + ".fs")
                    make_filesystem(part, src, seed, run)
                copy_into(src, fd, part.start * SECTOR, compare=block)
                if s.filesystem != "raw":
                    os.unlink(src)
        os.fsync(fd)
    finally:
        os.close(fd)
