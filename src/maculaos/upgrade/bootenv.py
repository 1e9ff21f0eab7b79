"""The boot environment that chooses the slot, and RAUC's custom bootloader backend over it.

Layout on the ESP, in ``EFI/maculaos/`` (docs/decisions/0006 explains why):

    env.1/bootenv + bootenv.sum two copies of the policy, written only by Linux. Each copy is
    env.2/bootenv + bootenv.sum a 1024-byte GRUB environment block with a sequence number;
                                its ``bootenv.sum`` is ``<sha256>  bootenv`` (GRUB's ``hashsum
                                --check`` format; one directory per copy, so a sum can only
                                vouch for its own copy). The current copy is the valid one with
                                the highest SEQ; a write goes to the other copy first, then to
                                this one, so a torn write leaves a whole state in force.
    bootcount                   a GRUB environment block written only by GRUB (``save_env``):
                                the boots spent on each slot's current trial.

Policy variables:

    SEQ=7         sequence number of this copy
    ORDER=A B     slots in boot preference order, primary first
    A_OK=1        1: the slot may be booted; 0: bad (failed, or being written)
    A_TRIES=      empty: established (confirmed good since it was written); 1-9: on trial
    A_TRIAL=7     the trial's id (the SEQ that granted it): the counter counts for this trial
    LAST_GOOD=A   a slot confirmed good since it was last written, or empty

Counter variables (``bootcount``): ``A_CTR`` (the trial id counted) and ``A_BOOTS`` (0-9).
A trial slot has ``TRIES - BOOTS`` boots left, ``BOOTS`` counting 0 when ``A_CTR`` is another
trial's id. A damaged counter (or a count that is not one digit) leaves a trial no boots: GRUB
could not count them.

GRUB picks the first slot in ORDER that is OK and either established or has boots left; a
trial boot spends one before the kernel starts. When none qualifies it boots LAST_GOOD if that
slot is OK, else the first OK slot in ORDER (completely written), else the first in ORDER. The
recovery entry (GRUB's fallback when the kernel cannot be loaded) boots LAST_GOOD when it is OK
and not the slot just chosen, else the other slot. ``choose`` and ``recovery`` are the same
rules in Python; grub.cfg.j2 is the GRUB side, and tests/unit/test_grub_cfg.py runs the real
grub.cfg in grub-emu against both.

Nodes made before this layout have one ``grubenv`` block (``A_LEFT`` counted down by GRUB in
place); it is read and written as it is until the ESP is updated.

Standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from maculaos import layout

SLOTS = ("A", "B")
PARTLABEL = {name: part.name for name, part in layout.SLOTS.items()}
ESP_MOUNT = Path("/efi")
ENV_DIR = ESP_MOUNT / "EFI" / "maculaos"
LEGACY = "grubenv"  # the single block of nodes made before the redundant layout
COPIES = ("env.1", "env.2")  # directories, each with BLOCK and SUM
BLOCK = "bootenv"
SUM = "bootenv.sum"
COUNTER = "bootcount"
LAYOUT = 2  # grub.cfg says "maculaos-boot-layout: 2": GRUB reads env.N/ and bootcount
LAYOUT_MARKER = f"maculaos-boot-layout: {LAYOUT}".encode()
HEADER = b"# GRUB Environment Block\n"
SIZE = 1024
SECTOR = 512
MAX_TRIES_LIMIT = 9  # GRUB has no arithmetic: grub.cfg counts by string matching, one digit
_VALUE = re.compile(r"[A-Za-z0-9 ._-]*")
# GRUB compares numbers as 32-bit ints and reads a leading 0 as octal: 0, or 1-9 digits
_SEQ = re.compile(r"0|[1-9][0-9]{0,8}")
_DIGIT = re.compile(r"[0-9]")


class BootEnvError(Exception):
    pass


LOCK = Path("/run/lock/maculaos-bootenv.lock")
_held = [0]


@contextlib.contextmanager
def locked(timeout: float = 120) -> Iterator[None]:
    """One writer at a time (RAUC's backend, the health gate, a rollback, the ESP update):
    each reads, changes and writes the environment under this lock. Re-entrant within a
    process; a lock that stays taken is an error after ``timeout``, never a hung boot."""
    if _held[0]:
        _held[0] += 1
        try:
            yield
        finally:
            _held[0] -= 1
        return
    try:
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        fd = -1  # no /run/lock (a build host, a test): nothing else writes there
    try:
        deadline = time.monotonic() + timeout
        while fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BootEnvError(
                        f"the boot environment is busy ({LOCK} held for {timeout:.0f}s)"
                    ) from None
                time.sleep(0.2)
        _held[0] = 1
        try:
            yield
        finally:
            _held[0] = 0
    finally:
        if fd >= 0:
            os.close(fd)


@dataclasses.dataclass
class Slot:
    ok: bool = False
    left: int | None = None  # None: established; N: on trial with N boots left
    trial: str = dataclasses.field(default="", compare=False)  # the trial's id (redundant)

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
    # as read: the current copy's SEQ, the trial counter, and what was found damaged
    seq: int = dataclasses.field(default=0, compare=False)
    tries: dict[str, int | None] = dataclasses.field(default_factory=dict, compare=False)
    problems: list[str] = dataclasses.field(default_factory=list, compare=False)

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

    def other(self, name: str) -> str:
        return next(s for s in SLOTS if s != name)

    def established(self, name: str) -> bool:
        """Confirmed good since it was last written: OK and not on trial."""
        return self.slots[name].ok and self.slots[name].left is None

    def _forget_good(self, name: str) -> None:
        """``name`` is about to be written or put on trial: LAST_GOOD must not name it."""
        if self.last_good == name:
            other = self.other(name)
            self.last_good = other if self.established(other) else ""

    # the four RAUC bootchooser operations
    def set_primary(self, name: str, tries: int | None) -> None:
        """``tries``: boots the slot gets before GRUB falls back (None: no trial)."""
        if tries is not None:
            self._forget_good(name)
        self.order = [name] + [s for s in self.order if s != name]
        self.slots[name] = Slot(True, tries, "new" if tries is not None else "")
        self.tries[name] = tries

    def set_state(self, name: str, good: bool) -> None:
        """good: confirmed (the health gate); bad: failed, or about to be written (RAUC)."""
        if not good:
            self._forget_good(name)
        self.slots[name] = Slot(good, None)
        self.tries[name] = None
        if good:
            self.last_good = name

    # the legacy single block (A_LEFT counted down in place by GRUB)
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
        slots = {}
        for name in SLOTS:
            left_text = v.get(f"{name}_LEFT", "")
            # a count that is not one digit is read as 0 (GRUB matches digits as strings)
            left = None if left_text == "" else _digit(left_text)
            slots[name] = Slot(v.get(f"{name}_OK", "0") == "1", left)
        known = {"ORDER", "LAST_GOOD"} | {f"{s}_{k}" for s in SLOTS for k in ("OK", "LEFT")}
        return cls(_order(v), slots, _last_good(v), {k: x for k, x in v.items() if k not in known})

    # the redundant layout
    def policy(self, seq: int) -> dict[str, str]:
        out = {"SEQ": str(seq), "ORDER": " ".join(self.order), "LAST_GOOD": self.last_good}
        for name in SLOTS:
            slot = self.slots[name]
            granted = self.tries.get(name)
            tries = None if slot.left is None else (granted if granted is not None else slot.left)
            # a trial without an id (just granted) is a new trial: the counter starts at 0
            trial = str(seq) if slot.trial in ("", "new") else slot.trial
            out[f"{name}_OK"] = "1" if slot.ok else "0"
            out[f"{name}_TRIES"] = "" if tries is None else str(tries)
            out[f"{name}_TRIAL"] = trial if tries is not None else ""
        return out

    @classmethod
    def from_policy(cls, v: dict[str, str], counter: dict[str, str] | None, seq: int) -> BootEnv:
        slots: dict[str, Slot] = {}
        tries: dict[str, int | None] = {}
        for name in SLOTS:
            text = v.get(f"{name}_TRIES", "")
            trial = v.get(f"{name}_TRIAL", "")
            if text == "":
                t, left = None, None
            else:
                t = int(text) if re.fullmatch(r"[1-9]", text) else 0
                left = max(t - _spent(counter, name, trial), 0)
            tries[name] = t
            slots[name] = Slot(
                v.get(f"{name}_OK", "0") == "1", left, trial if t is not None else ""
            )
        return cls(_order(v), slots, _last_good(v), {}, seq, tries)


def _order(v: dict[str, str]) -> list[str]:
    # GRUB walks "${ORDER} A B": the slots ORDER names first, then any it left out
    order = [s for s in v.get("ORDER", "A B").split() if s in SLOTS]
    return order + [s for s in SLOTS if s not in order]


def _digit(text: str) -> int:
    return int(text) if _DIGIT.fullmatch(text) else 0


def _last_good(v: dict[str, str]) -> str:
    last_good = v.get("LAST_GOOD", "A")
    return last_good if last_good in SLOTS else ""


def _spent(counter: dict[str, str] | None, name: str, trial: str) -> int:
    """Boots GRUB spent on this trial; all of them when the counter cannot be trusted."""
    if counter is None:
        return MAX_TRIES_LIMIT
    if counter.get(f"{name}_CTR", "") != trial:
        return 0  # a new trial: GRUB has not counted a boot of it yet
    boots = counter.get(f"{name}_BOOTS", "")
    return int(boots) if _DIGIT.fullmatch(boots) else MAX_TRIES_LIMIT


def parse_block(data: bytes) -> dict[str, str]:
    if len(data) != SIZE or not data.startswith(HEADER):
        raise BootEnvError(f"not a GRUB environment block ({len(data)} bytes)")
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


def sum_line(name: str, block: bytes) -> bytes:
    return f"{hashlib.sha256(block).hexdigest()}  {name}\n".encode()


def redundant(env_dir: Path) -> bool:
    """True when GRUB reads the redundant layout: the grub.cfg in force says so (an ESP being
    updated may hold the new files before its grub.cfg switches to them); without a grub.cfg
    (tests, a bare directory), when the files are there."""
    cfg = env_dir / "grub.cfg"
    try:
        with cfg.open("rb") as f:
            m = re.search(rb"maculaos-boot-layout: (\d+)", f.read(4096))
    except FileNotFoundError:
        return any((env_dir / n).exists() for n in COPIES)
    if m and int(m[1]) > LAYOUT:
        # a newer release switched the ESP to a layout this one does not know: touch nothing
        raise BootEnvError(
            f"the ESP's boot environment is layout {int(m[1])}; this release knows {LAYOUT}"
        )
    return m is not None and int(m[1]) == LAYOUT


def migrate(env_dir: Path) -> None:
    """Write the redundant layout's files from the legacy block, keeping the state in force
    (a slot on trial keeps the boots it has left). grub.cfg is not touched: the old one keeps
    reading the legacy block until the ESP update switches it (maculaos.upgrade.esp)."""
    env = read(env_dir / LEGACY)
    counter: dict[str, str] = {}
    for name in SLOTS:
        slot = env.slots[name]
        if slot.left is not None:  # the trial goes on with the boots it has left
            slot.trial = "1"
            env.tries[name] = max(slot.left, 1) if slot.left else 1
            counter |= {f"{name}_CTR": "1", f"{name}_BOOTS": "0" if slot.left else "1"}
    block = render_block(env.policy(1))
    for name in COPIES:
        _write_copy(env_dir, name, block)
    _overwrite(env_dir / COUNTER, render_block(counter))


def read_copy(env_dir: Path, name: str) -> tuple[int, dict[str, str]]:
    """One policy copy, checked as GRUB checks it: a non-empty sum naming the block with its
    sha256 (``hashsum --check``), the block, the SEQ."""
    try:
        block = (env_dir / name / BLOCK).read_bytes()
        line = (env_dir / name / SUM).read_bytes()
    except OSError as e:
        raise BootEnvError(f"{name}: cannot read ({e.strerror})") from e
    fields = line.split()
    if (
        len(fields) != 2
        or fields[1] != BLOCK.encode()
        or (fields[0].lower() != hashlib.sha256(block).hexdigest().encode())
    ):
        raise BootEnvError(f"{name}: checksum mismatch (torn or corrupted)")
    v = parse_block(block)
    if not _SEQ.fullmatch(v.get("SEQ", "")):
        raise BootEnvError(f"{name}: no valid SEQ")
    return int(v["SEQ"]), v


def read_counter(env_dir: Path) -> dict[str, str] | None:
    try:
        return parse_block((env_dir / COUNTER).read_bytes())
    except (OSError, BootEnvError):
        return None


def current_copy(env_dir: Path) -> tuple[str | None, list[str]]:
    """The current copy's name (the valid one with the highest SEQ; copy 1 on a tie), and
    what is damaged."""
    best: tuple[int, str] | None = None
    problems = []
    for name in COPIES:
        try:
            seq, _ = read_copy(env_dir, name)
        except BootEnvError as e:
            problems.append(str(e))
            continue
        if best is None or seq > best[0]:
            best = (seq, name)
    return (best[1] if best else None), problems


def read(path: Path | None = None) -> BootEnv:
    """``path``: the ESP directory with the redundant layout, or a legacy ``grubenv`` file."""
    path = path or ENV_DIR
    if path.is_dir() and redundant(path):
        name, problems = current_copy(path)
        if name is None:
            raise BootEnvError(
                "both copies of the boot environment are damaged: " + "; ".join(problems)
            )
        seq, v = read_copy(path, name)
        counter = read_counter(path)
        if counter is None:
            problems.append(f"{COUNTER}: unreadable (trial boots cannot be counted)")
        env = BootEnv.from_policy(v, counter, seq)
        env.problems = problems
        return env
    legacy = _legacy(path)
    try:
        data = legacy.read_bytes()
    except OSError as e:
        raise BootEnvError(f"cannot read the GRUB environment {legacy}: {e.strerror}") from e
    return BootEnv.from_variables(parse_block(data))


def _legacy(path: Path) -> Path:
    """The single block: ``path`` itself, or the one in the ESP directory ``path``."""
    return path / LEGACY if path.is_dir() else path


def _overwrite(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` in place when it has that size (same blocks: GRUB's save_env
    finds the counter where it was), else create it; fsync either way."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size != len(data):
            os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_copy(env_dir: Path, name: str, block: bytes) -> None:
    """Block, then its sum: until the sum lands, the copy does not verify."""
    (env_dir / name).mkdir(parents=True, exist_ok=True)
    _overwrite(env_dir / name / BLOCK, block)
    _overwrite(env_dir / name / SUM, sum_line(BLOCK, block))


def write(env: BootEnv, path: Path | None = None) -> None:
    """Commit ``env``. Redundant layout: into the copy that is not current (SEQ + 1), then
    into the other (SEQ + 2), each block then checksum: a torn write leaves a whole state in
    force, and once both are written a later damage to either copy falls back to the same
    state. A damaged counter is rebuilt. Legacy block: in place, one sector."""
    path = path or ENV_DIR
    os.sync()  # whatever was written before (a slot image) reaches the disk first
    if path.is_dir() and redundant(path):
        current, _ = current_copy(path)
        seq = env.seq
        if current is not None:
            seq = max(seq, read_copy(path, current)[0])
        first = COPIES[1] if current == COPIES[0] else COPIES[0]
        if seq + 2 > 999_999_999:
            raise BootEnvError("the boot environment's sequence number is exhausted")
        policy = env.policy(seq + 1)
        _write_copy(path, first, render_block(policy))
        # the same state (trial ids included) under the next SEQ
        second = COPIES[0] if first == COPIES[1] else COPIES[1]
        _write_copy(path, second, render_block(policy | {"SEQ": str(seq + 2)}))
        if read_counter(path) is None:
            _overwrite(path / COUNTER, render_block({}))
        fresh = read(path)
        env.seq, env.slots, env.tries, env.problems = fresh.seq, fresh.slots, fresh.tries, []
        return
    legacy = _legacy(path)
    block = render_block(env.variables())
    fd = os.open(legacy, os.O_RDWR)
    try:
        if os.fstat(fd).st_size != SIZE:
            raise BootEnvError(f"{legacy} is not {SIZE} bytes; refusing to rewrite it")
        os.pwrite(fd, block, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def init(env_dir: Path) -> None:
    """The redundant layout of a fresh image: slot A good, slot B empty (both copies)."""
    env_dir.mkdir(parents=True, exist_ok=True)
    block = render_block(BootEnv.factory().policy(1))
    for name in COPIES:
        _write_copy(env_dir, name, block)
    _overwrite(env_dir / COUNTER, render_block({}))


def repair(env: BootEnv, path: Path | None = None) -> list[str]:
    """Rewrite what ``read`` found damaged (after a good boot): the stale or torn copy gets the
    current state, a damaged counter is rebuilt. Returns what was repaired."""
    if not env.problems:
        return []
    path = path or ENV_DIR
    fixed = list(env.problems)
    write(env, path)  # rewrites both copies; rebuilds a damaged counter
    return fixed


def booted_slot(cmdline: Path = Path("/proc/cmdline")) -> str | None:
    for word in cmdline.read_text().split():
        if word.startswith("rauc.slot="):
            name = word.split("=", 1)[1]
            return name if name in SLOTS else None
    return None


def ensure_esp(mount: Path = ESP_MOUNT) -> None:
    """Mount the ESP at /efi when nothing did (efi.mount normally has), the boot disk's only:
    bootdisk.NotOwnDisk when that disk is not known for sure."""
    import subprocess  # noqa: PLC0415

    from maculaos import bootdisk  # noqa: PLC0415

    device = bootdisk.partition(layout.ESP.name)
    if os.path.ismount(mount):
        # efi.automount: the first read mounts the ESP; a device job that timed out earlier
        # in the boot is started again by the next read, so try a few times
        for attempt in range(1, 4):
            try:
                os.listdir(mount)
                break
            except OSError as e:
                print(f"the ESP at {mount} cannot be read yet (try {attempt} of 3): {e}",
                      file=sys.stderr)  # fmt: skip
                if attempt < 3:
                    time.sleep(5)
        else:
            return  # the read that follows names the error
        # mounted on first use, maybe long after the boot: the boot disk's ESP, nothing else
        try:
            mounted, own = os.stat(mount).st_dev, os.stat(device).st_rdev
        except OSError:
            return
        if mounted != own:
            raise bootdisk.NotOwnDisk(f"{mount} holds another file system than {device}")
        return

    subprocess.run(
        [
            "mount",
            "-o",
            "flush,umask=0077",
            str(device),
            str(mount),
        ],
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


def rauc_backend(argv: list[str], path: Path | None = None) -> int:
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
    if path is None:
        ensure_esp()
        path = ENV_DIR
    with locked():
        return _backend(cmd, args, path)


def _backend(cmd: str, args: list[str], path: Path) -> int:
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
        print(f"unknown command: {' '.join([cmd, *args])}", file=sys.stderr)
        return 2
    write(env, path)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["init"] and len(argv) == 2:
        init(Path(argv[1]))
        return 0
    return rauc_backend(argv)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as e:  # NotOwnDisk, BootEnvError, OSError: one line for RAUC's log
        print(f"maculaos bootchooser: {e}", file=sys.stderr)
        sys.exit(1)
