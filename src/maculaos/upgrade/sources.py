"""Where updates come from, and fetching them.

Sources (``maculaos.upgrade.url`` or ``--from``):

* ``https://host/path`` (or ``http://``): a MaculaOS index, ``<url>/index.json`` unless the URL
  already names a ``.json`` file (format: docs/upgrade.md); a release there may also name a
  casync bundle (``"casync"``), which RAUC streams, fetching only the chunks this node lacks;
* ``github://owner/repo``: GitHub releases; a release's ``macula-os-<ver>-<arch>.raucb`` asset,
  checked against its ``SHA256SUMS`` asset; pre-releases are beta (nightly when the tag says so);
* a local directory (a mounted USB stick): its ``index.json``, else every ``*.raucb`` in it;
  or one ``.raucb`` file.

Channels: stable sees stable releases, beta sees beta and stable, nightly sees all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from maculaos.disk import file_digest
from maculaos.log import die

INDEX_FORMAT = "maculaos-index/1"
CHANNELS = {
    "stable": ("stable",),
    "beta": ("stable", "beta"),
    "nightly": ("stable", "beta", "nightly"),
}
BUNDLE_NAME = re.compile(
    r"macula-os-(?P<version>[0-9][0-9A-Za-z.+-]*)-(?P<arch>amd64|arm64)\.raucb"
)
GITHUB_API = os.environ.get("MACULAOS_GITHUB_API", "https://api.github.com")
USER_AGENT = "maculaos-upgrade"


@dataclasses.dataclass(frozen=True)
class Release:
    version: str
    channel: str
    arch: str
    url: str  # http(s) URL or local path
    sha256: str | None = None
    size: int | None = None
    # the casync form of the same release (verity bundle; its chunk store is beside it, the
    # name with .castr for .raucb): streamed over HTTP(S) by RAUC, never stored whole
    delta_url: str | None = None


def version_key(version: str) -> tuple[Any, ...]:
    """Semantic-version order: 1.2.10 > 1.2.9, and 1.0.0-rc.1 < 1.0.0."""
    core, _, pre = version.partition("+")[0].partition("-")
    nums = tuple(int(p) if p.isdigit() else 0 for p in core.split("."))
    if not pre:
        return (nums, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (nums, 0, parts)


def _get(url: str, timeout: float = 30) -> bytes:
    import urllib.error  # noqa: PLC0415 (HTTP's modules: only when fetching, not at boot)
    import urllib.request  # noqa: PLC0415

    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return bytes(r.read())
    except urllib.error.HTTPError as e:
        die(f"{url}: HTTP {e.code} {e.reason}", "check maculaos.upgrade.url")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        die(f"{url}: cannot connect ({reason})", "is the node online? is the update server up?")


def _from_index(doc: Any, base: str, where: str) -> list[Release]:
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        die(f'{where}: not a MaculaOS index (expected "format": "{INDEX_FORMAT}")')
    out = []
    for i, r in enumerate(doc.get("releases", [])):
        try:
            target = str(r["bundle"])
            url = target if "://" in target or target.startswith("/") else _join(base, target)
            out.append(
                Release(
                    version=str(r["version"]),
                    channel=str(r.get("channel", "stable")),
                    arch=str(r["arch"]),
                    url=url,
                    sha256=r.get("sha256"),
                    size=r.get("size"),
                    delta_url=_delta_url(r.get("casync"), base, f"{where}: releases[{i}]"),
                )
            )
        except (KeyError, TypeError) as e:
            die(f"{where}: releases[{i}] lacks {e}")
    return out


def _delta_url(entry: Any, base: str, where: str) -> str | None:
    """The casync bundle's URL, or None: only from an index served over HTTP(S), only a path
    beside the index or a URL of the index's own scheme and host (no credentials, query or
    control characters), only a ``.raucb`` (RAUC finds the chunk store beside it). A
    malformed entry is said and ignored: the whole bundle still installs."""
    if entry is None or not base.startswith(("http://", "https://")):
        return None  # a stick or a directory: the whole bundle is right there
    target = entry.get("bundle") if isinstance(entry, dict) else None
    problem = None
    if not isinstance(target, str) or not target.endswith(".raucb") or len(target) > 2048:
        problem = 'expected {"bundle": "<path or URL of a .raucb>", ...}'
    elif not target.isprintable() or any(c.isspace() for c in target):
        problem = "the bundle path holds spaces or control characters"
    else:
        url = urllib.parse.urljoin(base, target)
        have, want = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
        if (have.scheme, have.netloc) != (want.scheme, want.netloc):
            problem = f"{target!r} is not on the index's own server ({want.scheme}://{want.netloc})"
        elif have.username or have.password or have.query or have.fragment:
            problem = f"{target!r} carries credentials, a query or a fragment"
        else:
            return url
    print(
        f"{where}.casync ignored: {problem}; the whole bundle is used (fix the index)",
        file=sys.stderr,
    )
    return None


def _join(base: str, name: str) -> str:
    if "://" in base:
        return urllib.parse.urljoin(base, name)
    return str(Path(base).parent / name)


def list_releases(source: str) -> list[Release]:
    if source.startswith(("http://", "https://")):
        url = source if source.endswith(".json") else source.rstrip("/") + "/index.json"
        try:
            doc = json.loads(_get(url))
        except ValueError:
            die(f"{url}: not JSON")
        return _from_index(doc, url, url)
    if source.startswith("github://"):
        return _github(source[len("github://") :].strip("/"))
    path = Path(source)
    if path.is_file() and path.suffix == ".raucb":
        return [_local_bundle(path)]
    if path.is_dir():
        index = path / "index.json"
        if index.exists():
            try:
                doc = json.loads(index.read_text())
            except ValueError:
                die(f"{index}: not JSON")
            return _from_index(doc, str(index), str(index))
        return [_local_bundle(p) for p in sorted(path.glob("*.raucb"))]
    die(
        f"update source {source!r} is not reachable",
        "use https://…, github://owner/repo, or a directory / .raucb file that exists",
    )


def _local_bundle(path: Path) -> Release:
    m = BUNDLE_NAME.fullmatch(path.name)
    if not m:
        die(f"{path}: bundle names look like macula-os-<version>-<arch>.raucb")
    return Release(m["version"], "stable", m["arch"], str(path), None, path.stat().st_size)


def _github(repo: str) -> list[Release]:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        die(f"github://{repo}: expected github://owner/repo")
    url = f"{GITHUB_API}/repos/{repo}/releases?per_page=50"
    try:
        releases = json.loads(_get(url))
    except ValueError:
        die(f"{url}: not JSON")
    out = []
    for rel in releases if isinstance(releases, list) else []:
        if rel.get("draft"):
            continue
        tag = str(rel.get("tag_name", ""))
        channel = "stable"
        if rel.get("prerelease"):
            channel = "nightly" if "nightly" in tag else "beta"
        assets = {a["name"]: a for a in rel.get("assets", []) if "name" in a}
        sums: dict[str, str] = {}
        if "SHA256SUMS" in assets:
            for line in _get(assets["SHA256SUMS"]["browser_download_url"]).decode().splitlines():
                parts = line.split()
                if len(parts) == 2:
                    sums[parts[1].lstrip("*")] = parts[0]
        for name, asset in assets.items():
            m = BUNDLE_NAME.fullmatch(name)
            if m:
                out.append(
                    Release(
                        m["version"],
                        channel,
                        m["arch"],
                        asset["browser_download_url"],
                        sums.get(name),
                        asset.get("size"),
                    )
                )
    return out


def candidates(releases: list[Release], channel: str, arch: str) -> list[Release]:
    seen = CHANNELS[channel]
    mine = [r for r in releases if r.arch == arch and r.channel in seen]
    return sorted(mine, key=lambda r: version_key(r.version))


def newest(releases: list[Release], channel: str, arch: str, current: str) -> Release | None:
    mine = candidates(releases, channel, arch)
    if mine and version_key(mine[-1].version) > version_key(current):
        return mine[-1]
    return None


def _progress(done: int, total: int | None, started: float, last: list[float]) -> None:
    now = time.monotonic()
    if now - last[0] < (0.5 if sys.stderr.isatty() else 5) and done != total:
        return
    last[0] = now
    rate = done / max(now - started, 1e-6) / 2**20
    pct = f"{100 * done / total:5.1f}% " if total else ""
    end = "\r" if sys.stderr.isatty() and done != total else "\n"
    print(
        f"  {pct}{done / 2**20:8.1f} MiB  {rate:6.1f} MiB/s", end=end, file=sys.stderr, flush=True
    )


def fetch(release: Release, cache: Path, retries: int = 5) -> Path:
    """The bundle as a local file. Downloads resume from a ``.part`` file (HTTP Range) after
    a broken connection or a reboot; the size and sha256 from the index are checked."""
    import urllib.error  # noqa: PLC0415 (HTTP's modules: only when fetching, not at boot)
    import urllib.request  # noqa: PLC0415

    if "://" not in release.url:
        path = Path(release.url)
        _verify(path, release)
        return path
    cache.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(release.url).path).name
    final = cache / name
    if final.exists() and release.sha256 and file_digest(str(final)) == release.sha256:
        return final
    part = cache / (name + ".part")
    started, last = time.monotonic(), [0.0]
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        req = urllib.request.Request(release.url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                if have and r.status != 206:
                    have = 0  # the server ignored Range: start over
                total = release.size or (have + int(r.headers.get("Content-Length", 0)) or None)
                with part.open("ab" if have else "wb") as f:
                    done = have
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        done += len(chunk)
                        _progress(done, total, started, last)
                    f.flush()
                    os.fsync(f.fileno())
                if total is not None and done < total:
                    raise ConnectionError(f"stream ended at {done} of {total} bytes")
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # already complete
                break
            die(f"{release.url}: HTTP {e.code} {e.reason}")
        except (urllib.error.URLError, OSError) as e:
            if attempt == retries:
                die(f"{release.url}: download failed after {retries + 1} tries ({e})")
            print(f"  connection lost ({e}); resuming", file=sys.stderr)
            time.sleep(min(2**attempt, 30))
    _verify(part, release)
    os.replace(part, final)
    return final


def _verify(path: Path, release: Release) -> None:
    if release.size is not None and path.stat().st_size != release.size:
        die(
            f"{path.name}: {path.stat().st_size} bytes, the index says {release.size}",
            "the download is incomplete or the bundle was replaced; run the upgrade again",
        )
    if release.sha256 and file_digest(str(path)) != release.sha256:
        if path.name.endswith(".part"):
            path.unlink(missing_ok=True)
        die(
            f"{path.name}: sha256 does not match the index (tampered or corrupted); "
            "nothing was installed",
        )
