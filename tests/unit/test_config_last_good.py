"""Issue 9 item 10: a config that fails half-way is not "last good"; last-good copies and
files with secrets are written atomically with their final mode from the start."""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maculaos.config import applicators, cli, engine
from maculaos.config.applicators import ApplyError, Target, write_file
from tests.unit.test_config_apply import CONFIG, paths, root, target

__all__ = ["root"]  # the fixture


def failing_sysctl(cfg: dict[str, Any], t: Target) -> list[str]:
    raise ApplyError("sysctl: sysctl -p: cannot stat /proc/sys/net/ipv4/nope")


def test_item10_an_applicator_error_does_not_promote_the_config(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    assert engine.apply(p, target(root)).errors == []
    good = p.last_good.read_text()
    promoted = json.loads(p.status_file.read_text())["last_good"]
    changed = CONFIG.replace("Europe/Berlin", "UTC").replace("keyboard: de", "keyboard: us")
    (root / "usr/share/zoneinfo/UTC").write_bytes(b"TZif")
    p.node_config.write_text(changed)
    swapped = [(n, failing_sysctl if n == "sysctl" else f) for n, f in applicators.APPLICATORS]
    monkeypatch.setattr(engine, "APPLICATORS", tuple(swapped))
    result = engine.apply(p, target(root))
    assert result.errors == ["sysctl: sysctl -p: cannot stat /proc/sys/net/ipv4/nope"]
    # what succeeded stays applied (each file atomically) ...
    assert os.readlink(root / "etc/localtime") == "../usr/share/zoneinfo/UTC"
    # ... but the file is not the last good one, and the next boot applies in full again
    assert p.last_good.read_text() == good
    status = json.loads(p.status_file.read_text())
    assert status["last_good"] == promoted
    assert status["errors"] == result.errors and status["fingerprint"] == ""
    assert not (p.state / "config-fastpath").exists()
    banner = (root / "run/motd.d/50-maculaos-config").read_text()
    assert "did not apply in full (not promoted to last good)" in banner
    assert "sysctl -p" in banner
    # `config status` names the failure
    rc = cli.cmd_status(
        argparse.Namespace(config=str(p.node_config), json=False, state=str(p.state))
    )
    out = capsys.readouterr().out
    assert rc == 1 and "sysctl: sysctl -p: cannot stat" in out and "not the last good" in out


def test_item10_an_os_error_does_not_promote_either(root: Path) -> None:
    p = paths(root)
    (root / "etc/maculaos/hello.txt").mkdir(parents=True)  # a directory where the file goes
    p.node_config.write_text(CONFIG)
    p.state.mkdir(parents=True)
    result = engine.apply(p, target(root))
    assert any(e.startswith("write_files: ") for e in result.errors)
    assert not p.last_good.exists()
    assert "last_good" not in json.loads(p.status_file.read_text())


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: nothing masks a looser mode
    try:
        yield
    finally:
        os.umask(old)


def watch_modes(monkeypatch: pytest.MonkeyPatch, directory: Path) -> list[tuple[str, int]]:
    """Record the mode of every file in ``directory`` whenever a file is chmod-ed, written
    or renamed there: what another user could have opened at that moment."""
    seen: list[tuple[str, int]] = []
    real = {name: getattr(os, name) for name in ("chmod", "fchmod", "replace", "write")}

    def snapshot() -> None:
        for f in directory.iterdir():
            if f.is_file():
                seen.append((f.name, stat.S_IMODE(f.stat().st_mode)))

    def wrap(name: str) -> Any:
        def hook(*args: Any, **kwargs: Any) -> Any:
            snapshot()
            result = real[name](*args, **kwargs)
            snapshot()
            return result

        return hook

    for name in real:
        monkeypatch.setattr(os, name, wrap(name))
    return seen


@pytest.mark.usefixtures("open_umask")
def test_item10_a_secret_file_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = watch_modes(monkeypatch, tmp_path)
    assert write_file(tmp_path / "token", "s3cret\n", 0o600)
    assert write_file(tmp_path / "token", "n3w s3cret\n", 0o600)
    assert seen and all(mode & 0o077 == 0 for _, mode in seen), seen
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert not any(f.name.endswith("maculaos-tmp") for f in tmp_path.iterdir())


@pytest.mark.usefixtures("open_umask")
def test_item10_the_last_good_copy_is_written_0600_from_the_start(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    p.node_config.chmod(0o600)
    p.state.mkdir(parents=True)
    seen = watch_modes(monkeypatch, p.state)
    assert engine.apply(p, target(root)).errors == []
    copies = [mode for name, mode in seen if "last-good" in name]
    assert copies and all(mode == 0o600 for mode in copies), seen
    assert p.last_good.read_text() == CONFIG


def test_item10_write_file_survives_a_stale_temp_file(tmp_path: Path) -> None:
    (tmp_path / ".token.maculaos-tmp").write_text("left by a power cut")
    assert write_file(tmp_path / "token", "x", 0o640)
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o640
    assert sorted(f.name for f in tmp_path.iterdir()) == ["token"]


def test_item10_write_file_sets_special_bits_exactly(tmp_path: Path) -> None:
    assert write_file(tmp_path / "tool", "#!/bin/sh\n", 0o2750)
    assert stat.S_IMODE((tmp_path / "tool").stat().st_mode) == 0o2750
    assert applicators.write_file(tmp_path / "tool", "#!/bin/sh\n", 0o2750) is False
