"""The GRUB environment block and the RAUC custom backend over it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maculaos.upgrade import bootenv
from maculaos.upgrade.bootenv import BootEnv, Slot


@pytest.fixture
def envfile(tmp_path: Path) -> Path:
    """A block made by grub-editenv, as the image build makes it."""
    path = tmp_path / "grubenv"
    subprocess.run(
        ["grub-editenv", str(path), "set", "ORDER=A B", "A_OK=1", "B_OK=0", "A_LEFT=", "B_LEFT=",
         "LAST_GOOD=A"],
        check=True,
    )  # fmt: skip
    return path


def test_reads_what_grub_editenv_wrote(envfile: Path) -> None:
    env = bootenv.read(envfile)
    assert env.order == ["A", "B"]
    assert env.slots["A"] == Slot(True, None)
    assert env.slots["B"] == Slot(False, None)
    assert env.choose() == ("A", False)


def test_write_is_in_place_and_grub_editenv_reads_it(envfile: Path) -> None:
    inode = envfile.stat().st_ino
    env = bootenv.read(envfile)
    env.set_primary("B", 3)
    bootenv.write(env, envfile)
    assert envfile.stat().st_ino == inode and envfile.stat().st_size == 1024
    listed = subprocess.run(
        ["grub-editenv", str(envfile), "list"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "ORDER=B A" in listed and "B_OK=1" in listed and "B_LEFT=3" in listed


def test_install_trial_and_fallback_sequence(envfile: Path) -> None:
    """What RAUC does on install, then three boots that never get marked good."""
    assert bootenv.rauc_backend(["set-state", "B", "bad"], envfile) == 0
    assert bootenv.read(envfile).choose() == ("A", False)  # half-written B is never booted
    env = bootenv.read(envfile)
    env.set_primary("B", 3)
    bootenv.write(env, envfile)
    for left in (2, 1, 0):  # GRUB takes one try per boot
        env = bootenv.read(envfile)
        assert env.choose() == ("B", False)
        env.slots["B"].left = left
        bootenv.write(env, envfile)
    assert bootenv.read(envfile).choose() == ("A", False)  # tries spent: back to A


def test_mark_good_ends_the_trial(envfile: Path) -> None:
    env = bootenv.read(envfile)
    env.set_primary("B", 3)
    env.set_state("B", True)
    assert env.slots["B"] == Slot(True, None) and env.last_good == "B"
    assert env.choose() == ("B", False)


def test_nothing_bootable_falls_back_to_last_good_only_when_it_is_ok() -> None:
    env = BootEnv(["B", "A"], {"A": Slot(True, 0), "B": Slot(True, 0)}, "A")
    assert env.choose() == ("A", True)
    # a LAST_GOOD that names a bad (failed or half-written) slot is never booted
    env = BootEnv(["B", "A"], {"A": Slot(False, None), "B": Slot(True, 0)}, "A")
    assert env.choose() == ("B", True)
    env = BootEnv(["B", "A"], {"A": Slot(False, None), "B": Slot(False, None)}, "")
    assert env.choose() == ("B", True)


def test_backend_get_state_and_primary(envfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bootenv.rauc_backend(["get-state", "A"], envfile) == 0
    assert bootenv.rauc_backend(["get-state", "B"], envfile) == 0
    assert bootenv.rauc_backend(["get-primary"], envfile) == 0
    assert capsys.readouterr().out.split() == ["good", "bad", "A"]


def test_backend_rejects_unknown_slot_and_command(envfile: Path) -> None:
    before = envfile.read_bytes()
    assert bootenv.rauc_backend(["set-state", "C", "good"], envfile) == 2
    assert bootenv.rauc_backend(["set-state", "A", "maybe"], envfile) == 2
    assert envfile.read_bytes() == before


def test_refuses_a_file_that_is_not_a_block(tmp_path: Path) -> None:
    bad = tmp_path / "grubenv"
    bad.write_bytes(b"hello")
    with pytest.raises(bootenv.BootEnvError, match="not a GRUB environment block"):
        bootenv.read(bad)


def test_refuses_values_grub_could_misread() -> None:
    with pytest.raises(bootenv.BootEnvError, match="refusing"):
        bootenv.render_block({"ORDER": "A\nB_OK=1"})


@given(
    order=st.permutations(["A", "B"]),
    oks=st.tuples(st.booleans(), st.booleans()),
    lefts=st.tuples(st.none() | st.integers(0, 9), st.none() | st.integers(0, 9)),
    last_good=st.sampled_from(["A", "B", ""]),
)
def test_roundtrip_fits_one_sector_and_always_boots_something(
    order: list[str],
    oks: tuple[bool, bool],
    lefts: tuple[int | None, int | None],
    last_good: str,
) -> None:
    env = BootEnv(
        list(order), {"A": Slot(oks[0], lefts[0]), "B": Slot(oks[1], lefts[1])}, last_good
    )
    block = bootenv.render_block(env.variables())
    assert len(block) == 1024 and block[512:] == b"#" * 512
    again = BootEnv.from_variables(bootenv.parse_block(block))
    assert again == env
    chosen, fallback = env.choose()
    if any(s.bootable for s in env.slots.values()):
        assert not fallback and env.slots[chosen].bootable
    elif any(s.ok for s in env.slots.values()):
        assert fallback and env.slots[chosen].ok
    else:
        assert fallback and chosen == env.order[0]
