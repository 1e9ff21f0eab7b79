"""`maculaos-build compare A B`: are two builds of one commit bit-identical where they must be.

Two builds from the same commit and the same package set must give the same slot squashfs
byte for byte, the same disk images, the same SBOM and the same ``manifest.json`` apart from
when the build ran and how long it took (docs/decisions/0012).

When the slots differ, the report names what differs inside them (listing and file contents),
which is the part a person chasing a source of non-determinism needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from maculaos.log import die
from maculaos_build.finalize import copy_slot, listed_path, sha256, slot_a

# what may differ between two builds of one commit: when each ran and how long it took
VOLATILE = ("build_time", "build_seconds")
# the disk images: the same bytes (sha256, size) are required; how many blocks the build
# host's filesystem allocated to the sparse .img is the host's, not the build's
ARTIFACTS = "artifacts"
MAX_MANIFEST = 4 << 20  # a manifest is about 10 KiB; a bigger file is not one
MAX_LISTED = 40  # differing paths printed before "... and N more"


@dataclass
class Report:
    same: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differ


SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _bad(path: Path, what: str) -> NoReturn:
    die(f"{path} is not a MaculaOS build manifest: {what}",
        hint="pass two builds' output directories, e.g. output/0.1.0-amd64")  # fmt: skip


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _manifest(directory: Path) -> dict[str, Any]:
    """``directory``'s manifest.json, with the entries compare relies on checked."""
    path = directory / "manifest.json"
    if not path.is_file():
        die(f"{directory} has no manifest.json", hint="pass a build's output directory, "
            "e.g. output/0.1.0-amd64")  # fmt: skip
    try:
        if path.stat().st_size > MAX_MANIFEST:
            _bad(path, f"{path.stat().st_size} bytes (a manifest is a few KiB)")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}", hint="run it as the user that built it, or root")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        _bad(path, f"not JSON ({str(e)[:200]})")
    if not isinstance(data, dict):
        _bad(path, "not a JSON object")
    fs = data.get("squashfs")
    if not isinstance(fs, dict) or not SHA256.match(str(fs.get("sha256"))):
        _bad(path, "no squashfs.sha256 (64 hex digits)")
    if not _count(fs.get("size")):
        _bad(path, "squashfs.size is not a byte count")
    table = data.get("partition_table")
    parts = table.get("partitions") if isinstance(table, dict) else None
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        _bad(path, "no partition_table.partitions list")
    part = slot_a(data, str(path))
    if not (_count(part.get("start_sector")) and _count(part.get("size_sectors"))):
        _bad(path, f"{part.get('name')}: start_sector and size_sectors must be sector counts")
    if fs["size"] > part["size_sectors"] * 512:
        _bad(path, f"squashfs.size {fs['size']} is larger than its partition")
    arts = data.get(ARTIFACTS, {})
    if not isinstance(arts, dict) or not all(isinstance(v, dict) for v in arts.values()):
        _bad(path, "artifacts is not an object of objects")
    return data


def _image(directory: Path, manifest: dict[str, Any]) -> Path:
    names = [n for n in manifest.get(ARTIFACTS, {}) if n.endswith(".img") and "/" not in n]
    found: list[Path] = [directory / str(n) for n in names if (directory / str(n)).is_file()]
    if len(found) != 1:
        die(
            f"{directory} has no raw disk image its manifest names (the .img)",
            hint="compare needs the .img of both builds: it reads the slots out of them",
        )
    return found[0]


def _sbom(directory: Path, manifest: dict[str, Any]) -> Path | None:
    entry = manifest.get("sbom")
    name = entry.get("file") if isinstance(entry, dict) else None
    if isinstance(name, str) and "/" not in name and (directory / name).is_file():
        return directory / name
    return None


def compare(a: Path, b: Path, *, look_inside: bool = True) -> Report:
    """Compare the build in output directory ``a`` with the one in ``b``. Every verdict is
    about bytes read here: each slot is read out of its own disk image and checked against its
    manifest's sha256 and its own superblock, each image is hashed; what two manifests claim
    decides nothing by itself."""
    try:
        return _compare(a, b, look_inside)
    except OSError as e:
        die(f"cannot read {e.filename or 'a build file'}: {e.strerror}",
            hint="run it as the user that built both (or root), with room in /var/tmp")  # fmt: skip


def _compare(a: Path, b: Path, look_inside: bool) -> Report:
    if a.resolve() == b.resolve():
        die(f"{a} and {b} are the same directory",
            hint="build the commit a second time: scripts/reproducible.sh")  # fmt: skip
    if not shutil.which("unsquashfs"):
        die("unsquashfs not found", hint="install squashfs-tools (scripts/setup-host.sh)")
    ma, mb = _manifest(a), _manifest(b)
    img_a, img_b = _image(a, ma), _image(b, mb)
    if img_a.samefile(img_b):
        die(f"{img_a} and {img_b} are the same file",
            hint="build the commit a second time: scripts/reproducible.sh")  # fmt: skip
    for img, m in ((img_a, ma), (img_b, mb)):
        part = slot_a(m, "manifest.json")
        if (part["start_sector"] + part["size_sectors"]) * 512 > img.stat().st_size:
            die(f"{img} is shorter than the slot A partition its manifest.json places in it")
    r = Report()
    keys = sorted((set(ma) | set(mb)) - set(VOLATILE) - {ARTIFACTS})
    differing = [k for k in keys if ma.get(k) != mb.get(k)]
    if differing:
        r.differ.append(f"manifest.json differs in: {', '.join(differing)}")
    else:
        r.same.append(f"manifest.json (all {len(keys)} entries but {', '.join(VOLATILE)})")
    scratch = Path("/var/tmp") if Path("/var/tmp").is_dir() else None  # a slot unpacks to GBs
    with tempfile.TemporaryDirectory(dir=scratch, prefix="maculaos-compare-") as tmp:
        raws = []
        for tag, img, m, d in (("a", img_a, ma, a), ("b", img_b, mb, b)):
            raw = copy_slot(img, slot_a(m, "manifest.json"), m["squashfs"], Path(tmp) / tag,
                            f"{d}/manifest.json records")  # fmt: skip
            _whole_squashfs(raw, d)
            raws.append(raw)
        sa, sb = ma["squashfs"]["sha256"], mb["squashfs"]["sha256"]
        if sa == sb:
            r.same.append(f"slot squashfs sha256 {sa} ({ma['squashfs']['size']} bytes)")
        else:
            r.differ.append(f"slot squashfs: {sa} != {sb}")
            if look_inside:
                r.differ.extend(_inside_slots(raws, Path(tmp)))
    sbom_a, sbom_b = _sbom(a, ma), _sbom(b, mb)
    if sbom_a and sbom_b:
        if sha256(sbom_a) == sha256(sbom_b):
            r.same.append(f"SBOM {sbom_a.name}")
        else:
            r.differ.append(f"SBOM {sbom_a.name} differs")
    else:
        r.differ.append("SBOM missing from one of the builds (manifest.json names none)")
    arts_a, arts_b = ma.get(ARTIFACTS, {}), mb.get(ARTIFACTS, {})
    for name in sorted(set(arts_a) | set(arts_b)):
        found = [_artifact(d, arts.get(name), name) for d, arts in ((a, arts_a), (b, arts_b))]
        if all(isinstance(f, str) for f in found) and found[0] == found[1]:
            r.same.append(f"{name} (sha256 {found[0]})")
        else:
            r.differ.append(f"{name}: " + " / ".join(str(f) for f in found))
    return r


def _artifact(directory: Path, recorded: dict[str, Any] | None, name: str) -> str | None:
    """The sha256 of artifact ``name`` as read from ``directory`` when it is what the manifest
    records (digest and size); otherwise why not (None: not in this build)."""
    if recorded is None:
        return None
    path = directory / name
    if "/" in name or not path.is_file():
        return f"(missing in {directory})"
    digest = sha256(path)
    if digest != recorded.get("sha256") or path.stat().st_size != recorded.get("size"):
        return f"(not what {directory}/manifest.json records)"
    return digest


def _whole_squashfs(raw: Path, directory: Path) -> None:
    """The manifest's size must cover the whole filesystem the superblock describes (a size
    that covers only a prefix would compare only that prefix)."""
    with raw.open("rb") as f:
        head = f.read(48)
    used = int.from_bytes(head[40:48], "little") if len(head) == 48 else -1
    size = raw.stat().st_size
    if head[:4] != b"hsqs" or not (0 < used <= size < used + 4096):
        die(f"{directory}/manifest.json: squashfs.size {size} is not the size of the slot's "
            "squashfs (its superblock says otherwise)")  # fmt: skip


def _inside_slots(raws: list[Path], tmp: Path) -> list[str]:
    """What differs between the two slots: paths listed by one and not the other, metadata,
    then file contents."""
    trees, listings = [], []
    for raw in raws:
        listing = subprocess.run(
            ["unsquashfs", "-lln", "-d", "", str(raw)], capture_output=True, text=True, check=False
        )
        tree = tmp / f"{raw.name}-root"
        unpacked = subprocess.run(
            ["unsquashfs", "-q", "-n", "-d", str(tree), str(raw)], capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        if listing.returncode != 0 or unpacked.returncode != 0:
            die(f"unsquashfs cannot read a slot: {(unpacked.stderr or listing.stderr)[-500:]}")
        listings.append(_by_path(listing.stdout))
        trees.append(tree)
    out: list[str] = []
    la, lb = listings
    only_a = sorted(set(la) - set(lb))
    only_b = sorted(set(lb) - set(la))
    changed_meta = sorted(p for p in set(la) & set(lb) if la[p] != lb[p])
    changed_data = sorted(
        p
        for p in set(la) & set(lb)
        if la[p].startswith("-") and _content_differs(trees[0], trees[1], p)
    )
    for title, paths in (
        ("only in the first", only_a),
        ("only in the second", only_b),
        ("owner, mode, size or link differs", changed_meta),
        ("contents differ", changed_data),
    ):
        if paths:
            shown = ", ".join(p.removeprefix("/") for p in paths[:MAX_LISTED])
            more = f" ... and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
            out.append(f"  {title} ({len(paths)}): {shown}{more}")
    return out or ["  the slots list and hold the same files: they differ in layout only"]


def _by_path(listing: str) -> dict[str, str]:
    """``unsquashfs -lln`` lines by the path they list (a symlink's target left out)."""
    out: dict[str, str] = {}
    for line in listing.splitlines():
        path = listed_path(line)
        if path:
            out[path] = line
    return out


def _content_differs(root_a: Path, root_b: Path, listed: str) -> bool:
    rel = listed.lstrip("/")
    fa, fb = root_a / rel, root_b / rel
    if fa.is_symlink() or fb.is_symlink() or not (fa.is_file() and fb.is_file()):
        return False
    if fa.stat().st_size != fb.stat().st_size:
        return True
    return sha256(fa) != sha256(fb)


def print_report(r: Report, a: Path, b: Path) -> None:
    print(f"comparing {a} with {b}")
    for line in r.same:
        print(f"  same:   {line}")
    for line in r.differ:
        print(f"  DIFFER: {line}" if not line.startswith("  ") else f"        {line}")
    print("reproducible: yes" if r.identical else "reproducible: NO")
