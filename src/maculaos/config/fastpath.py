"""Boot fast path: when nothing that feeds the config changed since the last successful apply,
there is nothing to do (the applied settings persist in /etc and systemd loads them: hostname,
modules-load.d, sysctl.d, vconsole, locale, localtime). Standard library only and no YAML, so
the check costs a Python start-up, not a full apply."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from maculaos import identity
from maculaos.config.paths import BOOT_WORDS

VOLATILE = ("/run/", "/tmp/", "/dev/", "/proc/", "/sys/")


def _maculaos_words(cmdline: Path | None) -> str:
    if cmdline is None:
        return ""
    try:
        words = cmdline.read_text().split()
    except OSError:
        return ""
    return " ".join(
        w for w in words if w.startswith("maculaos.") and w.split("=", 1)[0] not in BOOT_WORDS
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"<absent>"


def fingerprint(
    node_config: Path,
    image_defaults: Path,
    cmdline: Path | None,
    sysfs_net: Path = Path("/sys/class/net"),
) -> str:
    h = hashlib.sha256()
    for part in (
        _read(node_config),
        _read(image_defaults),
        _maculaos_words(cmdline).encode(),
        (identity.primary_mac(sysfs_net) or "").encode(),
        _read(Path(__file__).with_name("applicators.py")),
    ):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def try_boot(
    node_config: Path,
    image_defaults: Path,
    cmdline: Path | None,
    status_file: Path,
    sysfs_net: Path = Path("/sys/class/net"),
) -> bool:
    """True when the boot needs no apply (and run_cmd has been run from the last apply)."""
    try:  # no status yet: first boot (maybe with a seed volume) -> full apply
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(status, dict) or status.get("errors") or status.get("volatile_writes"):
        return False
    if status.get("fingerprint") != fingerprint(node_config, image_defaults, cmdline, sysfs_net):
        return False
    print("config unchanged since the last apply; its settings persist in /etc")
    for cmd in status.get("run_cmd", []):
        r = subprocess.run(["sh", "-c", cmd], check=False)
        print(f"run_cmd: {cmd} (exit {r.returncode})")
    return True
