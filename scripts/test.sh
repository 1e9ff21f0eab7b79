#!/usr/bin/env bash
# README command 2: every test. Fast tier (lint, unit, Molecule) first, then the VM tier, which boots
# the image README command 1 built (output/); it builds one first when there is none.
#   --fast   only the fast tier
#   --full   the full tier: everything above plus the long runs kept out of CI's 60 minutes
#            (a second power cut in the upgrade tier, then 100 power cuts on two nodes:
#            tests/reliability/power_cut.py, about two hours; results in bench/results/;
#            then a second build of this commit, compared bit for bit: scripts/reproducible.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
# each step's wall time, for the closing notes and the CI budget
t0=$SECONDS
took() { echo "==> $1: $((SECONDS - t0))s"; t0=$SECONDS; }
./scripts/setup-host.sh
export PATH="$PWD/.venv/bin:$PATH"
./scripts/lint.sh
took "setup and lint"
echo "==> unit tests"
pytest -q -m "not vm" tests/unit
took "unit tests"
echo "==> molecule (base role on the trixie base disk under QEMU)"
# converge and idempotence run with Mitogen when the venv has it, as the image build does
# (decision 0013: one Python on the guest instead of one per task)
mitogen=$(python -c 'from maculaos_build.image import mitogen_strategy_plugins as m; print(m())')
if [ -n "$mitogen" ]; then
  ANSIBLE_STRATEGY_PLUGINS=$mitogen ANSIBLE_STRATEGY=mitogen_linear molecule test
else
  molecule test
fi
took "molecule"
[ "${1:-}" = "--fast" ] && exit 0
[ "${1:-}" = "--full" ] && export MACULAOS_FULL=1
if ! ls output/*-amd64/macula-os-*-amd64.qcow2 >/dev/null 2>&1 && [ -z "${MACULAOS_IMAGE:-}" ]; then
  echo "==> no image in output/: building one (README command 1)"
  ./scripts/build.sh
fi
echo "==> VM tier: two nodes (boot, layers, identity, config)"
pytest -q --durations=12 -m vm tests/vm --ignore=tests/vm/test_upgrade.py
took "VM tier: two nodes"
echo "==> VM tier: upgrades on one node (apply, rollback, bad bundles, broken updates, power cuts)"
pytest -q -s --durations=12 -m vm tests/vm/test_upgrade.py
took "VM tier: upgrades"
if [ "${MACULAOS_FULL:-}" = 1 ]; then
  echo "==> full tier: 100 power cuts during upgrades (two nodes)"
  python -m tests.reliability.power_cut --runs 100 --vms 2
  echo "==> full tier: the same commit built twice is bit-identical"
  ./scripts/reproducible.sh
fi
