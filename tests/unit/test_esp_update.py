"""Issue 9 item 5: the ESP follows the confirmed release's boot logic. A node whose ESP was
made before the redundant boot environment (its grub.cfg and single grubenv block, kept in
tests/fixtures) is brought to this release's grub.cfg and modules without changing which
slot boots, and a power cut at any step of that update leaves an ESP that GRUB (grub-emu,
with whichever grub.cfg is on the ESP) boots the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from maculaos.upgrade import bootenv, esp
from maculaos.upgrade.bootenv import BootEnv, Slot
from tests.support import grubemu

OLD_CFG = grubemu.render(Path(__file__).parents[1] / "fixtures/grub.cfg-before-issue-9.j2")
NEW_CFG = grubemu.render()
MODULES = ("crypto", "hashsum", "gcry_sha256")

LEGACY_STATES = {
    "fresh": BootEnv(["A", "B"], {"A": Slot(True, None), "B": Slot(False, None)}, "A"),
    "upgraded to B": BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, None)}, "B"),
    "B on trial": BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 2)}, "A"),
    "B tries spent": BootEnv(["B", "A"], {"A": Slot(True, None), "B": Slot(True, 0)}, "A"),
    "A failed": BootEnv(["B", "A"], {"A": Slot(False, None), "B": Slot(True, None)}, "B"),
}


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grubemu.Esp]:
    e = grubemu.Esp(tmp_path_factory.mktemp("esp"))
    yield e
    e.cleanup()


def content(root: Path) -> Path:
    """What a slot of this release carries in /usr/lib/maculaos/esp."""
    (root / "EFI/maculaos/x86_64-efi").mkdir(parents=True)
    (root / "EFI/BOOT").mkdir(parents=True)
    (root / "EFI/maculaos/grub.cfg").write_text(NEW_CFG)
    for m in MODULES:
        (root / f"EFI/maculaos/x86_64-efi/{m}.mod").write_bytes(f"module {m}".encode())
    (root / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"new GRUB core")
    return root


def old_esp(root: Path, env: BootEnv) -> Path:
    """An ESP as images before issue 9 made it, in state ``env``."""
    (root / "EFI/maculaos").mkdir(parents=True)
    (root / "EFI/BOOT").mkdir(parents=True)
    (root / "EFI/maculaos/grub.cfg").write_text(OLD_CFG)
    (root / "EFI/maculaos/grubenv").write_bytes(bootenv.render_block(env.variables()))
    (root / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"old GRUB core")
    return root


def grub_decides(emu: grubemu.Esp, root: Path) -> str:
    env_dir = root / "EFI/maculaos"
    emu.load(grubemu.read_dir(env_dir))
    return emu.boot("esp").chosen


def python_decides(root: Path) -> tuple[str, dict[str, int | None]]:
    env = bootenv.read(root / "EFI/maculaos")
    return env.choose()[0], {n: s.left for n, s in env.slots.items()}


@pytest.mark.parametrize("name", list(LEGACY_STATES))
def test_item5_an_old_esp_gets_the_new_boot_logic_and_keeps_its_state(
    emu: grubemu.Esp, tmp_path: Path, name: str
) -> None:
    src = content(tmp_path / "content")
    node = old_esp(tmp_path / "esp", LEGACY_STATES[name])
    before_grub = grub_decides(emu, node)
    before_py = python_decides(node)
    assert before_grub == before_py[0]
    changed = esp.sync(src, node)
    assert sorted(changed) == sorted(
        ["EFI/maculaos/grub.cfg"] + [f"EFI/maculaos/x86_64-efi/{m}.mod" for m in MODULES]
    )
    assert (node / "EFI/maculaos/grub.cfg").read_text() == NEW_CFG
    assert bootenv.redundant(node / "EFI/maculaos")
    assert (node / "EFI/BOOT/BOOTX64.EFI").read_bytes() == b"old GRUB core"  # never swapped
    assert python_decides(node) == before_py
    assert grub_decides(emu, node) == before_grub
    # code from before the switch fails closed instead of writing a block GRUB ignores
    assert not (node / "EFI/maculaos/grubenv").exists()
    assert (node / "EFI/maculaos/grubenv.before-layout-2").exists()
    assert esp.sync(src, node) == []  # idempotent


def test_item5_a_write_cut_short_is_cleaned_up(tmp_path: Path) -> None:
    src = content(tmp_path / "content")
    node = old_esp(tmp_path / "esp", LEGACY_STATES["fresh"])
    (node / "EFI/maculaos/grub.cfg.maculaos-new").write_text("half a grub.cfg")
    esp.sync(src, node)
    assert not list(node.rglob("*.maculaos-new"))
    assert (node / "EFI/maculaos/grub.cfg").read_text() == NEW_CFG


class PowerCut(Exception):
    pass


def test_item5_a_power_cut_at_any_step_of_the_esp_update_boots_the_same_slot(
    emu: grubemu.Esp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = LEGACY_STATES["B on trial"]
    src = content(tmp_path / "content")
    real_install, real_overwrite = esp._install, bootenv._overwrite
    budget = [0]

    def counted(real: Callable[[Path, Any], None]) -> Callable[[Path, Any], None]:
        def op(path: Path, data: Any) -> None:
            if budget[0] == 0:
                raise PowerCut
            budget[0] -= 1
            real(path, data)

        return op

    monkeypatch.setattr(esp, "_install", counted(real_install))
    monkeypatch.setattr(bootenv, "_overwrite", counted(real_overwrite))
    cuts = 0
    for k in range(100):
        node = old_esp(tmp_path / f"esp{k}", state)
        expect = grub_decides(emu, node)
        budget[0] = k
        try:
            esp.sync(src, node)
        except PowerCut:
            cuts += 1
            assert grub_decides(emu, node) == expect, k
            assert python_decides(node)[0] == expect, k
            budget[0] = 1000  # power back: the next good boot finishes the update
            esp.sync(src, node)
            assert (node / "EFI/maculaos/grub.cfg").read_text() == NEW_CFG
            assert grub_decides(emu, node) == expect
            continue
        break
    assert cuts >= 8  # 3 modules + 5 environment files + grub.cfg
