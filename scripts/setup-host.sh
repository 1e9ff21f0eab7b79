#!/usr/bin/env bash
# Idempotent host setup: Debian packages for building/booting images and a
# Python venv (.venv) with the pinned tool chain. Safe to run again: it does
# nothing when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  packer ansible-core-
  qemu-system-x86 qemu-system-arm qemu-utils qemu-efi-aarch64 ovmf
  qemu-user-static binfmt-support
  mmdebstrap debian-archive-keyring arch-test
  squashfs-tools e2fsprogs dosfstools mtools fdisk gdisk
  grub-efi-amd64-bin grub-common grub-emu xorriso busybox
  zstd xz-utils openssh-client rsync jq
  rauc casync openssl
  python3-venv
)
# drop the "ansible-core-" marker: we never want Debian's ansible (venv pins it)
APT_PACKAGES=("${APT_PACKAGES[@]/ansible-core-/}")

missing=()
for p in "${APT_PACKAGES[@]}"; do
  [ -n "$p" ] || continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> setup-host: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing Debian packages needs root (run: sudo $0)" >&2
    exit 1
  fi
  # third-party sources on a build host may be unreachable; Debian's are what we need
  apt-get update -qq || echo "warning: apt-get update reported errors (continuing with what was fetched)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "==> setup-host: Debian packages present"
fi

# Python venv with pinned tools (requirements-dev.txt is the single pin list)
PY=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(cat requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> setup-host: creating Python venv .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  .venv/bin/pip install -q --no-deps -e .
  echo "$want" > "$stamp"
else
  echo "==> setup-host: venv up to date"
fi
echo "==> setup-host: done"
