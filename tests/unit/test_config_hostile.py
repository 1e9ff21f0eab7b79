"""Issue 9 item 8: hostile or malformed config files get a clear error in bounded time and
memory (aliases, deep nesting, bad encodings, duplicate keys, huge files), and the boot unit
cannot hang on them."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maculaos.config import engine, fastpath, layers
from maculaos.config.applicators import Target
from maculaos.config.validate import parse, validate

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 1 << 20  # the documented limit (validate.MAX_BYTES)
UNIT = REPO / "ansible/roles/base/templates/etc/systemd/system/maculaos-config.service.j2"
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def timed_parse(data: str | bytes) -> tuple[Any, list[str], float]:
    start = time.monotonic()
    doc, errors = parse(data, "config.yaml")
    return doc, errors, time.monotonic() - start


def test_item8_alias_expansion_is_refused_quickly() -> None:
    doc, errors, took = timed_parse(BILLION_LAUGHS)
    assert doc is None and took < 1
    assert errors == [
        "config.yaml: invalid YAML at line 2, column 8: aliases (*name) are not allowed; "
        "write the value out"
    ]


DEEP = {
    "flow-sequence": "[" * 100_000,
    "flow-mapping": "{a: " * 50_000,
    "block-mapping": "".join("  " * i + "a:\n" for i in range(100)),
    "block-sequence": "- " * 1000 + "x\n",
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_item8_deep_nesting_is_an_error_not_a_recursion_error(text: str) -> None:
    doc, errors, took = timed_parse(text)
    assert doc is None and took < 2
    assert "nested deeper than 32 levels" in errors[0]


def test_item8_duplicate_keys_name_the_key_and_both_lines() -> None:
    text = "maculaos:\n  timezone: UTC\n  keyboard: de\n  timezone: Europe/Berlin\n"
    doc, errors, _ = timed_parse(text)
    assert doc is None
    assert errors == [
        "config.yaml: invalid YAML at line 4, column 3: duplicate key 'timezone' (first at line 2)"
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"maculaos:\n  timezone: \xff\xfeUTC\n", "is not UTF-8 text: byte 0xff at line 2, col"),
        ("maculaos: {}\n".encode("utf-16"), "is UTF-16 encoded (byte order mark)"),
        ("maculaos: {}\n".encode("utf-32"), "is UTF-32 encoded (byte order mark)"),
        (b"maculaos:\n  x: \x00\n", "contains a NUL byte at line 2, column 6"),
        (b"maculaos: \x07\n", "invalid YAML at line 1, column 11: special characters"),
        (b"a: 1\n" * (MAX_BYTES // 4), "is larger than 1024 KiB (the limit for a config file)"),
        (b"a: " + b"1" * 5000 + b"\n", "invalid YAML at line 1, column 4: bad value: Exceeds"),
    ],
    ids=["latin-1", "utf-16", "utf-32", "nul", "control", "huge", "5000-digits"],
)
def test_item8_bad_encodings_and_sizes_are_clear_errors(data: bytes, message: str) -> None:
    doc, errors, took = timed_parse(data)
    assert doc is None and took < 1
    assert len(errors) == 1 and errors[0].startswith("config.yaml: ") and message in errors[0]


def test_item8_a_utf8_bom_and_dates_are_fine() -> None:
    doc, errors, _ = timed_parse(b"\xef\xbb\xbfmaculaos: {timezone: UTC, x: 2001-13-45}\n")
    assert errors == [] and doc == {"maculaos": {"timezone": "UTC", "x": "2001-13-45"}}


def test_item8_base_60_numbers_cost_nothing() -> None:
    doc, errors, took = timed_parse("a: " + "1:" * 300_000 + "1\n")  # quadratic as an int
    assert took < 2 and errors == [] and isinstance(doc["a"], str)


@pytest.mark.parametrize("kind", ["fifo", "device", "huge", "directory"])
def test_item8_files_that_could_block_or_flood_are_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "huge":
        with path.open("wb") as f:
            f.truncate(10 * MAX_BYTES)
    else:
        path.mkdir()
    done: list[layers.Effective] = []
    worker = threading.Thread(
        target=lambda: done.append(layers.load(path, tmp_path / "none.yaml", None, None)),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    assert done, "reading the config file did not return"
    eff = done[0]
    assert eff.node == "defaults" and len(eff.errors) == 1
    assert eff.errors[0].startswith(f"{path}: ")
    assert "is not a regular file" in eff.errors[0] or "larger than 1024 KiB" in eff.errors[0]


def test_item8_a_hostile_node_file_leaves_the_node_on_the_last_good_one(tmp_path: Path) -> None:
    node, good = tmp_path / "config.yaml", tmp_path / "last-good.yaml"
    good.write_text("maculaos: {timezone: Europe/Berlin}\n")
    node.write_text(BILLION_LAUGHS)
    eff = layers.load(node, tmp_path / "none.yaml", None, good)
    assert eff.node == "last-good" and eff.values["maculaos.timezone"] == "Europe/Berlin"
    assert "aliases (*name) are not allowed" in eff.errors[0]


def test_item8_the_config_unit_has_a_start_timeout() -> None:
    unit = UNIT.read_text()
    assert "TimeoutStartSec=90s" in unit
    assert "WantedBy=sysinit.target" in unit and "RequiredBy" not in unit


def test_item8_boot_stops_a_hung_apply_and_still_succeeds(tmp_path: Path) -> None:
    """boot.sh bounds the full apply (a hung modprobe or run_cmd) and exits 0 with a banner."""
    stub = tmp_path / "maculaos-stub"
    stub.write_text("#!/bin/sh\nsleep 30\n")
    stub.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "MACULAOS_STATE": str(tmp_path / "state"),
        "MACULAOS_NODE_CONFIG": str(tmp_path / "config.yaml"),
        "MACULAOS_CMDLINE": "/nonexistent/cmdline",
        "MACULAOS_BIN": str(stub),
        "MACULAOS_APPLY_TIMEOUT": "1",
        "MACULAOS_RUN": str(tmp_path / "run"),
    }
    script = Path(fastpath.__file__).with_name("boot.sh")
    start = time.monotonic()
    r = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and time.monotonic() - start < 10
    assert "did not finish within 1s and was stopped" in r.stderr
    assert "did not finish" in (tmp_path / "run/motd.d/50-maculaos-config").read_text()
    # `config status` says so until an apply finishes
    p = engine.Paths(node_config=tmp_path / "config.yaml", state=tmp_path / "state")
    assert any("did not finish within 1s" in e for e in engine.read_status(p)["errors"])
    engine.apply(p, Target(root=tmp_path, live=False, sysfs_net=tmp_path / "net"))
    assert not any("did not finish" in e for e in engine.read_status(p)["errors"])


def test_item8_boot_skips_the_fast_path_for_a_fifo(tmp_path: Path) -> None:
    """sha256sum of a FIFO would block: boot.sh leaves such a file to Python's error."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "config-fastpath").write_text("0" * 64 + " /nonexistent\n")
    os.mkfifo(tmp_path / "config.yaml")
    stub = tmp_path / "maculaos-stub"
    stub.write_text("#!/bin/sh\necho FULL APPLY\n")
    stub.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "MACULAOS_STATE": str(state),
        "MACULAOS_NODE_CONFIG": str(tmp_path / "config.yaml"),
        "MACULAOS_CMDLINE": "/nonexistent/cmdline",
        "MACULAOS_BIN": str(stub),
    }
    script = Path(fastpath.__file__).with_name("boot.sh")
    r = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, check=False, timeout=20
    )
    assert "FULL APPLY" in r.stdout


# --- property tests: nasty documents of every kind; parse answers quickly and never raises

names = st.sampled_from(["a", "b", "maculaos", "timezone", "x", "1", "true", "<<"])
scalars = st.sampled_from(["1", "x", "2001-13-45", "1:2:3", "0x1f", "~", "'q'", '"\\x00"', "1e999"])


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    width, levels = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@st.composite
def nested(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 3000))
    if draw(st.booleans()):
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("- ", "")]))
        return opener * depth + draw(scalars) + closer * depth
    return "".join("  " * i + f"{draw(names)}:\n" for i in range(min(depth, 300))) + "  x"


@st.composite
def duplicates(draw: st.DrawFn) -> str:
    keys = draw(st.lists(names, min_size=1, max_size=8))
    indent = draw(st.sampled_from(["", "  "]))
    body = "".join(f"{indent}{k}: {draw(scalars)}\n" for k in keys)
    return ("top:\n" + body) if indent else body


@st.composite
def odd_bytes(draw: st.DrawFn) -> bytes:
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00"]))
    body = draw(st.binary(max_size=200))
    text = draw(st.text(max_size=50)).encode(
        draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), "replace"
    )
    return prefix + draw(st.sampled_from([body, text, b"a: " + body, text + b"\x00"]))


@st.composite
def huge(draw: st.DrawFn) -> bytes:
    unit = draw(st.sampled_from([b"a: 1\n", b"[1,", b"- x\n", b"k: &k v\n", b"#\n", b"1:"]))
    size = draw(st.integers(MAX_BYTES // 2, 2 * MAX_BYTES))
    return (unit * (size // len(unit) + 1))[:size]


hostile = alias_bombs() | nested() | duplicates() | odd_bytes() | huge() | st.text(max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile)
def test_item8_hostile_input_gets_an_answer_in_bounded_time(data: str | bytes) -> None:
    doc, errors, took = timed_parse(data)
    assert took < 5, f"parse took {took:.1f}s"
    if errors:
        assert doc is None and len(errors) == 1 and errors[0].startswith("config.yaml: ")
    else:
        validate(doc)  # whatever parsed is a plain document the schema can judge
