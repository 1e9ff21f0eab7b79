"""Update bundles: the slot squashfs of a built image, signed with RAUC, plus an index.

``maculaos-build bundle`` (and the end of ``maculaos-build image``) writes next to the image:
``macula-os-<ver>-<arch>.raucb`` (the whole slot, plain format: a stick, GitHub, any node),
``casync/macula-os-<ver>-<arch>.raucb`` with its chunk store ``casync/…castr/`` (verity
format; a node streams it over HTTP and fetches only the chunks its running slot lacks:
docs/decisions/0014) and ``index.json`` naming both (format: docs/upgrade.md).

Signing: ``MACULAOS_SIGNING_CERT`` + ``MACULAOS_SIGNING_KEY`` (PEM files or PKCS#11 URLs) and
``MACULAOS_KEYRING`` (the CA the image trusts) select a production key; without them a
development CA and signing key are generated once under cache/keys (0600) and used for both.
A re-stamped bundle (``--restamp-version``) is the same root with another version in its
os-release: how tests and benchmarks get a v2 without a second image build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maculaos import layout, squashfs
from maculaos.arch import Architecture
from maculaos.log import die, step
from maculaos.upgrade.sources import INDEX_FORMAT
from maculaos_build.finalize import COMPRESSOR_OPTS, artifact_name, copy_slot, sha256, slot_a
from maculaos_build.paths import CACHE

KEYS = CACHE / "keys"


@dataclasses.dataclass(frozen=True)
class Signer:
    cert: str
    key: str
    keyring: Path


def dev_signer(directory: Path = KEYS, name: str = "dev") -> Signer:
    """A development CA and a signing certificate it issued (generated once, kept 0600)."""
    ca_key, ca = directory / f"{name}-ca.key.pem", directory / f"{name}-ca.cert.pem"
    key, cert = directory / f"{name}-signing.key.pem", directory / f"{name}-signing.cert.pem"
    if not cert.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "csr.pem", Path(tmp) / "ext.cnf"
            ext.write_text("keyUsage=critical,digitalSignature\n")
            ssl = ["openssl"]
            old = os.umask(0o077)
            try:
                for args in (
                    ["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(ca_key)],
                    ["req", "-new", "-x509", "-key", str(ca_key), "-out", str(ca), "-days",
                     "3650", "-subj", f"/O=MaculaOS/CN=MaculaOS {name} CA"],
                    ["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(key)],
                    ["req", "-new", "-key", str(key), "-out", str(csr), "-subj",
                     f"/O=MaculaOS/CN=MaculaOS {name} bundle signing"],
                    ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                     "-CAcreateserial", "-out", str(cert), "-days", "3650", "-extfile", str(ext)],
                ):  # fmt: skip
                    subprocess.run(ssl + args, check=True, capture_output=True)
            finally:
                os.umask(old)
        ca.chmod(0o644)
        cert.chmod(0o644)
    return Signer(str(cert), str(key), ca)


def signer() -> Signer:
    cert, key = os.environ.get("MACULAOS_SIGNING_CERT"), os.environ.get("MACULAOS_SIGNING_KEY")
    keyring = os.environ.get("MACULAOS_KEYRING")
    if cert or key or keyring:
        if not (cert and key and keyring):
            die(
                "set all of MACULAOS_SIGNING_CERT, MACULAOS_SIGNING_KEY and MACULAOS_KEYRING "
                "(or none of them for the development key)"
            )
        if not Path(keyring).is_file():
            die(f"MACULAOS_KEYRING={keyring} is not a file")
        return Signer(cert, key, Path(keyring))
    return dev_signer()


def slot_squashfs(image_dir: Path, dest: Path) -> Path:
    """Copy slot A's squashfs out of the built .img (offsets from manifest.json), verified
    against the sha256 the build recorded."""
    manifest = json.loads((image_dir / "manifest.json").read_text())
    part = slot_a(manifest, "manifest.json")
    img = image_dir / artifact_name(manifest["version"], Architecture(manifest["arch"]), "img")
    with img.open("rb") as src:
        src.seek(part["start_sector"] * 512)
        (magic,) = struct.unpack("<I", src.read(4).ljust(4, b"\0"))
    if magic != 0x73717368:
        die(f"{img.name}: no squashfs at the start of {layout.SLOT_A.name}")
    return copy_slot(img, part, manifest["squashfs"], dest, "in manifest.json")


def restamp(
    source: Path,
    version: str,
    dest: Path,
    compression: str = "gzip",
    mutate: Callable[[Path], None] | None = None,
    processors: int | None = None,
) -> Path:
    """The same root with ``version`` in its os-release (and ``mutate`` applied to the tree);
    ``processors`` caps mksquashfs's threads (default: all)."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".restamp-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            ["unsquashfs", "-no-progress", "-d", str(root), str(source)],
            check=True,
            capture_output=True,
        )
        osr = root / "usr/lib/os-release"
        stamp = {
            "VERSION": f'VERSION="{version}"',
            "VERSION_ID": f'VERSION_ID="{version}"',
            "PRETTY_NAME": f'PRETTY_NAME="MaculaOS {version}"',
        }
        lines = [stamp.get(line.split("=", 1)[0], line) for line in osr.read_text().splitlines()]
        osr.write_text("\n".join(lines) + "\n")
        if mutate:
            mutate(root)
        spec = squashfs.SquashfsSpec(
            source=str(root),
            dest=str(dest),
            compression=compression,
            compression_opts=COMPRESSOR_OPTS.get(compression, ()),
            source_date_epoch=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
            processors=processors,
        )
        subprocess.run(squashfs.command(spec, str(dest)), check=True)
    return dest


CASYNC_DIR = "casync"


def make_bundle(
    slot: Path, version: str, arch: Architecture, out: Path, sign: Signer | None = None,
    fmt: str = "plain",
) -> Path:  # fmt: skip
    """A signed bundle of ``slot``: ``plain`` (signature over every byte, checked before
    anything is written) or ``verity`` (signed manifest plus a dm-verity hash tree, checked
    while it is read: what RAUC streams over HTTP)."""
    sign = sign or signer()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".bundle-") as tmp:
        content = Path(tmp) / "content"
        content.mkdir()
        try:
            os.link(slot, content / "rootfs.squashfs")
        except OSError:
            shutil.copy(slot, content / "rootfs.squashfs")
        (content / "manifest.raucm").write_text(
            "[update]\n"
            f"compatible={layout.compatible(arch.value)}\n"
            f"version={version}\n"
            f"description=MaculaOS {version} ({arch.value})\n\n"
            f"[bundle]\nformat={fmt}\n\n"
            "[image.rootfs]\nfilename=rootfs.squashfs\n"
        )
        out.unlink(missing_ok=True)
        subprocess.run(
            [
                "rauc",
                "bundle",
                f"--cert={sign.cert}",
                f"--key={sign.key}",
                f"--keyring={sign.keyring}",
                # the slot is compressed already: store it, do not compress it again
                "--mksquashfs-args=-noI -noD -noF -noX -no-progress",
                str(content),
                str(out),
            ],
            check=True,
            capture_output=True,
        )
    return out


def make_casync(
    slot: Path, version: str, arch: Architecture, out: Path, sign: Signer | None = None
) -> Path:
    """The casync form of the bundle: ``out`` holds the signed manifest and the slot's chunk
    index (a few hundred KiB), ``out`` with ``.castr`` for ``.raucb`` the chunk store. RAUC's
    own ``convert`` of a verity bundle; chunking is content-defined, so a file that moved
    still yields the same chunks."""
    sign = sign or signer()
    out.parent.mkdir(parents=True, exist_ok=True)
    store = out.with_suffix(".castr")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".casync-") as tmp:
        verity = make_bundle(slot, version, arch, Path(tmp) / "verity.raucb", sign, "verity")
        out.unlink(missing_ok=True)
        shutil.rmtree(store, ignore_errors=True)
        r = subprocess.run(
            [
                "rauc",
                "convert",
                f"--cert={sign.cert}",
                f"--key={sign.key}",
                f"--keyring={sign.keyring}",
                f"--signing-keyring={sign.keyring}",
                "--mksquashfs-args=-noI -noD -noF -noX -no-progress",
                str(verity),
                str(out),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            die(f"rauc convert (casync bundle) failed: {r.stderr.strip()[-500:]}")
    return out


def index_entry(
    bundle: Path, version: str, arch: Architecture, channel: str, casync: Path | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "version": version,
        "channel": channel,
        "arch": arch.value,
        "bundle": bundle.name,
        "sha256": sha256(bundle),
        "size": bundle.stat().st_size,
    }
    if casync is not None:
        entry["casync"] = {
            "bundle": casync.relative_to(bundle.parent).as_posix(),
            "sha256": sha256(casync),
            "size": casync.stat().st_size,
        }
    return entry


def write_index(directory: Path, entries: list[dict[str, Any]]) -> Path:
    path = directory / "index.json"
    doc = {"format": INDEX_FORMAT, "releases": entries}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def for_image(image_dir: Path, channel: str = "stable") -> Path:
    """The bundle of a freshly built image, next to it, with its index."""
    manifest = json.loads((image_dir / "manifest.json").read_text())
    version, arch = manifest["version"], Architecture(manifest["arch"])
    out = image_dir / artifact_name(version, arch, "raucb")
    delta = image_dir / CASYNC_DIR / out.name
    with (
        step(f"update bundles {out.name}, {CASYNC_DIR}/"),
        tempfile.TemporaryDirectory(dir=image_dir) as tmp,
    ):
        slot = slot_squashfs(image_dir, Path(tmp) / "rootfs.squashfs")
        make_bundle(slot, version, arch, out)
        make_casync(slot, version, arch, delta)
    write_index(image_dir, [index_entry(out, version, arch, channel, delta)])
    return out
