"""Reliability run: N power cuts at random moments of ``maculaos upgrade --apply``.

    .venv/bin/python -m tests.reliability.power_cut --runs 100 [--vms 2] [--max-delay 60]

Nodes from the built image (``--vms`` at once, one per core under TCG); a v2 bundle (the same
root re-stamped) served from the host. An apply takes ~45 s under TCG, so cuts land in the
download, the verification, the slot write and after it.
Every cut is recorded as it happens in bench/results/power-cut-<time>.json, so an
interrupted run keeps what it measured. Exit 1 if any cut left the node on a bad slot.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from maculaos_build import vm as vmlib
from maculaos_build.paths import REPO
from tests.support import powercut
from tests.support.release_server import serve
from tests.vm import upgrade_fixtures
from tests.vm.conftest import built_image, ssh_key

PHASES = (  # the last line `maculaos upgrade --apply` logged before the cut -> its phase
    ("after apply", ("Consumed", "Installing done", "installed", "reboot")),
    # the slot is written; RAUC makes it primary after this line: either slot is right
    ("slot written, switching", ("Updating slots done",)),
    ("slot write", ("installing ", "Determining target", "Copying image")),
    ("signature check", ("Verifying signature", "Checking bundle")),
    # progress goes to the journal in steps: "found" is the last line for most of a download
    ("download", ("MiB/s", "found ")),
    ("started", ("Started apply",)),
)


def phase(progress: str) -> str:
    for name, marks in PHASES:
        if any(m in progress for m in marks):
            return name
    return "other"


def by_phase(cuts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per apply phase at the cut: how many cuts, how many came back on a good slot, and
    whether the node stayed on the slot it ran before the cut or booted the new one."""
    before: dict[object, str] = {}  # each node starts on slot A
    table: dict[str, dict[str, int]] = {}
    for c in cuts:
        row = table.setdefault(
            phase(str(c.get("apply_progress_at_cut", ""))),
            {"cuts": 0, "good": 0, "stayed": 0, "switched": 0},
        )
        row["cuts"] += 1
        row["good"] += bool(c["good"])
        if "booted" in c:
            row["stayed" if c["booted"] == before.get(c["vm"], "A") else "switched"] += 1
            before[c["vm"]] = str(c["booted"])
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--min-delay", type=float, default=2)
    p.add_argument("--max-delay", type=float, default=60)
    p.add_argument("--vms", type=int, default=2, help="nodes cut in parallel")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--summarize", type=Path, help="print the phase table of a results file")
    args = p.parse_args()
    if args.summarize:
        print(json.dumps(by_phase(json.loads(args.summarize.read_text())["cuts"]), indent=2))
        return 0
    rng = random.Random(args.seed)
    delays = [rng.uniform(args.min_delay, args.max_delay) for _ in range(args.runs)]
    image = built_image()
    out = REPO / "bench" / "results" / f"power-cut-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cuts: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(vm_index: int, source: str, versions: tuple[str, str]) -> None:
        vm = vmlib.VM(image=image, key=ssh_key())
        with vmlib.running(vm):
            vm.wait_ssh(timeout=900)
            powercut.settle(vm)
            for delay in delays[vm_index :: args.vms]:
                try:
                    cut = powercut.cut_once(vm, source, delay, versions)
                except Exception as e:  # a node that never came back is a bad cut
                    cut = {"delay_s": round(delay, 1), "good": False, "error": str(e)[:500]}
                cut["vm"] = vm_index
                with lock:
                    cuts.append(cut)
                    good = sum(1 for c in cuts if c["good"])
                    print(f"cut {len(cuts)}/{args.runs}: {json.dumps(cut)}", flush=True)
                    doc = {
                        "runs": len(cuts),
                        "good": good,
                        "image": image.name,
                        "by_phase": by_phase(cuts),
                        "cuts": cuts,
                    }
                    out.write_text(json.dumps(doc, indent=2) + "\n")

    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="maculaos-powercut-") as tmp:
        srv, v1, v2 = upgrade_fixtures.make_v2(image.parent, Path(tmp))
        with serve(srv, "127.0.0.1") as (url, _):
            source = f"http://10.0.2.2:{url.rsplit(':', 1)[1]}/v2"
            threads = [
                threading.Thread(target=worker, args=(i, source, (v1, v2))) for i in range(args.vms)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    bad = [c for c in cuts if not c["good"]]
    print(f"{len(cuts) - len(bad)}/{len(cuts)} cuts came back on a good slot; results: {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
