"""Issue 10, goal 6: `maculaos-build compare` says whether two builds are bit-identical where
they must be, and when they are not, names the files inside the slot that differ."""

from __future__ import annotations

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


def _build(out: Path, files: dict[str, str], when: str = "2026-11-27T10:00:00+00:00") -> Path:
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
        "artifacts": {img.name: {"sha256": file_digest(str(img)), "size": 1}},
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


def test_a_manifest_field_other_than_the_time_differs(tmp_path: Path) -> None:
    for tag, commit in (("a", "abc"), ("b", "abd")):
        d = tmp_path / tag
        d.mkdir()
        manifest = {"git_commit": commit, "squashfs": {"sha256": "00"}, "build_time": tag}
        (d / "manifest.json").write_text(json.dumps(manifest))
        (d / "x.cdx.json").write_text("{}")
    r = reproduce.compare(tmp_path / "a", tmp_path / "b")
    assert r.differ == ["manifest.json differs in: git_commit"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "has no manifest.json"),
        ("not json", "is not JSON"),
        ("[1, 2]", "not a MaculaOS build manifest"),
        ('{"squashfs": "x"}', "not a MaculaOS build manifest"),
        ("\xff\xfe", "is not JSON"),
    ],
)
def test_what_is_not_a_build_is_named(tmp_path: Path, content: str | None, match: str) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "manifest.json").write_text('{"squashfs": {"sha256": "00"}}')
    bad = tmp_path / "bad"
    bad.mkdir()
    if content is not None:
        (bad / "manifest.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(MaculaError, match=match):
        reproduce.compare(good, bad)


def test_a_huge_manifest_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(b" " * (reproduce.MAX_MANIFEST + 1))
    with pytest.raises(MaculaError, match="not a build manifest"):
        reproduce.compare(tmp_path, tmp_path)


def test_the_cli_names_the_error_and_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["compare", str(tmp_path), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "has no manifest.json" in err and "hint: pass a build's output directory" in err
    assert "Traceback" not in err
