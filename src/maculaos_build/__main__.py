"""`maculaos-build`: build MaculaOS images on the host."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from maculaos.arch import Architecture
from maculaos.log import MaculaError
from maculaos_build import basedisk, image, reproduce


def _arch(value: str) -> Architecture:
    try:
        return Architecture.parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maculaos-build", description="Build MaculaOS images")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("image", help="build the disk image with packer (base disk included)")
    b.add_argument(
        "--arch", type=_arch, default=Architecture.amd64, help="amd64 (default) or arm64"
    )
    b.add_argument("--version", default="0.1.0", help="semver version (default 0.1.0)")
    defaults = image.role_defaults()
    size = int(defaults["image_target_size_mib"])
    b.add_argument(
        "--image-size-mib", type=int, default=size, help=f"disk image size in MiB (default {size})"
    )
    b.add_argument(
        "--output",
        type=Path,
        default=image.default_output(),
        help="output directory (default: output/)",
    )
    b.add_argument("--accelerator", choices=["tcg", "kvm"], default="tcg")
    b.add_argument(
        "--compression",
        choices=["gzip", "xz"],
        default=defaults["image_squashfs_compression"],
        help="slot squashfs compressor (default xz; gzip: ~21%% larger, packs 4x faster)",
    )
    b.add_argument(
        "--authorized-keys",
        default="",
        help="SSH public keys for the macula user baked into this image (dev/CI "
        "images); default: the build key in cache/build-ssh; 'none' for none",
    )
    bd = sub.add_parser("base-disk", help="build (or reuse) the cached base disk")
    bd.add_argument("--arch", type=_arch, default=Architecture.amd64)
    c = sub.add_parser(
        "compare",
        help="are two builds of one commit bit-identical (slot, SBOM, manifest)? exit 1 if not",
    )
    c.add_argument("first", type=Path, help="a build's output directory, e.g. output/0.1.0-amd64")
    c.add_argument("second", type=Path, help="the other build's output directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # the pinned tool chain (ansible-playbook for packer's provisioner) lives in the venv
    venv_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{venv_bin}:{os.environ.get('PATH', '')}"
    try:
        if args.command == "base-disk":
            print(basedisk.ensure(args.arch).disk)
        elif args.command == "compare":
            report = reproduce.compare(args.first, args.second)
            reproduce.print_report(report, args.first, args.second)
            return 0 if report.identical else 1
        else:
            image.build(
                image.BuildOptions(
                    arch=args.arch,
                    version=args.version,
                    image_size_mib=args.image_size_mib,
                    output=args.output,
                    accelerator=args.accelerator,
                    authorized_keys=args.authorized_keys,
                    compression=args.compression,
                )
            )
    except MaculaError as e:
        print(f"maculaos-build: error: {e}", file=sys.stderr)  # the hint too: MaculaError.__str__
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
