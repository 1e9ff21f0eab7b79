"""Issue 9 item 12 (config part): read-only config commands work for a normal user or say
plainly that they need root; no command prints a traceback, whatever it is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from maculaos import __main__ as cli_main
from maculaos.config import cli

BILLION_LAUGHS = b"a: &a [x, x, x, x, x, x, x, x]\n" + b"".join(
    b"%c: &%c [%s]\n" % (98 + i, 98 + i, b", ".join([b"*%c" % (97 + i)] * 8)) for i in range(9)
)


def unreadable(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """What a normal user meets: these files exist but may not be read (tests run as root)."""
    real_open = os.open
    denied = {str(p) for p in paths}

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("command", ["status", "show"])
def test_item12_read_only_commands_say_they_need_root(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    config, state = tmp_path / "config.yaml", tmp_path / "state"
    state.mkdir()
    config.write_text("maculaos: {timezone: Europe/Berlin}\n")
    (state / "config-status.json").write_text('{"used": "/var/lib/maculaos/config.yaml"}\n')
    unreadable(monkeypatch, config, state / "config-status.json")
    argv = ["config", "--config", str(config), "--state", str(state), command]
    assert cli_main.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no defaults or "never applied" shown as if they were the node's
    assert f"maculaos: error: config {command} needs root" in err
    assert f"sudo maculaos config {command}" in err


def test_item12_status_and_show_work_when_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state = tmp_path / "config.yaml", tmp_path / "state"
    config.write_text("maculaos: {timezone: Europe/Berlin}\n")
    base = ["config", "--config", str(config), "--state", str(state)]
    assert cli_main.main([*base, "status"]) == 0
    assert "never applied" in capsys.readouterr().out
    assert cli_main.main([*base, "show"]) == 0
    assert "timezone: Europe/Berlin" in capsys.readouterr().out


def test_item12_an_unexpected_error_is_one_line_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(args: Any) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "cmd_status", boom)
    assert cli_main.main(["config", "status"]) == 70
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "maculaos: internal error: RuntimeError: boom second line"
    assert "report" in err and "Traceback" not in err


def test_item12_ctrl_c_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_status", interrupted)
    assert cli_main.main(["config", "status"]) == 130
    assert capsys.readouterr().err == ""


def run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "maculaos", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_item12_hostile_arguments_and_inputs_never_print_a_traceback(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "state-file").write_text("not a directory")
    status = tmp_path / "state" / "config-status.json"
    status.parent.mkdir()
    status.write_bytes(b"\xff\xfe{[\x00")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xef\xbb\xbfmaculaos:\n  timezone: UTC\n  timezone: UTC\n")
    nowhere = str(tmp_path / "none")
    cases: list[tuple[list[str], bytes]] = [
        (["config", "validate", "-"], BILLION_LAUGHS),
        (["config", "validate", "-"], b"\xff\xfe\x00garbage"),
        (["config", "validate", "-"], b"[" * 200_000),
        (["config", "validate", "--schema-only", "-"], b"a: 1\n" * 300_000),
        (["config", "validate", str(fifo)], b""),
        (["config", "validate", str(tmp_path)], b""),
        (["config", "validate", nowhere], b""),
        (["config", "validate", str(bad)], b""),
        (["config", "--config", str(fifo), "--state", nowhere, "show"], b""),
        (["config", "--config", str(bad), "--state", nowhere, "show", "--json"], b""),
        (["config", "--config", nowhere, "--state", str(tmp_path / "state"), "status"], b""),
        (["config", "--config", nowhere, "--state", str(tmp_path / "state-file"), "status"], b""),
        (["config", "--bogus"], b""),
        (["\udcff"], b""),
        ([], b""),
    ]
    for args, stdin in cases:
        r = run(args, stdin)
        err = r.stderr.decode(errors="replace")
        assert "Traceback" not in err, (args, err)
        assert r.returncode in (0, 1, 2), (args, r.returncode, err)


def test_item12_apply_as_a_normal_user_says_it_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli_main.main(["config", "apply"]) == 1
    assert "maculaos: error: config apply needs root" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "absent"),
    [
        (["config", "status"], ("maculaos.upgrade.cli", "urllib.request", "http.client")),
        (["upgrade", "health"], ("maculaos.config.cli", "urllib.request", "http.client")),
        (["hostname"], ("maculaos.config.cli", "maculaos.upgrade.cli", "yaml")),
    ],
)
def test_issue10_a_command_imports_only_its_own_branch(
    args: list[str], absent: tuple[str, ...]
) -> None:
    """The config unit and the health gate start at every boot under an emulated CPU: neither
    pays for the other branch's modules (HTTP for upgrades, YAML for the config)."""
    probe = (
        "import sys\n"
        "from maculaos.__main__ import parser\n"
        f"parser({args!r}).parse_args({args!r})\n"
        f"print([m for m in {absent!r} if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stdout


def test_issue10_help_and_a_wrong_command_still_name_every_command() -> None:
    for args in (["--help"], ["bogus"], []):
        r = run(args, b"")
        said = (r.stdout + r.stderr).decode()
        assert all(c in said for c in ("hostname", "config", "upgrade")), (args, said)
