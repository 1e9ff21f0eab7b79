"""What the node remembers about upgrades, on the data partition (shared by both slots):
which version went into which slot, every unhealthy boot and why, the last rollback."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from maculaos import bootdisk
from maculaos.config.applicators import write_file
from maculaos.upgrade import bootenv, esp

STATE_DIR = Path("/var/lib/maculaos/upgrade")
OS_RELEASE = Path("/usr/lib/os-release")
BANNERS = (
    Path("/run/motd.d/60-maculaos-upgrade"),
    Path("/run/issue.d/60-maculaos-upgrade.issue"),
)
MAX_ATTEMPTS = 50


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def load(state_dir: Path | None = None) -> dict[str, Any]:
    state_dir = state_dir or STATE_DIR
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.setdefault("installs", {})
    data.setdefault("attempts", [])
    data.setdefault("last_rollback", None)
    data.setdefault("last_health", None)
    if not isinstance(data.get("failed_releases"), list):
        data["failed_releases"] = []
    return data


def save(data: dict[str, Any], state_dir: Path | None = None) -> None:
    state_dir = state_dir or STATE_DIR
    data["attempts"] = data["attempts"][-MAX_ATTEMPTS:]
    write_file(state_dir / "state.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.sync()


def boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def remember_failed(
    data: dict[str, Any], version: str, sha256: str | None, reason: str, slot: str
) -> None:
    """A release that was rolled back: ``auto_apply`` never installs it again by itself."""
    entry = {"version": version, "sha256": sha256, "reason": reason, "slot": slot, "time": now()}
    data["failed_releases"] = [
        f for f in data["failed_releases"] if not _same(f, version, sha256)
    ] + [entry]
    data["failed_releases"] = data["failed_releases"][-MAX_ATTEMPTS:]


def _same(record: Any, version: str, sha256: str | None) -> bool:
    if not isinstance(record, dict) or record.get("version") != version:
        return False
    known = record.get("sha256")
    # a bundle whose digest is unknown on either side counts as the same release
    return not known or not sha256 or known == sha256


def failed_release(data: dict[str, Any], version: str, sha256: str | None) -> dict[str, Any] | None:
    """The record of an earlier rollback from this release (same version and bundle), if any."""
    for record in reversed(data["failed_releases"]):
        if _same(record, version, sha256):
            return dict(record)
    return None


def os_release_version(path: Path = OS_RELEASE) -> str | None:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith("VERSION_ID="):
                return line.split("=", 1)[1].strip().strip('"')
    return None


OVERLAYS = Path("/run/maculaos/state/overlay")


def forget_etc_layer(slot: str, overlays: Path | None = None) -> bool:
    """Drop a slot's /etc layer before its release is replaced: the next release in that
    slot starts from the running slot's /etc, merged (the initramfs does it at its first
    boot; docs/decisions/0009). True when there was one."""
    base = overlays or OVERLAYS
    layer = base / f"etc.{slot}"
    if not layer.exists():
        return False
    try:  # one rename: a power cut leaves the layer gone or whole
        stale = Path(tempfile.mkdtemp(prefix=f".etc.{slot}.stale-", dir=base))
        layer.rename(stale / "layer")
    except OSError as e:
        # the layer stays; the initramfs still merges again for a release with other bytes
        print(f"warning: could not drop slot {slot}'s /etc layer ({e})", file=sys.stderr)
        return False
    shutil.rmtree(stale, ignore_errors=True)  # what cannot go (chattr +i) stays hidden
    return True


@contextlib.contextmanager
def mounted_slot(name: str) -> Iterator[Path | None]:
    """The other slot's root, mounted read-only (None when it cannot be mounted or is not on
    the boot disk)."""
    try:
        device = bootdisk.partition(bootenv.PARTLABEL[name])
    except bootdisk.NotOwnDisk:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="maculaos-slot-") as mnt:
        r = subprocess.run(
            ["mount", "-t", "squashfs", "-o", "ro", str(device), mnt],
            capture_output=True,
            check=False,
        )
        if r.returncode != 0:
            yield None
            return
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], capture_output=True, check=False)


def slot_version(name: str, booted: str | None) -> str | None:
    """The version a slot holds: the running root's os-release, or the other slot's, read
    from a read-only mount of its squashfs."""
    if name == booted:
        return os_release_version()
    with mounted_slot(name) as root:
        return None if root is None else os_release_version(root / "usr/lib/os-release")


def slot_reads_redundant_env(name: str) -> bool:
    """Whether the release in slot ``name`` knows the redundant boot environment (its ESP
    content says so): a release that does not would write a block GRUB no longer reads."""
    with mounted_slot(name) as root:
        if root is None:
            return False
        try:
            cfg = (root / esp.CONTENT.relative_to("/") / esp.CONFIG).read_bytes()
        except OSError:
            return False
        return bootenv.LAYOUT_MARKER in cfg


def banner(text: str | None, paths: tuple[Path, ...] = BANNERS) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            if text:
                write_file(path, text)
            elif path.exists():
                path.unlink()


def rollback_text(rb: dict[str, Any]) -> str:
    return (
        f"MaculaOS rolled back: {rb['failed_version']} (slot {rb['failed_slot']}) did not become "
        f"healthy in {rb['tries']} tr{'y' if rb['tries'] == 1 else 'ies'}; running "
        f"{rb['running_version']} from slot {rb['running_slot']}.\n"
        f"  reason: {rb['reason']}\n"
        f"  at: {rb['time']}  (details: maculaos upgrade status)\n"
    )
