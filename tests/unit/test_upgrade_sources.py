"""Update sources: index, GitHub releases (a local double of its API), local dirs; resumable,
verified downloads against a real HTTP server with Range support."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from maculaos.log import MaculaError
from maculaos.upgrade import sources
from tests.support.release_server import serve


def _bundle(d: Path, version: str, size: int = 3 << 20) -> tuple[Path, str]:
    p = d / f"macula-os-{version}-amd64.raucb"
    p.write_bytes(hashlib.sha256(version.encode()).digest() * (size // 32))
    return p, hashlib.sha256(p.read_bytes()).hexdigest()


def _index(d: Path, rels: list[tuple[str, str]]) -> None:
    entries = []
    for version, channel in rels:
        p, digest = _bundle(d, version)
        entries.append(
            {"version": version, "channel": channel, "arch": "amd64", "bundle": p.name,
             "sha256": digest, "size": p.stat().st_size}
        )  # fmt: skip
    (d / "index.json").write_text(json.dumps({"format": sources.INDEX_FORMAT, "releases": entries}))


def test_version_order() -> None:
    ordered = ["0.9.0", "0.10.0-rc.1", "0.10.0-rc.2", "0.10.0", "0.10.1", "1.0.0"]
    assert sorted(reversed(ordered), key=sources.version_key) == ordered


def test_channels_see_their_releases(tmp_path: Path) -> None:
    _index(tmp_path, [("0.2.0", "stable"), ("0.3.0-beta.1", "beta"), ("0.4.0-n.1", "nightly")])
    rels = sources.list_releases(str(tmp_path))
    assert sources.newest(rels, "stable", "amd64", "0.1.0").version == "0.2.0"  # type: ignore[union-attr]
    assert sources.newest(rels, "beta", "amd64", "0.1.0").version == "0.3.0-beta.1"  # type: ignore[union-attr]
    assert sources.newest(rels, "nightly", "amd64", "0.1.0").version == "0.4.0-n.1"  # type: ignore[union-attr]
    assert sources.newest(rels, "stable", "amd64", "0.2.0") is None
    assert sources.newest(rels, "stable", "arm64", "0.1.0") is None


def test_download_resumes_after_a_dropped_connection(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    _index(srv, [("0.2.0", "stable")])
    with serve(srv, drop_after=1 << 20) as (url, log):
        rel = sources.newest(sources.list_releases(url), "stable", "amd64", "0.1.0")
        assert rel is not None
        path = sources.fetch(rel, tmp_path / "cache")
    assert path.read_bytes() == (srv / "macula-os-0.2.0-amd64.raucb").read_bytes()
    ranges = [r for p, r in log if p.endswith(".raucb")]
    assert ranges == [None, "bytes=1048576-"]  # cut after 1 MiB, resumed from there


def test_tampered_download_is_refused(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    _index(srv, [("0.2.0", "stable")])
    bundle = srv / "macula-os-0.2.0-amd64.raucb"
    data = bytearray(bundle.read_bytes())
    data[12345] ^= 0xFF
    bundle.write_bytes(bytes(data))
    with serve(srv) as (url, _):
        rel = sources.newest(sources.list_releases(url), "stable", "amd64", "0.1.0")
        assert rel is not None
        with pytest.raises(MaculaError, match="sha256 does not match"):
            sources.fetch(rel, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.raucb"))


def test_github_releases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GitHub's releases API contract, served locally (no internet here)."""
    srv = tmp_path / "srv"
    (srv / "repos/macula-io/macula-os").mkdir(parents=True)
    p, digest = _bundle(srv, "0.2.0")
    pb, digest_b = _bundle(srv, "0.3.0-rc.1")
    (srv / "SHA256SUMS").write_text(f"{digest}  {p.name}\n{digest_b}  {pb.name}\n")
    with serve(srv) as (url, _):
        releases = [
            {"tag_name": "v0.3.0-rc.1", "prerelease": True, "draft": False,
             "assets": [{"name": pb.name, "browser_download_url": f"{url}/{pb.name}", "size": 1},
                        {"name": "SHA256SUMS", "browser_download_url": f"{url}/SHA256SUMS"}]},
            {"tag_name": "v0.2.0", "prerelease": False, "draft": False,
             "assets": [{"name": p.name, "browser_download_url": f"{url}/{p.name}",
                         "size": p.stat().st_size},
                        {"name": "SHA256SUMS", "browser_download_url": f"{url}/SHA256SUMS"}]},
        ]  # fmt: skip
        (srv / "repos/macula-io/macula-os/releases").write_text(json.dumps(releases))
        monkeypatch.setattr(sources, "GITHUB_API", url)
        rels = sources.list_releases("github://macula-io/macula-os")
        stable = sources.newest(rels, "stable", "amd64", "0.1.0")
        beta = sources.newest(rels, "beta", "amd64", "0.1.0")
        assert stable is not None and stable.sha256 == digest
        assert beta is not None and beta.version == "0.3.0-rc.1" and beta.channel == "beta"
        assert sources.fetch(stable, tmp_path / "cache").read_bytes() == p.read_bytes()


def test_unreachable_and_malformed_sources_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(MaculaError, match="not reachable"):
        sources.list_releases(str(tmp_path / "nope"))
    (tmp_path / "index.json").write_text('{"releases": []}')
    with pytest.raises(MaculaError, match="not a MaculaOS index"):
        sources.list_releases(str(tmp_path))
    with pytest.raises(MaculaError, match="cannot connect"):
        sources.list_releases("http://127.0.0.1:9/")
