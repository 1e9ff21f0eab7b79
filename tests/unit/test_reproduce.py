"""Issue 10, goal 6: `maculaos-build compare` says whether two builds are bit-identical where
they must be, and when they are not, names the files inside the slot that differ."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from maculaos import squashfs
from maculaos.disk import file_digest
from maculaos.log import MaculaError
from maculaos_build import __main__ as cli
from maculaos_build import reproduce

START, SECTORS = 2048, 4096


def _build(
    out: Path, files: dict[str, str], when: str = "2026-11-27T10:00:00+00:00", **extra: Any
) -> Path:
    """An output directory as a build leaves it: manifest, SBOM and a raw image whose slot A
    holds a real squashfs of ``files``."""
    tree = out / "tree"
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    slot = out / "slot.squashfs"
    spec = squashfs.SquashfsSpec(str(tree), str(slot), compression="gzip", source_date_epoch=9)
    subprocess.run(squashfs.command(spec, str(slot)), check=True, capture_output=True)
    img = out / "macula-os-1.0.0-amd64.img"
    with img.open("wb") as f:
        f.truncate((START + SECTORS + 64) * 512)
        f.seek(START * 512)
        f.write(slot.read_bytes())
    (out / "macula-os-1.0.0-amd64.cdx.json").write_text(json.dumps(sorted(files)) + "\n")
    manifest: dict[str, Any] = {
        "version": "1.0.0",
        "arch": "amd64",
        "git_commit": "abc",
        "source_date_epoch": 9,
        "build_time": when,
        "build_seconds": 321.5,
        "squashfs": {"compression": "gzip", "size": slot.stat().st_size,
                     "sha256": file_digest(str(slot))},
        "partition_table": {"partitions": [
            {"name": "rootfs-a", "start_sector": START, "size_sectors": SECTORS}]},
        "artifacts": {img.name: {"sha256": file_digest(str(img)), "size": img.stat().st_size}},
        "sbom": {"file": "macula-os-1.0.0-amd64.cdx.json"},
        **extra,
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(tree)
    slot.unlink()
    return out


FILES = {"etc/os-release": "NAME=MaculaOS\n", "usr/bin/tool": "#!/bin/sh\n", "usr/lib/x": "1\n"}


@pytest.mark.skipif(not shutil.which("mksquashfs"), reason="no squashfs-tools")
def test_two_builds_of_the_same_tree_are_identical_whenever_they_ran(tmp_path: Path) -> None:
    a = _build(tmp_path / "a", FILES)
    b = _build(tmp_path / "b", FILES, when="2026-11-28T23:59:59+00:00")
    r = reproduce.compare(a, b)
    assert r.identical, r.differ
    assert any("slot squashfs sha256" in s for s in r.same)
    assert cli.main(["compare", str(a), str(b)]) == 0


@pytest.mark.skipif(not shutil.which("mksquashfs"), reason="no squashfs-tools")
def test_a_file_that_differs_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _build(tmp_path / "a", FILES)
    b = _build(tmp_path / "b", {**FILES, "usr/lib/x": "2\n", "var/new": "n\n"})
    r = reproduce.compare(a, b)
    assert not r.identical
    said = "\n".join(r.differ)
    assert "manifest.json differs in: squashfs" in said
    assert "contents differ (1): usr/lib/x" in said
    assert "only in the second (2): var, var/new" in said
    assert "SBOM macula-os-1.0.0-amd64.cdx.json differs" in said
    assert cli.main(["compare", str(a), str(b)]) == 1
    assert "reproducible: NO" in capsys.readouterr().out


needs_squashfs = pytest.mark.skipif(not shutil.which("mksquashfs"), reason="no squashfs-tools")


@needs_squashfs
def test_a_manifest_field_other_than_the_time_differs(tmp_path: Path) -> None:
    a = _build(tmp_path / "a", FILES, git_commit="abc")
    b = _build(tmp_path / "b", FILES, git_commit="abd", build_seconds=1.0)
    r = reproduce.compare(a, b)
    assert r.differ == ["manifest.json differs in: git_commit"]


@needs_squashfs
def test_the_verdict_is_about_the_images_not_what_manifests_claim(tmp_path: Path) -> None:
    """Two copies of one manifest are not two identical builds: each slot is read out of its
    image and checked against its manifest first."""
    a = _build(tmp_path / "a", FILES)
    b = tmp_path / "b"
    b.mkdir()
    for f in ("manifest.json", "macula-os-1.0.0-amd64.cdx.json"):
        shutil.copy(a / f, b / f)
    with pytest.raises(MaculaError, match="has no raw disk image"):
        reproduce.compare(a, b)
    other = _build(tmp_path / "other", {**FILES, "usr/lib/x": "2\n"})
    shutil.copy(other / "macula-os-1.0.0-amd64.img", b / "macula-os-1.0.0-amd64.img")
    with pytest.raises(MaculaError, match="does not match the squashfs sha256"):
        reproduce.compare(a, b)
    with pytest.raises(MaculaError, match="are the same directory"):
        reproduce.compare(a, tmp_path / "a" / ".." / "a")


def _with(tmp: Path, change: dict[str, Any] | None = None, raw: str | None = None) -> Path:
    d = tmp / "bad"
    d.mkdir()
    if raw is not None:
        (d / "manifest.json").write_bytes(raw.encode("latin-1"))
        return d
    base: dict[str, Any] = {
        "squashfs": {"sha256": "ab" * 32, "size": 10},
        "partition_table": {"partitions": [{"name": "rootfs-a", "start_sector": 8,
                                            "size_sectors": 8}]},
    }  # fmt: skip
    (d / "manifest.json").write_text(json.dumps({**base, **(change or {})}))
    return d


PART = "partition_table"


@pytest.mark.parametrize(
    ("change", "raw", "match"),
    [
        (None, "not json", "not JSON"),
        (None, "[1, 2]", "not a JSON object"),
        (None, "\xff\xfe", "not JSON"),
        (None, "[" * 100000 + "]" * 100000, "not JSON"),
        ({"squashfs": "x"}, None, "no squashfs.sha256"),
        ({"squashfs": {"sha256": "AB" * 32, "size": 1}}, None, "no squashfs.sha256"),
        ({"squashfs": {"sha256": "ab" * 32, "size": -1}}, None, "squashfs.size is not"),
        ({"squashfs": {"sha256": "ab" * 32, "size": True}}, None, "squashfs.size is not"),
        ({"squashfs": {"sha256": "ab" * 32, "size": 1 << 40}}, None, "larger than its partition"),
        ({PART: None}, None, "no partition_table.partitions"),
        ({PART: {"partitions": [1]}}, None, "no partition_table.partitions"),
        ({PART: {"partitions": [{"name": "esp"}]}}, None, "names no rootfs-a"),
        (
            {PART: {"partitions": [{"name": "rootfs-a", "start_sector": "8", "size_sectors": 8}]}},
            None,
            "must be sector counts",
        ),
        ({"artifacts": ["x.img"]}, None, "artifacts is not an object"),
        ({"artifacts": {"x.img": "sha"}}, None, "artifacts is not an object"),
    ],
)
def test_what_is_not_a_build_is_named(
    tmp_path: Path, change: dict[str, Any] | None, raw: str | None, match: str
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    bad = _with(tmp_path, change, raw)
    with pytest.raises(MaculaError, match=match):
        reproduce.compare(bad, good)


def test_a_directory_without_a_manifest_or_a_huge_one(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(MaculaError, match=r"has no manifest\.json"):
        reproduce.compare(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a" / "manifest.json").write_bytes(b" " * (reproduce.MAX_MANIFEST + 1))
    with pytest.raises(MaculaError, match="a manifest is a few KiB"):
        reproduce.compare(tmp_path / "a", tmp_path / "b")


def test_the_cli_names_the_error_and_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "has no manifest.json" in err and "hint: pass a build's output directory" in err
    assert err.count("hint:") == 1, err
    assert "Traceback" not in err


@needs_squashfs
def test_an_image_that_differs_outside_the_slot_is_found(tmp_path: Path) -> None:
    """The images are hashed, not taken from the manifests: bytes changed where the ESP sits
    (the manifest left alone) are a difference."""
    a = _build(tmp_path / "a", FILES)
    b = _build(tmp_path / "b", FILES)
    with (b / "macula-os-1.0.0-amd64.img").open("r+b") as f:
        f.seek(4096)
        f.write(b"changed!!")
    r = reproduce.compare(a, b)
    assert len(r.differ) == 1 and r.differ[0].startswith("macula-os-1.0.0-amd64.img: "), r.differ
    assert f"not what {b}/manifest.json records" in r.differ[0]


@needs_squashfs
def test_links_to_one_build_are_not_a_second_build(tmp_path: Path) -> None:
    a = _build(tmp_path / "a", FILES)
    b = tmp_path / "b"
    b.mkdir()
    for f in a.iterdir():
        (b / f.name).symlink_to(f)
    with pytest.raises(MaculaError, match="are the same file"):
        reproduce.compare(a, b)


@needs_squashfs
def test_a_size_that_covers_a_prefix_of_the_slot_is_refused(tmp_path: Path) -> None:
    """Both manifests could claim an empty slot (and the empty file's digest): only the bytes
    the superblock says the filesystem has count."""
    a = _build(tmp_path / "a", FILES)
    b = _build(tmp_path / "b", {**FILES, "usr/lib/x": "2\n"})
    for d in (a, b):
        m = json.loads((d / "manifest.json").read_text())
        m["squashfs"]["size"] = 0
        m["squashfs"]["sha256"] = hashlib.sha256(b"").hexdigest()
        (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MaculaError, match="is not the size of the slot's squashfs"):
        reproduce.compare(a, b)


@needs_squashfs
def test_a_slot_placed_beyond_the_image_is_named(tmp_path: Path) -> None:
    a = _build(tmp_path / "a", FILES)
    b = _build(tmp_path / "b", FILES)
    m = json.loads((b / "manifest.json").read_text())
    m["partition_table"]["partitions"][0]["start_sector"] = 2**62
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MaculaError, match="shorter than the slot A partition"):
        reproduce.compare(a, b)
