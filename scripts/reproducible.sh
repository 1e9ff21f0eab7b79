#!/usr/bin/env bash
# Full tier (issue 10, goal 6): two builds of this commit from the same package cache give the
# same slot squashfs, the same SBOM and the same manifest.json but for when the build ran
# (docs/decisions/0012). Builds the first one too when output/ holds another commit's image.
# Extra arguments go to both builds (e.g. --compression xz).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
commit=$(git rev-parse HEAD)
[ -z "$(git status --porcelain)" ] || commit="$commit-dirty"
first=$(ls -d output/*-amd64 2>/dev/null | head -n 1 || true)
built=""
[ -n "$first" ] && built=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("git_commit",""))' "$first/manifest.json" 2>/dev/null || true)
if [ -z "$first" ] || [ "$built" != "$commit" ] || [[ "$commit" == *-dirty ]]; then
  echo "==> reproducible: output/ holds ${built:-no build}, not $commit: building it first"
  ./scripts/build.sh "$@"
  first=$(ls -d output/*-amd64 | head -n 1)
fi
rm -rf output/rebuild
echo "==> reproducible: the same commit built again into output/rebuild"
./scripts/build.sh --output output/rebuild "$@"
maculaos-build compare "$first" "output/rebuild/$(basename "$first")"
