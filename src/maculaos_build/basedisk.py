"""Base disk for the Packer VM: Debian trixie from mmdebstrap, cached by the hash of its inputs.

The disk is a bare ext4 filesystem image (no partition table, no bootloader): Packer's QEMU
boots it with ``-kernel``/``-initrd`` taken from the same tree, which is the fastest way to
boot under TCG and needs no bootloader in a machine that only exists to be provisioned.
Every package the roles install is already in the base disk, so the Packer pass needs no
network; the downloaded .deb files are kept in ``cache/apt/<arch>`` for the next build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from maculaos.arch import Architecture
from maculaos.log import die, info, step
from maculaos_build.paths import CACHE, ROLES

SUITE = "trixie"
BASE_DISK_SIZE = "6G"
# What the Packer VM itself needs beyond the roles' packages.
BUILDER_PACKAGES = ("openssh-server", "python3", "python3-apt", "systemd-sysv", "udev")


@dataclass(frozen=True)
class BaseDisk:
    arch: Architecture
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def ready(self) -> bool:
        return all(p.exists() for p in (self.disk, self.kernel, self.initrd))


def _role_defaults(role: str, name: str = "defaults") -> dict[str, object]:
    data = yaml.safe_load((ROLES / role / name / "main.yml").read_text()) or {}
    assert isinstance(data, dict)
    return data


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        die(f"{where} must be a list of package names")
    return list(value)


def package_list(arch: Architecture) -> list[str]:
    """Every package the roles install, read from their defaults/vars (one source of truth)."""
    base = _role_defaults("base")
    kernel = _role_defaults("kernel")
    image = _role_defaults("image")
    upgrade = _role_defaults("upgrade")
    pkgs = set(BUILDER_PACKAGES)
    pkgs |= set(_strings(base["base_packages"], "base_packages"))
    pkgs |= set(_strings(base["base_tools"], "base_tools"))
    pkgs |= set(_strings(kernel["kernel_packages"], "kernel_packages"))
    pkgs |= set(_strings(image["image_packages"], "image_packages"))
    pkgs |= set(_strings(upgrade["upgrade_packages"], "upgrade_packages"))
    pkgs.add(arch.info.kernel_package)
    pkgs.add(arch.info.grub_efi_package)
    return sorted(pkgs)


def dpkg_path_filters() -> list[str]:
    """The base role's dpkg path filters (base_dpkg_path_filters): mmdebstrap unpacks with them."""
    lines = _role_defaults("base").get("base_dpkg_path_filters", [])
    if not isinstance(lines, list):
        die("base_dpkg_path_filters must be a list of dpkg path-exclude/path-include lines")
    for line in lines:
        if not isinstance(line, str) or not line.startswith(("path-exclude=/", "path-include=/")):
            die(
                f"base_dpkg_path_filters: {line!r} is not like path-exclude=/usr/share/doc/*",
                hint="see ansible/roles/base/defaults/main.yml",
            )
    return list(lines)


def locale_gen() -> str:
    """/etc/locale.gen for the base role's locales, byte for byte what the role writes: built
    here natively, the image build finds them made (locale-gen under TCG takes over a minute)."""
    locales = _role_defaults("base").get("base_locales", [])
    if not isinstance(locales, list) or not all(
        isinstance(x, str) and re.fullmatch(r"[A-Za-z_@.0-9-]+", x) for x in locales
    ):
        die("base_locales must be a list of locale names such as en_US.UTF-8")
    return "".join(f"{name} UTF-8\n" for name in locales)


def ssh_keypair() -> Path:
    """The build-only SSH key Packer and Ansible use to reach the VM (never in the image)."""
    key = CACHE / "build-ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "maculaos-build", "-f", str(key)],
            check=True,
        )
    return key


def _mirror_args() -> list[str]:
    mirror = os.environ.get("MACULAOS_DEBIAN_MIRROR")
    return [mirror] if mirror else []


def inputs_digest(arch: Architecture, packages: list[str], pubkey: str) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "suite": SUITE,
                "arch": arch.value,
                "packages": packages,
                "dpkg": dpkg_path_filters(),
                "locales": locale_gen(),
                "pubkey": pubkey,
                "size": BASE_DISK_SIZE,
                "script": Path(__file__).read_text(),
                "mirror": _mirror_args(),
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:16]


def _customize_script(pubkey: str) -> str:
    return "\n".join(
        [
            'set -e; r="$1"',
            'mkdir -p "$r/root/.ssh" && chmod 700 "$r/root/.ssh"',
            f'printf "%s\\n" "{pubkey}" > "$r/root/.ssh/authorized_keys"',
            'chmod 600 "$r/root/.ssh/authorized_keys"',
            'mkdir -p "$r/etc/systemd/network"',
            'printf "[Match]\\nType=ether\\n\\n[Network]\\nDHCP=yes\\n" '
            '> "$r/etc/systemd/network/20-wired.network"',
            'chroot "$r" systemctl enable systemd-networkd systemd-resolved ssh',
            'echo maculaos-build > "$r/etc/hostname"',
            'printf "/dev/vda / ext4 rw,discard 0 1\\n" > "$r/etc/fstab"',
            # a stable name for the kernel and initrd we hand to QEMU
            'cp -L "$r"/boot/vmlinuz-* "$r/../vmlinuz"',
            # the image's locales, built natively (the base role finds them and skips locale-gen)
            f'printf %s {shlex.quote(locale_gen())} > "$r/etc/locale.gen"',
            'chroot "$r" locale-gen >/dev/null',
        ]
    )


def ensure(arch: Architecture) -> BaseDisk:
    """Return the cached base disk for ``arch``, building it when its inputs changed. Builds
    that share a cache wait for each other instead of building the same disk twice."""
    lock_path = CACHE / "base" / f".{arch.value}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = _ensure_locked(arch)
        _point_current(base)
        return base


def _point_current(base: BaseDisk) -> None:
    """``cache/base/<arch>`` names the current base disk: the default of a hand-typed
    ``packer build packer/`` (packer/maculaos.pkr.hcl). Replaced atomically."""
    link = base.directory.parent / base.arch.value
    tmp = link.with_name(f".{base.arch.value}.link-new")
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(base.directory.name)
        os.replace(tmp, link)
    except OSError as e:
        die(
            f"cannot point {link} at the base disk {base.directory.name}: {e.strerror}",
            hint=f"{link} is the build's own link: move whatever is there out of the way",
        )


def _ensure_locked(arch: Architecture) -> BaseDisk:
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img"):
        if not shutil.which(tool):
            die(f"{tool} not found", hint="run scripts/setup-host.sh")
    packages = package_list(arch)
    pubkey = ssh_keypair().with_suffix(".pub").read_text().strip()
    digest = inputs_digest(arch, packages, pubkey)
    base = BaseDisk(arch, CACHE / "base" / f"{SUITE}-{arch.value}-{digest}")
    if base.ready:
        info(f"base disk: reusing {base.disk} (inputs unchanged)")
        return base
    work = base.directory.with_name(base.directory.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    apt_cache = CACHE / "apt" / arch.value
    apt_cache.mkdir(parents=True, exist_ok=True)
    with step(f"base disk: mmdebstrap {SUITE}/{arch.value} with {len(packages)} packages"):
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            f"--architectures={arch.value}",
            "--mode=root",
            "--format=directory",
            "--include=" + ",".join(packages),
            *(f"--dpkgopt={line}" for line in dpkg_path_filters()),
            "--skip=download/empty",
            "--skip=essential/unlink",
            '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
            f"--setup-hook=sync-in {apt_cache} /var/cache/apt/archives/",
            f"--customize-hook=sync-out /var/cache/apt/archives {apt_cache}",
            "--customize-hook=" + _customize_script(pubkey),
            '--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb',
            SUITE,
            str(rootfs),
            *_mirror_args(),
        ]
        if subprocess.run(cmd, check=False).returncode != 0:
            die(
                "mmdebstrap failed (see its output above)",
                hint="check that the Debian mirror is reachable; set MACULAOS_DEBIAN_MIRROR to "
                "use another one",
            )
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not initrds:
        die("mmdebstrap produced no initrd", hint="is initramfs-tools in kernel_packages?")
    shutil.copy2(initrds[-1], work / "initrd.img")
    with step("base disk: ext4 image from the tree"):
        raw = work / "base.raw"
        subprocess.run(
            [
                "mkfs.ext4",
                "-q",
                "-L",
                "maculaos-build",
                "-d",
                str(rootfs),
                str(raw),
                BASE_DISK_SIZE,
            ],
            check=True,
        )
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work / "base.qcow2")],
            check=True,
        )
        raw.unlink()
        shutil.rmtree(rootfs)
    (work / "packages.json").write_text(json.dumps(packages, indent=1))
    shutil.rmtree(base.directory, ignore_errors=True)
    work.rename(base.directory)
    # keep only the newest base disk per arch
    for old in base.directory.parent.glob(f"{SUITE}-{arch.value}-*"):
        if old != base.directory:
            shutil.rmtree(old, ignore_errors=True)
    info(f"base disk: {base.disk}")
    return base
