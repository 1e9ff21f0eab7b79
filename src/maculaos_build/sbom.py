"""The image's software bill of materials: a CycloneDX 1.5 JSON document listing every Debian
package in the slot (name, version, architecture, source package, licences) with the sha256 of
the .deb it was installed from, and the image's own artifacts with theirs.

Made on the build host after the artifacts (``macula-os-<ver>-<arch>.cdx.json`` next to the
image): the package list and the licences are read out of the slot squashfs itself
(``var/lib/dpkg/status`` and ``usr/share/doc/<package>/copyright``), so the SBOM describes what
ships, not what a role meant to install. Nothing in it depends on the build's time or machine:
two builds of the same slot give the same document (its timestamp is SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from maculaos.arch import Architecture
from maculaos.log import die, step

# a copyright file is read up to this size (a licence text can be long; a hostile one is cut)
MAX_COPYRIGHT = 1 << 20
# the dpkg database of a slot is a few MB; anything bigger is not one
MAX_STATUS = 64 << 20
DEP5_FORMAT = re.compile(r"^Format:\s*\S*copyright-format/1\.0", re.I | re.M)
# what a licence short name may contain (DEP-5 names: GPL-2+, BSD-3-clause, public-domain, ...)
LICENSE_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")
# where the image carries its own SBOM (a node answers "what do you run" without the network)
IN_IMAGE = Path("/usr/lib/maculaos/sbom.cdx.json")
NAMESPACE = uuid.UUID("6b7e1c52-5d1e-4f0e-9a8e-3c1d2f4a5b6c")  # MaculaOS SBOM serial numbers


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs (dpkg status, DEP-5): fields with continuation lines folded in."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif line[0] in " \t":
            if last:
                fields[last] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()
        # anything else (a stray line) is ignored, as dpkg's own parser would refuse it
    if fields:
        yield fields


def installed_packages(status: str) -> list[dict[str, str]]:
    """Packages dpkg has installed (Status: install ok installed), sorted by name."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for p in _paragraphs(status):
        name, version = p.get("package", ""), p.get("version", "")
        if not name or not version or p.get("status", "").split()[-1:] != ["installed"]:
            continue
        source = p.get("source", name).split()[0] or name
        found[(name, p.get("architecture", ""))] = {
            "name": name,
            "version": version,
            "architecture": p.get("architecture", ""),
            "source": source,
        }
    return [found[k] for k in sorted(found)]


def licenses(copyright_text: str | None) -> list[str]:
    """The licence short names of a machine-readable (DEP-5) copyright file, in order of
    appearance, each once; [] when the file is missing or free-form (the SBOM then says
    NOASSERTION rather than guess)."""
    if not copyright_text or not DEP5_FORMAT.search(copyright_text[:4096]):
        return []
    names: list[str] = []
    for p in _paragraphs(copyright_text):
        first = p.get("license", "").split("\n", 1)[0].strip()
        # "GPL-2+ or Artistic-1.0", "MIT and BSD-3-clause", "(GPL-2 or LGPL-2.1), with exception"
        for part in re.split(r"\s+(?:or|and)\s+|,|\(|\)|\s+with\s+.*$", first, flags=re.I):
            word = part.strip()
            if word and LICENSE_WORD.match(word) and word not in names:
                names.append(word)
    return names


def _read_bounded(path: Path, limit: int) -> str | None:
    """Up to ``limit`` bytes of a regular file as text; None for anything else (a FIFO or a
    device in a hostile slot must not block or feed the build)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return f.read(limit).decode("utf-8", errors="replace")
        except OSError:
            return None


def _inside(root: Path, path: Path) -> Path | None:
    """``path`` resolved, if it stays under ``root`` (a copyright symlink in the slot must not
    make the build host read its own files)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return None
    return real if real.is_relative_to(root.resolve()) else None


def deb_hashes(apt_cache: Path) -> dict[tuple[str, str, str], str]:
    """sha256 of each .deb in the build's package cache, by (name, version, architecture)."""
    from maculaos_build.finalize import sha256  # noqa: PLC0415 (finalize imports nothing of ours)

    out: dict[tuple[str, str, str], str] = {}
    if not apt_cache.is_dir():
        return out
    for deb in sorted(apt_cache.glob("*.deb")):
        parts = deb.name[: -len(".deb")].split("_")
        if len(parts) != 3:
            continue
        name, version, arch = (p.replace("%3a", ":") for p in parts)
        out[(name, version, arch)] = sha256(deb)
    return out


def purl(pkg: dict[str, str], distro: str) -> str:
    name = quote(pkg["name"], safe="")
    version = quote(pkg["version"], safe="")
    return f"pkg:deb/debian/{name}@{version}?arch={pkg['architecture']}&distro={distro}"


def document(
    *,
    version: str,
    arch: Architecture,
    source_date_epoch: int,
    squashfs_sha256: str | None,
    packages: list[dict[str, str]],
    package_licenses: dict[str, list[str]],
    debs: dict[tuple[str, str, str], str],
    artifacts: dict[str, str],
    distro: str = "debian-13",
) -> dict[str, Any]:
    """The CycloneDX 1.5 document (a plain dict, serialised sorted by the caller)."""
    components: list[dict[str, Any]] = []
    for pkg in packages:
        comp: dict[str, Any] = {
            "type": "library",
            "bom-ref": purl(pkg, distro),
            "name": pkg["name"],
            "version": pkg["version"],
            "purl": purl(pkg, distro),
            "properties": [
                {"name": "debian:architecture", "value": pkg["architecture"]},
                {"name": "debian:source", "value": pkg["source"]},
            ],
        }
        names = package_licenses.get(pkg["name"], [])
        comp["licenses"] = (
            [{"license": {"name": n}} for n in names] if names else [{"expression": "NOASSERTION"}]
        )
        digest = debs.get((pkg["name"], pkg["version"], pkg["architecture"]))
        if digest:
            comp["hashes"] = [{"alg": "SHA-256", "content": digest}]
        components.append(comp)
    for name, digest in sorted(artifacts.items()):
        components.append(
            {
                "type": "file",
                "bom-ref": f"file:{name}",
                "name": name,
                "hashes": [{"alg": "SHA-256", "content": digest}],
            }
        )
    stamp = datetime.datetime.fromtimestamp(source_date_epoch, datetime.UTC)
    if squashfs_sha256:
        serial = f"{version}/{arch.value}/{squashfs_sha256}"
        where = {"name": "maculaos:squashfs-sha256", "value": squashfs_sha256}
    else:  # the copy inside the slot: named by what it lists (its slot's digest comes after it)
        listed = json.dumps([c.get("purl") or c["name"] for c in components])
        serial = f"{version}/{arch.value}/in-image/{hashlib.sha256(listed.encode()).hexdigest()}"
        where = {"name": "maculaos:sbom-location", "value": str(IN_IMAGE)}
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(NAMESPACE, serial)}",
        "version": 1,
        "metadata": {
            "timestamp": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "component": {
                "type": "operating-system",
                "bom-ref": f"maculaos@{version}",
                "name": "MaculaOS",
                "version": version,
                "properties": [
                    {"name": "maculaos:arch", "value": arch.value},
                    where,
                ],
            },
            "tools": {"components": [{"type": "application", "name": "maculaos-build"}]},
        },
        "components": components,
    }


def from_tree(root: Path) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
    """Installed packages and their licences, read out of an unpacked root (``root``)."""
    where = _inside(root, root / "var/lib/dpkg/status")  # not the build host's, via a link
    status = _read_bounded(where, MAX_STATUS) if where else None
    if not status:
        die(f"no dpkg database (var/lib/dpkg/status) in {root}: cannot list the packages")
    packages = installed_packages(status)
    found: dict[str, list[str]] = {}
    for pkg in packages:
        path = _inside(root, root / "usr/share/doc" / pkg["name"] / "copyright")
        found[pkg["name"]] = licenses(_read_bounded(path, MAX_COPYRIGHT) if path else None)
    return packages, found


def from_slot(slot: Path) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
    """Installed packages and their licences, read out of a slot squashfs."""
    with tempfile.TemporaryDirectory(prefix="maculaos-sbom-") as tmp:
        root = Path(tmp) / "slot"
        r = subprocess.run(
            ["unsquashfs", "-q", "-n", "-d", str(root), str(slot),
             "var/lib/dpkg/status", "usr/share/doc"],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if r.returncode != 0 or not (root / "var/lib/dpkg/status").is_file():
            die(
                f"{slot.name}: cannot read the dpkg database out of the slot",
                hint=(r.stderr.strip() or "no var/lib/dpkg/status in the slot")[-500:],
            )
        return from_tree(root)


def embed(root: Path, build_info: dict[str, Any], apt_cache: Path) -> list[str]:
    """Write the SBOM into the unpacked slot ``root`` (``IN_IMAGE``) before it is packed: the
    node carries the list of what it runs. It is the document published next to the image
    without the digests of the artifacts, which cannot be known before the slot they contain is
    packed. The paths it added, relative to ``root``."""
    packages, found = from_tree(root)
    doc = document(
        version=str(build_info["version"]),
        arch=Architecture(build_info["arch"]),
        source_date_epoch=int(build_info.get("source_date_epoch") or 0),
        squashfs_sha256=None,
        packages=packages,
        package_licenses=found,
        debs=deb_hashes(apt_cache),
        artifacts={},
    )
    parent = root / IN_IMAGE.parent.relative_to("/")
    real = _inside(root, parent)
    # no link anywhere on the way: the file lands where the listing check looks for it
    if real != root.resolve() / IN_IMAGE.parent.relative_to("/") or not real.is_dir():
        die(
            f"{IN_IMAGE.parent} is not a directory in the slot (missing, or a link)",
            hint="the base role makes it; a role that replaces it with a link breaks the build",
        )
    data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
    try:  # O_EXCL|O_NOFOLLOW: never over a file the roles put there, never through a link
        fd = os.open(real / IN_IMAGE.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o644)  # fmt: skip
    except FileExistsError:
        die(
            f"the slot already has {IN_IMAGE}: the build writes it",
            hint="remove the role task that installs a file there",
        )
    except OSError as e:
        die(f"cannot write {IN_IMAGE} into the slot: {e.strerror}")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        os.fchmod(f.fileno(), 0o644)  # whatever the umask
    return [str(IN_IMAGE.relative_to("/"))]


def write(image_dir: Path, apt_cache: Path) -> Path:
    """Write ``<image>.cdx.json`` next to the artifacts of ``image_dir`` and list it in
    SHA256SUMS and manifest.json."""
    from maculaos_build import bundle  # noqa: PLC0415 (bundle imports finalize, as we do)
    from maculaos_build.finalize import artifact_name, sha256  # noqa: PLC0415

    manifest_file = image_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    version, arch = manifest["version"], Architecture(manifest["arch"])
    out = image_dir / artifact_name(version, arch, "cdx.json")
    with step(f"SBOM {out.name}"), tempfile.TemporaryDirectory() as tmp:
        slot = bundle.slot_squashfs(image_dir, Path(tmp) / "slot.squashfs")
        packages, found = from_slot(slot)
        doc = document(
            version=version,
            arch=arch,
            source_date_epoch=int(manifest.get("source_date_epoch") or 0),
            squashfs_sha256=manifest["squashfs"]["sha256"],
            packages=packages,
            package_licenses=found,
            debs=deb_hashes(apt_cache),
            # the slot is what every artifact (image, qcow2, bundle) carries; their own digests
            # are in SHA256SUMS (the image's state partition is made anew by each build)
            artifacts={artifact_name(version, arch, "squashfs"): manifest["squashfs"]["sha256"]},
        )
        out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    digest = sha256(out)
    sums = image_dir / "SHA256SUMS"
    lines = [ln for ln in sums.read_text().splitlines() if not ln.endswith(f"  {out.name}")]
    sums.write_text("".join(f"{ln}\n" for ln in [*lines, f"{digest}  {out.name}"]))
    manifest["sbom"] = {
        "file": out.name,
        "sha256": digest,
        "format": "CycloneDX 1.5 JSON",
        "packages": len(packages),
        "packages_with_licenses": sum(1 for p in packages if found.get(p["name"])),
        "packages_with_deb_sha256": sum(
            1 for c in doc["components"] if c["type"] == "library" and "hashes" in c
        ),
    }
    manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out
