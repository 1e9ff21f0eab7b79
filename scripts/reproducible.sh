#!/usr/bin/env bash
# Full tier (issue 10, goal 6): two builds of this commit, with the same arguments and from the
# same package cache, give the same slot squashfs, the same SBOM and the same manifest.json but
# for when the build ran (docs/decisions/0012). Both are built here, into output/repro-a and
# output/repro-b (output/ itself is left alone). Extra arguments go to both builds, e.g.
# --compression xz or --arch arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
if [ -n "$(git status --porcelain)" ]; then
  echo "reproducible: the checkout has uncommitted changes; commit them first (the build" \
    "stamps the commit, and a dirty tree is not one)" >&2
  exit 2
fi
built() {  # the one <version>-<arch> directory a fresh build left in $1
  local dirs
  mapfile -t dirs < <(find "$1" -mindepth 1 -maxdepth 1 -type d -not -name '.*')
  if [ "${#dirs[@]}" -ne 1 ]; then
    echo "reproducible: expected one build in $1, found ${#dirs[@]}" >&2
    exit 2
  fi
  echo "${dirs[0]}"
}
for run in a b; do
  rm -rf "output/repro-$run"
  echo "==> reproducible: build $run of $(git rev-parse --short HEAD) into output/repro-$run"
  ./scripts/build.sh --output "output/repro-$run" "$@"
done
first=$(built output/repro-a)
second=$(built output/repro-b)
maculaos-build compare "$first" "$second"
