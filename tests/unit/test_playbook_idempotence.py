"""The image role's module steps, run twice through ansible-playbook: the second run changes
nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def play(fixture: Path) -> str:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    bin_dir = Path(sys.executable).parent
    r = subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-e",
            f"fixture_dir={fixture}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(REPO / "tests" / "integration" / "modules.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def recap(out: str) -> dict[str, int]:
    m = re.search(
        r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out
    )
    assert m, out
    return dict(zip(["ok", "changed", "unreachable", "failed"], map(int, m.groups()), strict=True))


def test_second_run_reports_no_change(tmp_path: Path) -> None:
    (tmp_path / "tree" / "etc").mkdir(parents=True)
    (tmp_path / "tree" / "etc" / "hostname").write_text("x\n")
    (tmp_path / "esp" / "EFI" / "BOOT").mkdir(parents=True)
    (tmp_path / "esp" / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"MZ")
    first = recap(play(tmp_path))
    assert first["changed"] == 2 and first["failed"] == 0
    second = recap(play(tmp_path))
    assert second == {"ok": 2, "changed": 0, "unreachable": 0, "failed": 0}
