"""Run the image's real grub.cfg in grub-emu (GRUB built as a userspace program) against an
ESP image file: which slot GRUB chooses and what it writes to its boot counter, with GRUB's
own hashsum, load_env, save_env and script interpreter.

The ESP is a FAT image that grub-emu sees as ``(hd0)`` through a device map, so ``save_env``
writes the counter in place as it does on a node. The script is grub.cfg up to its menu
entries (nothing is booted) plus one line that prints the decision. The host's grub-emu is
Debian 12's GRUB 2.06, the image's GRUB is 2.12: the commands used here behave the same in
both; the VM tier boots the real thing.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "ansible/roles/image/templates/esp/EFI/maculaos/grub.cfg.j2"
ENV_DIR = "EFI/maculaos"
RESULT = re.compile(r"RESULT chosen=(\S*) default=(\S*) recovery=(\S*)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def render(template: Path = TEMPLATE) -> str:
    """grub.cfg as the image role writes it."""
    return jinja2.Template(template.read_text(), keep_trailing_newline=True).render(
        image_arch="amd64", _image_console={"amd64": "ttyS0"}, image_cmdline_extra="quiet"
    )


def script(cfg: str | None = None) -> str:
    """A grub.cfg (default: the image's) up to its menu entries, plus the decision line."""
    text = cfg if cfg is not None else render()
    logic = text[: text.index("\nmenuentry ")]
    kept = [
        line
        for line in logic.splitlines()
        if not line.startswith(("serial ", "terminal_input ", "terminal_output "))
    ]
    return (
        f"set prefix=(hd0)/{ENV_DIR}\nset root=hd0,gpt1\n"
        + "\n".join(kept)
        + '\necho "RESULT chosen=${chosen} default=${default} recovery=${recovery_slot}"\nreboot\n'
    )


@dataclasses.dataclass
class Decision:
    chosen: str
    recovery: str
    output: str


class Esp:
    """A FAT image holding EFI/maculaos/ (files by path relative to it, subdirectories
    included), and plain directory mirrors for the Python side."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="grubemu-"))
        self.image = self.workdir / "esp.img"
        self._format()
        (self.workdir / "device.map").write_text(f"(hd0) {self.image}\n")

    def _format(self) -> None:
        self.image.unlink(missing_ok=True)
        subprocess.run(["mkfs.vfat", "-C", str(self.image), "2048"], check=True,
                       capture_output=True)  # fmt: skip
        self._m("mmd", "::/EFI", f"::/{ENV_DIR}")

    def _m(self, tool: str, *args: str) -> bytes:
        r = subprocess.run([tool, "-i", str(self.image), *args], capture_output=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {r.stderr.decode(errors='replace')}")
        return r.stdout

    def put(self, name: str, data: bytes) -> None:
        parts = name.split("/")
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            # (fails harmlessly when the directory exists)
            subprocess.run(["mmd", "-i", str(self.image), f"::/{ENV_DIR}/{sub}"],
                           capture_output=True, check=False)  # fmt: skip
        src = self.workdir / "put.tmp"
        src.write_bytes(data)
        self._m("mcopy", "-o", str(src), f"::/{ENV_DIR}/{name}")

    def names(self) -> list[str]:
        out = self._m("mdir", "-/", "-b", f"::/{ENV_DIR}").decode()
        prefix = f"::/{ENV_DIR}/"
        return sorted(
            line.strip()[len(prefix) :]
            for line in out.splitlines()
            if line.strip().startswith(prefix) and not line.strip().endswith("/")
        )

    def get(self, name: str) -> bytes:
        return self._m("mcopy", f"::/{ENV_DIR}/{name}", "-")

    def load(self, files: dict[str, bytes]) -> None:
        """A fresh ESP whose EFI/maculaos/ holds exactly ``files``."""
        self._format()
        for name, data in files.items():
            self.put(name, data)

    def files(self) -> dict[str, bytes]:
        return {name: self.get(name) for name in self.names()}

    def boot(self, cfg: str | None = None) -> Decision:
        """One pass of grub.cfg (default: the image's; ``esp``: the one on the ESP image):
        the slot it boots (and counts, when on trial)."""
        if cfg == "esp":
            cfg = self.get("grub.cfg").decode()
        (self.workdir / "grub.cfg").write_text(script(cfg))
        r = subprocess.run(
            ["grub-emu", "-d", str(self.workdir), "-r", "host", "-m",
             str(self.workdir / "device.map")],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        out = _ANSI.sub("", r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace"))
        m = RESULT.search(out)
        if not m:
            raise RuntimeError(f"grub.cfg did not reach a decision:\n{out}")
        assert m[2] == f"slot-{m[1]}", out
        return Decision(m[1], m[3], out.replace("\r", ""))

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def write_dir(files: dict[str, bytes], directory: Path) -> Path:
    """Make ``directory`` hold exactly ``files`` (paths relative to it)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def read_dir(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
