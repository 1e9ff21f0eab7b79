"""Turn Packer's output into the release artifacts: .img, .qcow2, SHA256SUMS, manifest.json."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

from maculaos.arch import Architecture
from maculaos.disk import file_digest
from maculaos.log import die, step


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
) -> Path:
    disk = packer_dir / "build-vm-1"
    info_file = packer_dir / "build-info.json"
    if not disk.exists() or not info_file.exists():
        die(
            f"Packer output incomplete in {packer_dir} (need build-vm-1 and build-info.json)",
            hint="look at the packer log above and at the serial log next to that directory",
        )
    build_info = json.loads(info_file.read_text())
    out = output / f"{version}-{arch.value}"
    out.mkdir(parents=True, exist_ok=True)
    img = out / artifact_name(version, arch, "img")
    qcow = out / artifact_name(version, arch, "qcow2")
    with step(f"raw image {img.name}"):
        subprocess.run(
            ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(disk), str(img)], check=True
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
