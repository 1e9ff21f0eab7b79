"""The GRUB environment block that chooses the slot, and RAUC's custom bootloader backend.

Variables (all in the first 512-byte sector of a 1024-byte block, so every write is one sector,
in place; GRUB's own ``save_env`` writes in place too — see docs/decisions/0005):

    ORDER="A B"   slots in boot preference order, primary first
    A_OK=1        1: the slot may be booted; 0: bad (failed, or being written)
    A_LEFT=       empty: established (marked good since it was installed);
                  N: on trial, N boots left (GRUB takes one before each boot of it)
    LAST_GOOD=A   a slot confirmed good since it was last written, or empty: it is moved to
                  the other slot (or cleared) before its slot is written or put on trial

GRUB picks the first slot in ORDER that is OK and either established or has tries left. When
none qualifies it boots, in this order: LAST_GOOD if that slot is OK; the first slot in ORDER
that is OK (completely written, tries spent); the first slot in ORDER. The recovery entry
(GRUB's fallback when the chosen kernel cannot be loaded) boots LAST_GOOD when it is OK and not
the slot just chosen, else the other slot. ``choose`` and ``recovery`` are the same rules in
Python; the GRUB side is ansible/roles/image/templates/esp/EFI/maculaos/grub.cfg.j2.

Standard library only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

SLOTS = ("A", "B")
PARTLABEL = {"A": "rootfs-a", "B": "rootfs-b"}
ESP_MOUNT = Path("/efi")
GRUBENV = ESP_MOUNT / "EFI" / "maculaos" / "grubenv"
HEADER = b"# GRUB Environment Block\n"
SIZE = 1024
SECTOR = 512
MAX_TRIES_LIMIT = 9  # GRUB has no arithmetic: grub.cfg counts down from 9 by string matching
_VALUE = re.compile(r"[A-Za-z0-9 ._-]*")


class BootEnvError(Exception):
    pass


@dataclasses.dataclass
class Slot:
    ok: bool = False
    left: int | None = None  # None: established; N: on trial with N boots left

    @property
    def bootable(self) -> bool:
        return self.ok and (self.left is None or self.left > 0)

    @property
    def state(self) -> str:
        if not self.ok:
            return "bad"
        if self.left is None:
            return "good"
        return f"trial ({self.left} boot{'s' if self.left != 1 else ''} left)"


@dataclasses.dataclass
class BootEnv:
    order: list[str]
    slots: dict[str, Slot]
    last_good: str = "A"  # "" when no slot is confirmed good since it was written
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def factory(cls) -> BootEnv:
        """A fresh image: slot A good, slot B empty."""
        return cls(["A", "B"], {"A": Slot(True, None), "B": Slot(False, None)}, "A")

    @property
    def primary(self) -> str:
        return self.order[0]

    def choose(self) -> tuple[str, bool]:
        """What GRUB boots next, and whether no slot qualified (a fallback)."""
        for name in self.order:
            if self.slots[name].bootable:
                return name, False
        if self.last_good in SLOTS and self.slots[self.last_good].ok:
            return self.last_good, True
        for name in self.order:
            if self.slots[name].ok:  # completely written: safer than one that may be torn
                return name, True
        return self.order[0], True

    def recovery(self, chosen: str) -> str:
        """The slot the recovery entry boots when ``chosen``'s kernel cannot be loaded."""
        if self.last_good in SLOTS and self.last_good != chosen and self.slots[self.last_good].ok:
            return self.last_good
        return self.other(chosen)

    def established(self, name: str) -> bool:
        """Confirmed good since it was last written: OK and not on trial."""
        return self.slots[name].ok and self.slots[name].left is None

    def _forget_good(self, name: str) -> None:
        """``name`` is about to be written or put on trial: LAST_GOOD must not name it."""
        if self.last_good == name:
            other = self.other(name)
            self.last_good = other if self.established(other) else ""

    def other(self, name: str) -> str:
        return next(s for s in SLOTS if s != name)

    # the four RAUC bootchooser operations
    def set_primary(self, name: str, tries: int | None) -> None:
        """``tries``: boots the slot gets before GRUB falls back (None: no trial)."""
        if tries is not None:
            self._forget_good(name)
        self.order = [name] + [s for s in self.order if s != name]
        self.slots[name] = Slot(True, tries)

    def set_state(self, name: str, good: bool) -> None:
        """good: confirmed (the health gate); bad: failed, or about to be written (RAUC)."""
        if not good:
            self._forget_good(name)
        self.slots[name] = Slot(good, None)
        if good:
            self.last_good = name

    # serialisation
    def variables(self) -> dict[str, str]:
        out = {"ORDER": " ".join(self.order), "LAST_GOOD": self.last_good}
        for name in SLOTS:
            slot = self.slots[name]
            out[f"{name}_OK"] = "1" if slot.ok else "0"
            out[f"{name}_LEFT"] = "" if slot.left is None else str(slot.left)
        out.update(self.extra)
        return out

    @classmethod
    def from_variables(cls, v: dict[str, str]) -> BootEnv:
        order = [s for s in v.get("ORDER", "A B").split() if s in SLOTS]
        order += [s for s in SLOTS if s not in order]
        slots = {}
        for name in SLOTS:
            left_text = v.get(f"{name}_LEFT", "")
            # GRUB's test -gt reads a damaged count as 0: no boots left, never "established"
            left = None if left_text == "" else (int(left_text) if left_text.isdigit() else 0)
            slots[name] = Slot(v.get(f"{name}_OK", "0") == "1", left)
        known = {"ORDER", "LAST_GOOD"} | {f"{s}_{k}" for s in SLOTS for k in ("OK", "LEFT")}
        extra = {k: val for k, val in v.items() if k not in known}
        last_good = v.get("LAST_GOOD", "A")
        return cls(order, slots, last_good if last_good in SLOTS else "", extra)


def parse_block(data: bytes) -> dict[str, str]:
    if len(data) != SIZE or not data.startswith(HEADER):
        raise BootEnvError(
            f"not a GRUB environment block ({len(data)} bytes)",
        )
    out: dict[str, str] = {}
    for line in data[len(HEADER) :].split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        key, sep, value = line.decode("utf-8", "replace").partition("=")
        if sep:
            out[key] = value
    return out


def render_block(variables: dict[str, str]) -> bytes:
    body = HEADER
    for key, value in variables.items():
        if not _VALUE.fullmatch(value) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise BootEnvError(f"refusing to write {key}={value!r} to the GRUB environment")
        body += f"{key}={value}\n".encode()
    if len(body) > SECTOR:
        raise BootEnvError(f"GRUB environment would span sectors ({len(body)} > {SECTOR} bytes)")
    return body + b"#" * (SIZE - len(body))


def read(path: Path | None = None) -> BootEnv:
    path = path or GRUBENV
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BootEnvError(f"cannot read the GRUB environment {path}: {e.strerror}") from e
    return BootEnv.from_variables(parse_block(data))


def write(env: BootEnv, path: Path | None = None) -> None:
    """Overwrite the block in place (same size, same blocks): GRUB's save_env needs its blocks
    where they were, and a one-sector overwrite is all-or-nothing on power loss."""
    path = path or GRUBENV
    block = render_block(env.variables())
    os.sync()  # whatever was written before (a slot image) reaches the disk first
    fd = os.open(path, os.O_RDWR)
    try:
        if os.fstat(fd).st_size != SIZE:
            raise BootEnvError(f"{path} is not {SIZE} bytes; refusing to rewrite it")
        os.pwrite(fd, block, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def booted_slot(cmdline: Path = Path("/proc/cmdline")) -> str | None:
    for word in cmdline.read_text().split():
        if word.startswith("rauc.slot="):
            name = word.split("=", 1)[1]
            return name if name in SLOTS else None
    return None


def ensure_esp(mount: Path = ESP_MOUNT) -> None:
    """Mount the ESP at /efi when nothing did (efi.mount normally has)."""
    if os.path.ismount(mount):
        return
    import subprocess  # noqa: PLC0415

    subprocess.run(
        ["mount", "-o", "flush,umask=0077", "/dev/disk/by-partlabel/esp", str(mount)],
        check=True,
        capture_output=True,
    )


def _max_tries() -> int:
    try:
        from maculaos.config import layers  # noqa: PLC0415

        value = layers.load().values.get("maculaos.upgrade.max_tries", 3)
        return int(value)
    except Exception:
        return 3


def rauc_backend(argv: list[str], path: Path = GRUBENV) -> int:
    """RAUC ``bootloader=custom`` backend: get-primary | set-primary NAME | get-state NAME |
    set-state NAME good|bad | get-current."""
    if not argv:
        print("usage: get-primary|set-primary|get-state|set-state|get-current", file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "get-current":
        name = booted_slot()
        if name is None:
            print("no rauc.slot= on the kernel command line", file=sys.stderr)
            return 1
        print(name)
        return 0
    if path == GRUBENV:
        ensure_esp()
    env = read(path)
    if cmd == "get-primary":
        name, fallback = env.choose()
        if fallback:
            return 1
        print(name)
        return 0
    if not args or args[0] not in SLOTS:
        print(f"{cmd}: expected a slot name ({', '.join(SLOTS)})", file=sys.stderr)
        return 2
    name = args[0]
    if cmd == "get-state":
        print("good" if env.slots[name].ok else "bad")
        return 0
    if cmd == "set-primary":
        # a freshly written slot goes on trial; the running slot (mark-active booted) does not
        trial = None if name == booted_slot() else min(_max_tries(), MAX_TRIES_LIMIT)
        env.set_primary(name, trial)
    elif cmd == "set-state" and len(args) == 2 and args[1] in ("good", "bad"):
        env.set_state(name, args[1] == "good")
    else:
        print(f"unknown command: {' '.join(argv)}", file=sys.stderr)
        return 2
    write(env, path)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(rauc_backend(sys.argv[1:]))
    except (BootEnvError, OSError) as e:
        print(f"maculaos bootchooser: {e}", file=sys.stderr)
        sys.exit(1)
