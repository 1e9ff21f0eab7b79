"""Bad build input fails before any work starts, naming the variable and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def build(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "MACULAOS_CACHE": str(tmp / "cache"),
        "MACULAOS_OUTPUT": str(tmp / "out"),
    }
    return subprocess.run(
        [sys.executable, "-m", "maculaos_build", "image", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "x86"], "unknown arch 'x86': allowed values are amd64, arm64"),
        (["--version", "1.0"], "version '1.0' is not semver"),
        (["--version", "v1.0.0"], "version 'v1.0.0' is not semver"),
        (
            ["--image-size-mib", "1000"],
            "image size 1000 MiB is too small: the layout needs 2370 MiB",
        ),
    ],
)
def test_bad_input_fails_before_any_work(args: list[str], message: str, tmp_path: Path) -> None:
    r = build(*args, tmp=tmp_path)
    assert r.returncode != 0
    assert message in r.stderr
    assert not (tmp_path / "cache").exists()  # no base disk, no key, nothing started
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("var", "message"),
    [
        ("arch=x86", "The arch variable must be one of: amd64, arm64."),
        ("version=1.0", "The version variable must be semver"),
        ("accelerator=hvf", "The accelerator variable must be one of: tcg, kvm."),
    ],
)
def test_packer_template_validates_variables(var: str, message: str, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.touch()
    r = subprocess.run(
        [
            "packer",
            "validate",
            f"-var-file={REPO / 'packer' / 'amd64.pkrvars.hcl'}",
            "-var",
            "version=1.0.0",
            "-var",
            f"base_image={key}",
            "-var",
            f"ssh_private_key_file={key}",
            "-var",
            var,
            str(REPO / "packer"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode != 0
    assert message in " ".join((r.stdout + r.stderr).split())
