"""bench's goals table (issue 10): one row per goal figure, the verdict from the ratio, and a
figure that was not measured said so instead of passing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import run


def _result(build: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "boot": {
            "debian_first_boot_to_ssh_s": [40.0, 42.0, 41.0],
            "maculaos_first_boot_to_ssh_s": [30.0, 31.0, 90.0],
            "ratio_first_boot_maculaos_vs_debian": 0.756,
            "debian_reboot_to_ssh_s": [40.0],
            "maculaos_reboot_to_ssh_s": [70.0],
            "ratio_reboot_maculaos_vs_debian": 1.75,
            "debian_reboot_userspace_s": [],
            "maculaos_reboot_userspace_s": [50.0],
            "ratio_reboot_userspace_maculaos_vs_debian": None,
        },
        "sizes": {
            "stock_qcow2_mib": 225.6,
            "qcow2_mib": 161.0,
            "ratio_qcow2_vs_goal_160mib": 1.006,
        },
        "upgrade": {
            "bundle_mib": 151.0,
            "dd_slot_s": 10.0,
            "rauc_install_local_bundle_s": 19.0,
            "ratio_rauc_install_vs_dd": 1.9,
        },
        "build": build,
    }


def _rows(table: str) -> dict[str, list[str]]:
    lines = table.splitlines()
    assert lines[0].startswith("| goal | stock Debian | MaculaOS |")
    return {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])
    }


def test_each_goal_has_its_verdict() -> None:
    rows = _rows(run.goals_table(_result({"warm_build_s": 241.2, "cold_build_s": 290.1})))
    first = rows["1 first boot to SSH (s, median)"]
    assert first[:2] == ["41.0", "31.0"] and first[-1] == "yes"  # medians, not means
    assert rows["1 reboot to SSH (s, median)"][-1] == "no"
    assert rows["1 userspace, reboot (s, median)"][-1] == "-"  # no stock figure: no verdict
    size = next(v for k, v in rows.items() if k.startswith("2 compressed image"))
    assert size[1] == "161.0" and size[-1] == "no"  # 1 MiB over is over
    assert rows["3 one-package update, MiB fetched"][1:] == [
        "151.0 (whole)", "1.0", "<= 0.15 of the bundle", "no"
    ]  # fmt: skip
    install = next(v for k, v in rows.items() if k.startswith("4 install vs dd"))
    assert install[-1] == "yes"
    assert (
        rows["5 warm build (s)"][1:3] == ["241.2", "0.67"] and rows["5 warm build (s)"][-1] == "yes"
    )
    assert rows["5 cold build (s)"][1] == "290.1"


def test_a_build_not_measured_is_said_not_passed() -> None:
    rows = _rows(run.goals_table(_result(None)))
    assert rows["5 warm build (s)"][1] == "not measured (--no-build)"
    assert rows["5 warm build (s)"][-1] == "-"


def test_a_delta_figure_replaces_the_whole_bundle_row() -> None:
    r = _result(None)
    r["upgrade"] |= {"delta_download_mib": 12.0, "ratio_delta_download_vs_bundle": 0.079}
    rows = _rows(run.goals_table(r))
    assert rows["3 one-package update, MiB fetched"][1:] == [
        "12.0", "0.079", "<= 0.15 of the bundle", "yes"
    ]  # fmt: skip
    r["upgrade"] |= {
        "full_change_download_mib": 160.2,
        "ratio_full_change_download_vs_its_bundle": 1.01,
    }
    rows = _rows(run.goals_table(r))
    assert rows["3 full change (every file), MiB fetched"][1:] == ["160.2", "1.01", "reported", "-"]


@pytest.mark.parametrize("runs", ["0", "-2", "x"])
def test_bench_refuses_runs_that_measure_nothing(runs: str) -> None:
    """`bench boot --runs 0` ended in a statistics traceback; now one line, exit 2."""
    r = subprocess.run(
        [sys.executable, "-m", "bench.run", "boot", "--runs", runs],
        capture_output=True, text=True, check=False, timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--runs" in r.stderr and ("1 or more" in r.stderr or "whole number" in r.stderr)
