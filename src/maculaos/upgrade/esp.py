"""Keep the ESP's boot logic that of the running, confirmed release (issue 9, item 5).

Each slot carries the ESP content it was built with in ``/usr/lib/maculaos/esp`` (GRUB's
config and the modules it loads; docs/decisions/0007). After the health gate has confirmed a
boot, ``sync`` brings the ESP to that content, in an order where every intermediate state boots:

1. files the grub.cfg in force does not read (the modules GRUB loads from
   ``EFI/maculaos/<target>/``), each written beside and renamed into place;
2. when the new grub.cfg reads the redundant boot environment and the ESP has only the legacy
   block: the redundant files, made from the legacy state in force (``bootenv.migrate``);
3. grub.cfg itself, written beside, fsynced, renamed over the old one: the switch.

The GRUB core (``EFI/BOOT/BOOT*.EFI``) is not replaced: a file the firmware loads cannot be
swapped without a window, and the core of an older image loads what the new grub.cfg needs
from the modules of step 1. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from maculaos.upgrade import bootenv

CONTENT = Path("/usr/lib/maculaos/esp")
CONFIG = "EFI/maculaos/grub.cfg"
TEMP = ".maculaos-new"
LEGACY_AFTER_SWITCH = "grubenv.before-layout-2"
ENV_FILES = {bootenv.LEGACY, LEGACY_AFTER_SWITCH, bootenv.BLOCK, bootenv.SUM, bootenv.COUNTER}


def _files(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(TEMP)
    }


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def differs(content: Path, esp: Path) -> list[str]:
    """Content files the ESP lacks or holds differently (the GRUB core and the boot
    environment excluded)."""
    out = []
    for rel, src in _files(content).items():
        if rel.startswith("EFI/BOOT/") or Path(rel).name in ENV_FILES:
            continue
        if _digest(esp / rel) != _digest(src):
            out.append(rel)
    return out


def _install(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + TEMP)
    data = src.read_bytes()
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)  # (a buffered write: no short writes)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    dirfd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    except OSError:
        pass  # vfat may refuse fsync on a directory; the rename is flushed with the next sync
    finally:
        os.close(dirfd)


def sync(content: Path = CONTENT, esp: Path = bootenv.ESP_MOUNT) -> list[str]:
    """Bring the ESP to ``content``; returns what changed (empty: already there)."""
    if not (content / CONFIG).is_file():
        return []  # an image without ESP content: nothing to follow
    with bootenv.locked():
        return _sync(content, esp)


def _sync(content: Path, esp: Path) -> list[str]:
    for leftover in (esp / "EFI").rglob(f"*{TEMP}") if (esp / "EFI").is_dir() else ():
        leftover.unlink()  # a write cut short by a power loss: never a name the boot reads
    changed = differs(content, esp)
    if not changed:
        return []
    env_dir = esp / Path(CONFIG).parent
    new_cfg = (content / CONFIG).read_bytes()
    switching = bootenv.LAYOUT_MARKER in new_cfg and not bootenv.redundant(env_dir)
    for rel in changed:
        if rel != CONFIG:
            _install(content / rel, esp / rel)
    if switching:
        bootenv.migrate(env_dir)
    if CONFIG in changed:
        os.sync()
        _install(content / CONFIG, esp / CONFIG)
    if switching:
        # code from before the switch must fail closed (it would write a block GRUB no longer
        # reads), not half-work: its RAUC backend and health gate stop at a missing grubenv
        with contextlib.suppress(FileNotFoundError):
            os.replace(env_dir / bootenv.LEGACY, env_dir / LEGACY_AFTER_SWITCH)
    os.sync()
    return changed
