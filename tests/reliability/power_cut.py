"""Reliability run: N power cuts at random moments of ``maculaos upgrade --apply``.

    .venv/bin/python -m tests.reliability.power_cut --runs 100 [--max-delay 90] [--seed 1]

One node from the built image; a v2 bundle (the same root re-stamped) served from the host.
Every cut is recorded as it happens in bench/results/power-cut-<time>.json, so an
interrupted run keeps what it measured. Exit 1 if any cut left the node on a bad slot.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from maculaos.build import vm as vmlib
from maculaos.build.paths import REPO
from tests.support import powercut
from tests.support.release_server import serve
from tests.vm import upgrade_fixtures
from tests.vm.conftest import built_image, ssh_key


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--min-delay", type=float, default=2)
    p.add_argument("--max-delay", type=float, default=90)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    image = built_image()
    out = REPO / "bench" / "results" / f"power-cut-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cuts: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="maculaos-powercut-") as tmp:
        srv, v1, v2 = upgrade_fixtures.make_v2(image.parent, Path(tmp))
        vm = vmlib.VM(image=image, key=ssh_key())
        with serve(srv, "127.0.0.1") as (url, _), vmlib.running(vm):
            source = f"http://10.0.2.2:{url.rsplit(':', 1)[1]}/v2"
            vm.wait_ssh()
            powercut.settle(vm)
            for i in range(args.runs):
                delay = rng.uniform(args.min_delay, args.max_delay)
                cut = powercut.cut_once(vm, source, delay, (v1, v2))
                cuts.append(cut)
                good = sum(1 for c in cuts if c["good"])
                print(f"cut {i + 1}/{args.runs}: {json.dumps(cut)}", flush=True)
                out.write_text(
                    json.dumps(
                        {"runs": len(cuts), "good": good, "image": image.name, "cuts": cuts},
                        indent=2,
                    )
                    + "\n"
                )
    bad = [c for c in cuts if not c["good"]]
    print(f"{len(cuts) - len(bad)}/{len(cuts)} cuts came back on a good slot; results: {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
