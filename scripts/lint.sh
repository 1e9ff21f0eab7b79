#!/usr/bin/env bash
# The project's own checks: ruff, mypy, ansible-lint (production profile), packer fmt/validate,
# role argument specs against defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff"; ruff check . && ruff format --check .
echo "==> mypy"; mypy
echo "==> ansible-lint"; ANSIBLE_CONFIG=ansible.cfg ansible-lint --profile production ansible/
echo "==> packer fmt"; packer fmt -check -diff packer/
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
touch "$tmp/base.qcow2"
ssh-keygen -q -t ed25519 -N "" -f "$tmp/key"   # packer parses the key file
for f in packer/*.pkrvars.hcl; do
  echo "==> packer validate $f"
  packer validate -var-file="$f" -var version=0.0.0 -var base_image="$tmp/base.qcow2" \
    -var ssh_private_key_file="$tmp/key" -var keyring_file="$tmp/key" packer/ >/dev/null
done
echo "==> argument specs match defaults"; python scripts/check_argument_specs.py
