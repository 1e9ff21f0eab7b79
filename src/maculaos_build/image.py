"""`maculaos-build image`: preflight, base disk, `packer build`, artifacts."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from maculaos import disk, layout
from maculaos.arch import Architecture
from maculaos.log import die, info, step
from maculaos_build import basedisk, bundle, finalize, sbom
from maculaos_build.paths import CACHE, OUTPUT, REPO, ROLES

SEMVER = layout.VERSION


@dataclass(frozen=True)
class BuildOptions:
    arch: Architecture
    version: str
    image_size_mib: int
    output: Path
    accelerator: str = "tcg"
    # "": the per-machine build key (dev/CI images); "none": no key; else a file of keys
    authorized_keys: str = ""
    memory: int = 2048
    compression: str = "xz"


def check_version(version: str) -> str:
    if not SEMVER.match(version):
        die(
            f"version {version!r} is not semver",
            hint="use MAJOR.MINOR.PATCH with an optional -PRERELEASE, e.g. 1.0.0 or 1.1.0-rc.1",
        )
    return version


def role_defaults() -> dict[str, Any]:
    """The image role's defaults: the owner of the image defaults (size, compression, layout
    sizes); the build CLI and Packer's variables take theirs from here (tested)."""
    return dict(yaml.safe_load((ROLES / "image" / "defaults" / "main.yml").read_text()))


def image_layout(image_size_mib: int) -> list[disk.PartitionSpec]:
    """The image role's layout from its defaults, checked against the disk size up front."""
    d = role_defaults()
    specs = disk.parse_specs(
        [
            {"name": layout.ESP.name, "type": "esp", "size_mib": d["image_esp_size_mib"]},
            {"name": layout.SLOT_A.name, "size_mib": d["image_slot_size_mib"]},
            {"name": layout.SLOT_B.name, "size_mib": d["image_slot_size_mib"]},
            {"name": layout.STATE.name, "size_mib": None, "min_mib": d["image_state_min_mib"]},
        ]
    )
    need = disk.required_mib(specs)
    if need > image_size_mib:
        die(
            f"image size {image_size_mib} MiB is too small: the layout needs {need} MiB "
            f"(esp {d['image_esp_size_mib']} + 2 x slot {d['image_slot_size_mib']} + state "
            f"{d['image_state_min_mib']} + 2 for GPT)",
            hint=f"pass --image-size-mib {need} or more, or lower image_slot_size_mib",
        )
    return specs


def _git(*args: str) -> str | None:
    """Output of a git command in the repository, or None outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def git_commit() -> str:
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return "unknown"
    return commit + ("-dirty" if _git("status", "--porcelain") else "")


def source_date_epoch() -> int:
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    stamp = _git("log", "-1", "--format=%ct")
    return int(stamp) if stamp and stamp.isdigit() else 0


def mitogen_strategy_plugins() -> str:
    """Mitogen's strategy plugin directory in this venv, or "" (Ansible's own strategy). Only
    when this interpreter is the repository's venv, whose ansible-playbook Packer runs: a
    Mitogen from elsewhere would be put first on that Ansible's path."""
    venv = REPO / ".venv"
    if not (venv / "bin" / "ansible-playbook").exists() or (
        Path(sys.prefix).resolve() != venv.resolve()
    ):
        return ""
    try:  # optional: without it the build is slower, not different (decision 0013)
        spec = importlib.util.find_spec("ansible_mitogen")
    except (ImportError, ValueError):
        return ""
    if spec is None or spec.origin is None:
        return ""
    plugins = Path(spec.origin).parent / "plugins" / "strategy"
    return str(plugins) if (plugins / "mitogen_linear.py").is_file() else ""


def preflight(opts: BuildOptions) -> None:
    check_version(opts.version)
    image_layout(opts.image_size_mib)
    for tool in ("packer", opts.arch.info.qemu_binary, "qemu-img", "ansible-playbook"):
        if not shutil.which(tool):
            die(f"{tool} not found on PATH", hint="run scripts/setup-host.sh and use .venv/bin")
    if not Path(opts.arch.info.efi_code).exists():
        die(f"EFI firmware {opts.arch.info.efi_code} missing", hint="run scripts/setup-host.sh")
    if opts.authorized_keys not in ("", "none") and not Path(opts.authorized_keys).is_file():
        die(f"--authorized-keys {opts.authorized_keys} is not a file")


def build(opts: BuildOptions) -> Path:
    preflight(opts)
    started = time.monotonic()
    base = basedisk.ensure(opts.arch)
    # ("none" reaches Packer as it is: its authorized_keys_file says no key)
    keys = opts.authorized_keys or str(basedisk.ssh_keypair().with_suffix(".pub"))
    packer_dir = opts.output / f".packer-{opts.arch.value}"
    shutil.rmtree(packer_dir, ignore_errors=True)
    packer_dir.parent.mkdir(parents=True, exist_ok=True)
    var_file = REPO / "packer" / f"{opts.arch.value}.pkrvars.hcl"
    args = {
        "version": opts.version,
        "base_image": str(base.disk),
        "base_kernel": str(base.kernel),
        "base_initrd": str(base.initrd),
        "output_directory": str(packer_dir),
        "accelerator": opts.accelerator,
        "memory": str(opts.memory),
        "image_size_mib": str(opts.image_size_mib),
        "ssh_private_key_file": str(basedisk.ssh_keypair()),
        "authorized_keys_file": keys,
        "source_date_epoch": str(source_date_epoch()),
        "git_commit": git_commit(),
        # packed uncompressed in the VM, compressed natively in finalize (decision 0011)
        "squashfs_compression": "none",
        "keyring_file": str(bundle.signer().keyring),
        "mitogen_strategy_plugins": mitogen_strategy_plugins(),
    }
    cmd = ["packer", "build", "-color=false", f"-var-file={var_file}"]
    for k, v in args.items():
        cmd += ["-var", f"{k}={v}"]
    cmd.append(str(REPO / "packer"))
    env = dict(os.environ, PACKER_NO_COLOR="1", ANSIBLE_NOCOLOR="1")
    with step(f"packer build ({opts.arch.value}, {opts.version})"):
        rc = subprocess.run(cmd, check=False, env=env, cwd=REPO).returncode
    if rc != 0:
        die(
            f"packer build failed (exit {rc})",
            hint=f"see the log above and the VM console in {packer_dir}.serial.log",
        )
    apt_cache = CACHE / "apt" / opts.arch.value
    with step("artifacts"):
        out = finalize.finalize(
            packer_dir,
            opts.output,
            opts.version,
            opts.arch,
            build_seconds=time.monotonic() - started,
            compression=opts.compression,
            # the slot carries its own SBOM (sbom.IN_IMAGE), made from the tree it is packed from
            add=lambda tree, info: sbom.embed(tree, info, apt_cache),
        )
    shutil.rmtree(packer_dir, ignore_errors=True)
    bundle.for_image(out)
    sbom.write(out, apt_cache)
    info(f"artifacts in {out}:")
    for p in sorted(out.iterdir()):
        info(f"  {p.name}  ({p.stat().st_size / 1048576:.1f} MiB)")
    return out


def default_output() -> Path:
    return OUTPUT
