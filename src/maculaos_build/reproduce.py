"""`maculaos-build compare A B`: are two builds of one commit bit-identical where they must be.

Two builds from the same commit and the same package set must give the same slot squashfs
byte for byte, the same SBOM and the same ``manifest.json`` apart from when the build ran and
how long it took (docs/decisions/0012). The disk image around the slot is compared too and
reported, but it is not the release's identity: the bundle carries the slot alone.

When the slots differ, the report names what differs inside them (listing and file contents),
which is the part a person chasing a source of non-determinism needs.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maculaos.log import die
from maculaos_build.finalize import copy_slot, slot_a

# what may differ between two builds of one commit: when each ran and how long it took
VOLATILE = ("build_time", "build_seconds")
# the manifest's entry for the artifacts themselves: the disk image holds the state partition,
# made anew by each build, so its digest is reported, not required
ARTIFACTS = "artifacts"
MAX_MANIFEST = 4 << 20  # a manifest is about 10 KiB; a bigger file is not one
MAX_LISTED = 40  # differing paths printed before "... and N more"
# unsquashfs -lln: mode owner/group size-or-device date time path[ -> target]
LISTED = re.compile(r"^\S+ \S+\s+\d+(?:,\s*\d+)? \d{4}-\d\d-\d\d \d\d:\d\d (/.*)$")


@dataclass
class Report:
    same: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differ


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    if not path.is_file():
        die(f"{directory} has no manifest.json", hint="pass a build's output directory, "
            "e.g. output/0.1.0-amd64")  # fmt: skip
    if path.stat().st_size > MAX_MANIFEST:
        die(f"{path} is {path.stat().st_size} bytes: not a build manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        die(f"{path} is not JSON: {e}")
    if not isinstance(data, dict) or not isinstance(data.get("squashfs"), dict):
        die(f"{path} is not a MaculaOS build manifest (no squashfs entry)")
    return data


def _artifact(directory: Path, manifest: dict[str, Any], ext: str) -> Path | None:
    for name in manifest.get(ARTIFACTS) or {}:
        if isinstance(name, str) and name.endswith(f".{ext}") and "/" not in name:
            return directory / name
    found = sorted(directory.glob(f"*.{ext}"))
    return found[0] if len(found) == 1 else None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def compare(a: Path, b: Path, *, look_inside: bool = True) -> Report:
    """Compare the build in output directory ``a`` with the one in ``b``."""
    ma, mb = _manifest(a), _manifest(b)
    r = Report()
    keys = sorted((set(ma) | set(mb)) - set(VOLATILE) - {ARTIFACTS})
    differing = [k for k in keys if ma.get(k) != mb.get(k)]
    if differing:
        r.differ.append(f"manifest.json differs in: {', '.join(differing)}")
    else:
        r.same.append(f"manifest.json (all {len(keys)} entries but {', '.join(VOLATILE)})")
    sa, sb = ma["squashfs"].get("sha256"), mb["squashfs"].get("sha256")
    if sa and sa == sb:
        r.same.append(f"slot squashfs sha256 {sa} ({ma['squashfs'].get('size')} bytes)")
    else:
        r.differ.append(f"slot squashfs: {sa} != {sb}")
        if look_inside:
            r.differ.extend(_inside_slots(a, ma, b, mb))
    sbom_a, sbom_b = _artifact(a, ma, "cdx.json"), _artifact(b, mb, "cdx.json")
    if sbom_a and sbom_b and sbom_a.is_file() and sbom_b.is_file():
        if _file_sha256(sbom_a) == _file_sha256(sbom_b):
            r.same.append(f"SBOM {sbom_a.name}")
        else:
            r.differ.append(f"SBOM {sbom_a.name} differs")
    else:
        r.differ.append("SBOM missing from one of the builds")
    arts_a, arts_b = ma.get(ARTIFACTS) or {}, mb.get(ARTIFACTS) or {}
    for name in sorted(set(arts_a) | set(arts_b)):
        da = (arts_a.get(name) or {}).get("sha256")
        db = (arts_b.get(name) or {}).get("sha256")
        r.notes.append(f"{name}: {'identical' if da and da == db else 'differs'}")
    return r


def _inside_slots(a: Path, ma: dict[str, Any], b: Path, mb: dict[str, Any]) -> list[str]:
    """What differs between the two slots: paths listed by one and not the other, metadata,
    then file contents."""
    img_a, img_b = _artifact(a, ma, "img"), _artifact(b, mb, "img")
    if not (img_a and img_b and img_a.is_file() and img_b.is_file()):
        return ["(no raw .img in both builds to look inside the slots)"]
    with tempfile.TemporaryDirectory(prefix="maculaos-compare-") as tmp:
        trees, listings = [], []
        for tag, img, m in (("a", img_a, ma), ("b", img_b, mb)):
            raw = copy_slot(img, slot_a(m, "manifest.json"), m["squashfs"], Path(tmp) / tag,
                            "its manifest records")  # fmt: skip
            listing = subprocess.run(
                ["unsquashfs", "-lln", "-d", "", str(raw)],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            listings.append(_by_path(listing))
            tree = Path(tmp) / f"{tag}-root"
            subprocess.run(
                ["unsquashfs", "-q", "-n", "-d", str(tree), str(raw)],
                capture_output=True, check=False,
            )  # fmt: skip
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
        m = LISTED.match(line)
        if m:
            out[m.group(1).split(" -> ")[0]] = line
    return out


def _content_differs(root_a: Path, root_b: Path, listed: str) -> bool:
    rel = listed.lstrip("/")
    fa, fb = root_a / rel, root_b / rel
    if fa.is_symlink() or fb.is_symlink() or not (fa.is_file() and fb.is_file()):
        return False
    if fa.stat().st_size != fb.stat().st_size:
        return True
    return _file_sha256(fa) != _file_sha256(fb)


def print_report(r: Report, a: Path, b: Path) -> None:
    print(f"comparing {a} with {b}")
    for line in r.same:
        print(f"  same:   {line}")
    for line in r.differ:
        print(f"  DIFFER: {line}" if not line.startswith("  ") else f"        {line}")
    for line in r.notes:
        print(f"  image:  {line}")
    print("reproducible: yes" if r.identical else "reproducible: NO")
