"""Issue 9 items 3 and 4 on the GRUB side: the image's real grub.cfg, run in grub-emu against
an ESP image (tests/support/grubemu.py), chooses the same slot as ``bootenv.BootEnv.choose``
for any boot environment, damaged or not; counts trial boots as Python reads them; and boots a
completely written slot whatever copy is zeroed, filled with garbage or torn half old/half new
at any step of an install."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maculaos.upgrade import bootenv
from maculaos.upgrade.bootenv import BLOCK, COPIES, COUNTER, SUM
from tests.support import grubemu


@pytest.fixture(scope="module")
def esp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grubemu.Esp]:
    if shutil.which("grub-emu") is None:
        pytest.fail("grub-emu is missing: run scripts/setup-host.sh (it installs it)")
    e = grubemu.Esp(tmp_path_factory.mktemp("esp"))
    yield e
    e.cleanup()


def python_view(files: dict[str, bytes], where: Path) -> bootenv.BootEnv | None:
    try:
        return bootenv.read(grubemu.write_dir(files, where))
    except bootenv.BootEnvError:
        return None


def copy(name: str, variables: dict[str, str]) -> dict[str, bytes]:
    block = bootenv.render_block(variables)
    return {f"{name}/{BLOCK}": block, f"{name}/{SUM}": bootenv.sum_line(BLOCK, block)}


POLICY = st.fixed_dictionaries(
    {
        "ORDER": st.lists(st.sampled_from(["A", "B", "X", "a", "AB"]), max_size=3).map(" ".join),
        "A_OK": st.sampled_from(["1", "0", "", "2", "x"]),
        "B_OK": st.sampled_from(["1", "0", "", "2", "x"]),
        "A_TRIES": st.sampled_from(["", "", "0", "1", "2", "3", "9", "10", "x"]),
        "B_TRIES": st.sampled_from(["", "", "0", "1", "2", "3", "9", "10", "x"]),
        "A_TRIAL": st.sampled_from(["", "5", "7"]),
        "B_TRIAL": st.sampled_from(["", "5", "7"]),
        "LAST_GOOD": st.sampled_from(["A", "B", "", "C"]),
    }
)
COUNT = st.sampled_from(["", "0", "1", "2", "8", "9", "10", "x"])
COUNTER_BLOCK = st.one_of(
    st.just(b""),  # missing
    st.just(b"\0" * 1024),  # zeroed
    st.binary(min_size=1024, max_size=1024),  # garbage
    st.fixed_dictionaries(
        {"A_CTR": st.sampled_from(["", "5", "7"]), "A_BOOTS": COUNT,
         "B_CTR": st.sampled_from(["", "5", "7"]), "B_BOOTS": COUNT}
    ).map(bootenv.render_block),
)  # fmt: skip
DAMAGE = st.sampled_from(
    ["none", "none", "zero", "garbage", "sum", "missing", "seq", "octal", "empty-sum",
     "other-sum", "short", "torn"]
)  # fmt: skip


def _damaged(name: str, files: dict[str, bytes], how: str) -> dict[str, bytes]:
    files = dict(files)
    block, total = f"{name}/{BLOCK}", f"{name}/{SUM}"
    other = COPIES[name == COPIES[0]]
    if how == "zero":
        files[block] = b"\0" * len(files[block])
    elif how == "garbage":
        files[block] = bytes((i * 37 + 11) % 256 for i in range(len(files[block])))
    elif how == "sum":
        files[total] = b"0" * 64 + f"  {BLOCK}\n".encode()
    elif how == "missing":
        del files[block]
    elif how == "seq":  # a valid block and sum, but a SEQ GRUB must not trust
        files.update(copy(name, bootenv.parse_block(files[block]) | {"SEQ": "12345678901"}))
    elif how == "octal":  # GRUB's test reads 010 as 8
        files.update(copy(name, bootenv.parse_block(files[block]) | {"SEQ": "010"}))
    elif how == "empty-sum":  # hashsum --check of an empty list succeeds
        files[total] = b""
    elif how == "other-sum":  # the other copy's sum (as a misdirected write could leave)
        files[total] = files.get(f"{other}/{SUM}", b"")
    elif how == "short":
        files[block] = files[block][:512]
    elif how == "torn":  # first half of the variables from another state, rest as written
        body = len(files[block].rstrip(b"#"))
        source = files.get(f"{other}/{BLOCK}", b"\0" * len(files[block]))
        files[block] = source[: body // 2] + files[block][body // 2 :]
    return files


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    p1=POLICY, p2=POLICY, seq1=st.integers(1, 12), seq2=st.integers(1, 12),
    d1=DAMAGE, d2=DAMAGE, counter=COUNTER_BLOCK,
)  # fmt: skip
def test_item4_grub_and_python_agree_on_any_environment(
    esp: grubemu.Esp, tmp_path_factory: pytest.TempPathFactory,
    p1: dict[str, str], p2: dict[str, str], seq1: int, seq2: int, d1: str, d2: str,
    counter: bytes,
) -> None:  # fmt: skip
    files = copy(COPIES[0], {"SEQ": str(seq1), **p1}) | copy(COPIES[1], {"SEQ": str(seq2), **p2})
    files = _damaged(COPIES[1], _damaged(COPIES[0], files, d1), d2)
    if counter:
        files[COUNTER] = counter
    where = tmp_path_factory.mktemp("py")
    before = python_view(files, where)
    esp.load(files)
    grub = esp.boot()
    if before is None:  # both copies damaged: GRUB boots slot A, Python refuses to guess
        assert grub.chosen == "A", grub.output
        return
    chosen, fallback = before.choose()
    assert (grub.chosen, grub.recovery) == (chosen, before.recovery(chosen)), grub.output
    after = python_view(esp.files(), where)
    assert after is not None
    for name in bootenv.SLOTS:
        was, now = before.slots[name].left, after.slots[name].left
        if name == chosen and not fallback and was is not None:
            assert now == was - 1, (name, was, now, grub.output)  # GRUB spent one try
        else:
            assert now == was, (name, was, now, grub.output)


class Node:
    """A node's ESP driven through RAUC's backend (Python) and booted by GRUB (grub-emu);
    every state it passes through is kept, with the slots whose data is complete."""

    def __init__(self, esp: grubemu.Esp, work: Path) -> None:
        self.esp, self.dir = esp, work
        bootenv.init(work)
        self.states: list[tuple[dict[str, bytes], set[str], str]] = []
        self.complete = {"A"}  # B is empty on a fresh image
        self._keep("factory")

    def _keep(self, step: str) -> None:
        self.states.append((grubemu.read_dir(self.dir), set(self.complete), step))

    def backend(self, *argv: str) -> None:
        assert bootenv.rauc_backend(list(argv), self.dir) == 0
        self._keep(" ".join(argv))

    def write_slot(self, name: str) -> None:
        self.complete.discard(name)
        self._keep(f"writing {name}")

    def slot_written(self, name: str) -> None:
        self.complete.add(name)

    def grub(self) -> str:
        self.esp.load(grubemu.read_dir(self.dir))
        chosen = self.esp.boot().chosen
        grubemu.write_dir(self.esp.files(), self.dir)
        self._keep(f"GRUB boots {chosen}")
        return chosen


def _install(node: Node, target: str, monkeypatch: pytest.MonkeyPatch, booted: str) -> None:
    monkeypatch.setattr(bootenv, "booted_slot", lambda *a: booted)
    node.backend("set-state", target, "bad")
    node.write_slot(target)
    node.slot_written(target)
    node.backend("set-primary", target)


def _damage_every_step(esp: grubemu.Esp, node: Node, work: Path) -> int:
    """After every step, each file in turn zeroed, garbage, or torn (inside its written bytes:
    first half new, rest as before the step): GRUB boots a slot whose data is complete and
    agrees with Python."""
    runs = 0
    for (prev, _, _), (files, complete, step) in zip(node.states, node.states[1:], strict=False):
        for name in sorted(files):
            for how in ("zero", "garbage", "torn"):
                bad = dict(files)
                data = files[name]
                if how == "zero":
                    bad[name] = b"\0" * len(data)
                elif how == "garbage":
                    bad[name] = bytes((i * 91 + 7) % 256 for i in range(len(data)))
                else:
                    old = prev.get(name, b"\0" * len(data))
                    half = len(data.rstrip(b"#")) // 2
                    bad[name] = data[:half] + old[half : len(data)]
                py = python_view(bad, work / "py")
                esp.load(bad)
                grub = esp.boot()
                runs += 1
                assert grub.chosen in complete, (step, name, how, grub.output)
                assert py is not None and grub.chosen == py.choose()[0], (step, name, how)
    print(f"{runs} damaged boot environments booted by grub-emu, each on a complete slot")
    return runs


def test_item4_every_damage_at_every_step_of_an_install_boots_a_complete_slot(
    esp: grubemu.Esp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A → B (confirmed), then B → A that never becomes healthy (3 tries, back to B)."""
    monkeypatch.setattr(bootenv, "_max_tries", lambda: 3)
    node = Node(esp, tmp_path / "node")
    _install(node, "B", monkeypatch, booted="A")
    assert node.grub() == "B"
    node.backend("set-state", "B", "good")
    _install(node, "A", monkeypatch, booted="B")
    assert [node.grub() for _ in range(4)] == ["A", "A", "A", "B"]  # 3 tries, then back
    assert _damage_every_step(esp, node, tmp_path) > 100


def test_item4_an_install_into_a_pending_rollback_target_never_boots_it_torn(
    esp: grubemu.Esp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running B with A established; `--rollback` made A primary; then (by hand: the CLI
    refuses it) RAUC installs into A. No damage to any copy may bring back the state in
    which A, now being written, is the established primary."""
    monkeypatch.setattr(bootenv, "_max_tries", lambda: 3)
    node = Node(esp, tmp_path / "node")
    _install(node, "B", monkeypatch, booted="A")
    assert node.grub() == "B"
    node.backend("set-state", "B", "good")
    node.slot_written("A")
    node.backend("set-primary", "A")  # booted B: no trial (a rollback)
    _install(node, "A", monkeypatch, booted="B")
    assert _damage_every_step(esp, node, tmp_path) > 50


def test_item4_python_reports_and_repairs_a_damaged_copy(tmp_path: Path) -> None:
    bootenv.init(tmp_path)
    env = bootenv.read(tmp_path)
    env.set_state("B", False)
    bootenv.write(env, tmp_path)  # SEQ 2 in env.2, then SEQ 3 in env.1
    (tmp_path / "env.2" / BLOCK).write_bytes(b"\0" * 1024)
    (tmp_path / COUNTER).write_bytes(b"garbage")
    env = bootenv.read(tmp_path)
    assert env.seq == 3
    assert any("env.2: checksum mismatch" in p for p in env.problems)
    assert any("bootcount: unreadable" in p for p in env.problems)
    fixed = bootenv.repair(env, tmp_path)
    assert len(fixed) == 2
    again = bootenv.read(tmp_path)
    assert again.problems == [] and again.seq == 5
    assert bootenv.current_copy(tmp_path) == ("env.1", [])


def test_item4_a_write_goes_to_the_copy_not_in_force_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootenv.init(tmp_path)
    order: list[str] = []
    real = bootenv._overwrite

    def record(path: Path, data: bytes) -> None:
        order.append(f"{path.parent.name}/{path.name}")
        real(path, data)

    monkeypatch.setattr(bootenv, "_overwrite", record)
    for _ in range(2):
        env = bootenv.read(tmp_path)
        env.set_state("B", False)
        bootenv.write(env, tmp_path)
    assert order == [
        "env.2/bootenv", "env.2/bootenv.sum", "env.1/bootenv", "env.1/bootenv.sum",  # 1 → 2, 3
        "env.2/bootenv", "env.2/bootenv.sum", "env.1/bootenv", "env.1/bootenv.sum",  # 3 → 4, 5
    ]  # fmt: skip
    assert bootenv.read(tmp_path).seq == 5


@pytest.mark.parametrize("cut_after", range(4))
def test_item4_a_power_cut_during_a_write_leaves_a_whole_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_after: int
) -> None:
    """set-state B bad (RAUC, before writing B), cut after 0-3 of the four file writes: the
    state in force is the old one or the new one, never a mix, and B is never bootable
    once the new state has landed in any copy."""
    bootenv.init(tmp_path)
    env = bootenv.read(tmp_path)
    env.set_primary("B", None)  # B established and primary (e.g. after a rollback)
    bootenv.write(env, tmp_path)
    real = bootenv._overwrite
    done = [0]

    def cut(path: Path, data: bytes) -> None:
        if done[0] == cut_after:
            raise OSError("power cut")
        done[0] += 1
        real(path, data)

    monkeypatch.setattr(bootenv, "_overwrite", cut)
    env = bootenv.read(tmp_path)
    env.set_state("B", False)
    with pytest.raises(OSError):
        bootenv.write(env, tmp_path)
    monkeypatch.setattr(bootenv, "_overwrite", real)
    after = bootenv.read(tmp_path)
    if cut_after < 2:  # the first copy's sum did not land: the old state
        assert after.choose() == ("B", False)
    else:
        assert after.choose() == ("A", False) and not after.slots["B"].ok


@pytest.mark.parametrize(
    ("tries", "ctr", "boots", "expect"),
    [
        ("3", "7", "2", "B"),  # one boot left
        ("3", "7", "3", "A"),  # spent
        ("3", "5", "9", "B"),  # the counter counts another trial: this one starts at 0
        ("0", "7", "0", "A"),  # not a try count
        ("10", "7", "0", "A"),  # two digits: GRUB could not count it down
        ("05", "7", "0", "A"),
        ("x", "7", "0", "A"),
        ("3", "7", "10", "A"),  # a count GRUB cannot increment
        ("3", "7", "x", "A"),
        ("3", "7", "", "A"),
    ],
)
def test_item4_junk_counts_never_boot_a_trial_slot(
    esp: grubemu.Esp, tmp_path: Path, tries: str, ctr: str, boots: str, expect: str
) -> None:
    policy = {"SEQ": "9", "ORDER": "B A", "A_OK": "1", "B_OK": "1", "A_TRIES": "",
              "B_TRIES": tries, "B_TRIAL": "7", "LAST_GOOD": "A"}  # fmt: skip
    files = copy(COPIES[0], policy) | copy(COPIES[1], policy | {"SEQ": "8"})
    files[COUNTER] = bootenv.render_block({"B_CTR": ctr, "B_BOOTS": boots})
    py = python_view(files, tmp_path)
    esp.load(files)
    grub = esp.boot()
    assert py is not None and py.choose()[0] == expect
    assert grub.chosen == expect, grub.output


@pytest.mark.parametrize("how", ["empty-sum", "other-sum", "octal", "short", "torn", "seq"])
def test_item4_a_newer_copy_that_does_not_verify_is_never_trusted(
    esp: grubemu.Esp, tmp_path: Path, how: str
) -> None:
    """Copy 2 is newer and names B; damaged, GRUB and Python both stay on copy 1 (A)."""
    old = {"SEQ": "5", "ORDER": "A B", "A_OK": "1", "B_OK": "1", "LAST_GOOD": "A"}
    new = {"SEQ": "6", "ORDER": "B A", "A_OK": "0", "B_OK": "1", "LAST_GOOD": "B"}
    files = _damaged(COPIES[1], copy(COPIES[0], old) | copy(COPIES[1], new), how)
    py = python_view(files, tmp_path)
    esp.load(files)
    grub = esp.boot()
    assert py is not None and py.choose()[0] == "A"
    assert grub.chosen == "A", grub.output
