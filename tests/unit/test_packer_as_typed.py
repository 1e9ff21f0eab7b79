"""Issue 10, goal 5: Packer works as its users type it. Every variable has a default that points
at the cache the wrapper fills; without that cache Packer stops with one line naming the file and
what to run first. Runs Debian's packer (scripts/setup-host.sh installs it) in validate mode."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from maculaos_build import basedisk
from maculaos_build.paths import REPO

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer not installed")


def _validate(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    # as typed in a shell: no venv on PATH (the template finds the repository's own Ansible)
    env = {k: v for k, v in os.environ.items() if k not in ("MACULAOS_CACHE", "MACULAOS_KEYRING")}
    env["PATH"] = os.pathsep.join(
        d for d in env.get("PATH", "").split(os.pathsep) if not d.rstrip("/").endswith(".venv/bin")
    )
    env.update(MACULAOS_CACHE=str(cache), CHECKPOINT_DISABLE="1", PACKER_NO_COLOR="1")
    return subprocess.run(
        ["packer", "validate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _fill(cache: Path, arch: str = "amd64") -> None:
    """What the wrapper leaves in the cache: cache/base/<arch> -> the keyed base-disk directory,
    the build key, the development keyring."""
    keyed = cache / "base" / f"trixie-{arch}-0123456789abcdef"
    keyed.mkdir(parents=True)
    for name in ("base.qcow2", "vmlinuz", "initrd.img"):
        (keyed / name).write_bytes(b"")
    (cache / "base" / arch).symlink_to(keyed.name)
    (cache / "build-ssh").mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(cache / "build-ssh/id_ed25519")],
        check=True,
    )
    (cache / "keys").mkdir()
    (cache / "keys/dev-ca.cert.pem").write_text("not read by validate\n")


@pytest.mark.parametrize(
    ("args", "cwd"),
    [
        (["packer/maculaos.pkr.hcl"], REPO),
        (["maculaos.pkr.hcl"], REPO / "packer"),
        (["packer/"], REPO),
        (["-var-file=packer/arm64.pkrvars.hcl", "packer/"], REPO),
        (["-var", "mitogen_strategy_plugins=/opt/mitogen/plugins/strategy", "packer/"], REPO),
    ],
    ids=["file", "file-in-packer-dir", "directory", "arm64", "with-mitogen"],
)
def test_each_documented_command_validates_with_defaults(
    args: list[str], cwd: Path, tmp_path: Path
) -> None:
    _fill(tmp_path, "arm64" if "arm64" in " ".join(args) else "amd64")
    done = _validate(args, cwd, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("missing", ["base", "build-ssh", "keys"])
def test_without_the_cache_packer_names_the_file_and_what_to_run(
    missing: str, tmp_path: Path
) -> None:
    _fill(tmp_path)
    shutil.rmtree(tmp_path / missing)
    done = _validate(["packer/"], REPO, tmp_path)
    # (Packer wraps its message at 78 columns)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "run scripts/build.sh --arch amd64 once to make it" in out, out
    assert str(tmp_path / missing) in out, out
    assert "Unsupported attribute" not in out and "unset" not in out.lower(), out


def test_the_wrapper_points_the_cache_at_the_current_base_disk(tmp_path: Path) -> None:
    from maculaos.arch import Architecture  # noqa: PLC0415

    old = basedisk.BaseDisk(Architecture.amd64, tmp_path / "trixie-amd64-old")
    new = basedisk.BaseDisk(Architecture.amd64, tmp_path / "trixie-amd64-new")
    for b in (old, new):
        b.directory.mkdir()
        basedisk._point_current(b)
        assert (tmp_path / "amd64").resolve() == b.directory
    # a relative link: the cache can move (CI keeps it elsewhere)
    assert os.readlink(tmp_path / "amd64") == "trixie-amd64-new"
    assert not list(tmp_path.glob(".amd64.link-new"))


def test_a_relative_cache_is_the_repositorys_wherever_packer_starts(tmp_path: Path) -> None:
    """MACULAOS_CACHE=cache-x means <repo>/cache-x for the wrapper (it runs in the repository):
    the template resolves it there too, also when started from packer/."""
    rel = f".pytest-cache-{os.getpid()}"
    try:
        _fill(REPO / rel)
        done = _validate(["maculaos.pkr.hcl"], REPO / "packer", Path(rel))
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        shutil.rmtree(REPO / rel, ignore_errors=True)


def test_the_playbook_gets_paths_with_spaces_whole() -> None:
    """Every image_* variable reaches Ansible in one JSON --extra-vars value."""
    hcl = (REPO / "packer/maculaos.pkr.hcl").read_text()
    assert '"--extra-vars", jsonencode({' in hcl
    assert '"--extra-vars", "image_' not in hcl
