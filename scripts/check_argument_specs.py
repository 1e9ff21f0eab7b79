"""Every role's meta/argument_specs.yml documents exactly the keys of its defaults/main.yml."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[1] / "ansible" / "roles"


def main() -> int:
    bad = 0
    for role in sorted(p for p in ROLES.iterdir() if p.is_dir()):
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
        options = spec["argument_specs"]["main"].get("options", {})
        missing = sorted(set(defaults) - set(options))
        extra = sorted(set(options) - set(defaults))
        if missing or extra:
            bad += 1
            print(f"{role.name}: undocumented defaults {missing}, specs without default {extra}")
    if not bad:
        print(f"ok: {len(list(ROLES.iterdir()))} roles")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
