"""maculaos_config: validates with the node's CLI (here the venv's `maculaos`), writes 0600,
check and diff mode, idempotent. Applying is exercised on a booted node (VM tier)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.unit.modhelper import run_module

pytestmark = pytest.mark.integration
EXE = str(Path(sys.executable).parent / "maculaos")


def args(path: Path, config: dict[str, object]) -> dict[str, object]:
    return {"config": config, "path": str(path), "apply": False, "executable": EXE}


GOOD: dict[str, object] = {
    "maculaos": {"timezone": "Europe/Berlin", "labels": {"macula.io/site": "lab"}}
}


def test_writes_then_no_change(tmp_path: Path) -> None:
    path = tmp_path / "maculaos" / "config.yaml"
    first = run_module("maculaos_config", args(path, GOOD), diff=True)
    assert first["changed"] is True and not first["failed"], first
    assert "timezone: Europe/Berlin" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    assert first["diff"]["before"] == ""
    assert run_module("maculaos_config", args(path, GOOD))["changed"] is False


def test_check_mode_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    result = run_module("maculaos_config", args(path, GOOD), check_mode=True)
    assert result["changed"] is True
    assert not path.exists()


def test_invalid_config_fails_naming_the_key_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# previous\n")
    bad: dict[str, object] = {"maculaos": {"upgrade": {"channel": "edge"}, "timezon": "UTC"}}
    result = run_module("maculaos_config", args(path, bad))
    assert result["failed"]
    assert "maculaos.upgrade.channel: 'edge' is not allowed" in result["msg"]
    assert "maculaos.timezon is not a known key" in result["msg"]
    assert path.read_text() == "# previous\n"
