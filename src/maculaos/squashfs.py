"""Reproducible squashfs images of a root tree.

Standard library only: shipped to target hosts as Ansible module_utils
(``plugins/module_utils/maculaos_squashfs.py`` links here).

Reproducible means: the same tree gives the same bytes. mksquashfs sorts directory entries
itself; we pin every timestamp (``-mkfs-time``/``-all-time`` from SOURCE_DATE_EPOCH), the
block size, the compressor and its options, and keep excludes explicit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

COMPRESSORS = ("xz", "gzip", "zstd", "lzo", "lz4", "none")
# "none": nothing compressed (inodes, data, fragments, xattrs), for a tree the build host
# compresses again natively (maculaos_build.finalize)
UNCOMPRESSED = ("-noI", "-noD", "-noF", "-noX")
# Files stored as they are, whatever the compressor: GRUB reads the kernel and the initramfs out
# of the slot at every boot, and both are compressed already (xz shrinks them by under 2 %,
# while GRUB's xz decoder under emulation costs the boot seconds). mksquashfs's action syntax.
STORED_RAW = "uncompressed@name(vmlinuz-*) || name(initrd.img-*)"


@dataclasses.dataclass(frozen=True)
class SquashfsSpec:
    source: str
    dest: str
    compression: str = "xz"
    compression_opts: tuple[str, ...] = ()
    block_size: str = "256K"
    excludes: tuple[str, ...] = ()
    source_date_epoch: int = 0
    processors: int | None = None
    one_file_system: bool = False


class SquashfsError(ValueError):
    """Bad parameters, named."""


def validate(spec: SquashfsSpec) -> None:
    if spec.compression not in COMPRESSORS:
        raise SquashfsError(
            f"compression {spec.compression!r} is not allowed: use one of {', '.join(COMPRESSORS)}"
        )
    if spec.compression == "none" and spec.compression_opts:
        raise SquashfsError("compression 'none' takes no compression_opts")
    if not os.path.isdir(spec.source):
        raise SquashfsError(f"source {spec.source} is not a directory")
    if spec.source_date_epoch < 0:
        raise SquashfsError("source_date_epoch must be >= 0 (seconds since 1970)")
    for pattern in spec.excludes:
        if pattern.startswith("/"):
            raise SquashfsError(f"exclude {pattern!r} must be relative to source (no leading /)")


def command(spec: SquashfsSpec, out: str, binary: str = "mksquashfs") -> list[str]:
    """The mksquashfs command line for ``spec`` writing to ``out``."""
    cmd = [
        binary,
        spec.source,
        out,
        "-noappend",
        "-no-progress",
        "-quiet",
        *(
            UNCOMPRESSED
            if spec.compression == "none"
            else ("-comp", spec.compression, *spec.compression_opts, "-action", STORED_RAW)
        ),
        "-b",
        spec.block_size,
        "-mkfs-time",
        str(spec.source_date_epoch),
        "-all-time",
        str(spec.source_date_epoch),
    ]
    if spec.one_file_system:
        # mount points (/proc, /run, /tmp, ...) become empty directories (squashfs-tools >= 4.6)
        cmd.append("-one-file-system")
    if spec.processors:
        cmd += ["-processors", str(spec.processors)]
    if spec.excludes:
        cmd += ["-wildcards", "-e", *spec.excludes]
    return cmd


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def default_excludes(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """What never belongs in a root image: runtime and build-only state."""
    base = (
        "proc/*",
        "sys/*",
        "dev/*",
        "run/*",
        "tmp/*",
        "var/tmp/*",
        "mnt/*",
        "media/*",
        "var/cache/apt/*",
        "var/lib/apt/lists/*",
        "var/log/journal/*",
        "var/log/*.log",
        "var/log/*.gz",
        "var/log/apt/*",
        "var/log/btmp",
        "var/log/wtmp",
        "var/log/lastlog",
        "var/lib/systemd/random-seed",
        "var/lib/dhcp/*",
        "root/.ssh",
        "root/.ansible",
        "root/.cache",
        "etc/ssh/ssh_host_*",
        "lost+found",
    )
    return base + tuple(extra)
