#!/usr/bin/env bash
# README command 1: build the MaculaOS amd64 image (setting up whatever is missing).
# Extra arguments go to `maculaos-build image` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-host.sh
exec .venv/bin/maculaos-build image "$@"
