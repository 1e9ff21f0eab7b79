"""Where a node keeps its configuration (standard library only: the boot fast path uses it)."""

from __future__ import annotations

from pathlib import Path

IMAGE_DEFAULTS = Path("/usr/lib/maculaos/config.yaml")
NODE_CONFIG = Path("/var/lib/maculaos/config.yaml")
CMDLINE = Path("/proc/cmdline")
STATE = Path("/var/lib/maculaos/state")
LAST_GOOD = STATE / "config.last-good.yaml"
STATUS = STATE / "config-status.json"
# maculaos.* words on the kernel command line that are boot facts, not config keys
BOOT_WORDS = ("maculaos.slot", "maculaos.recovery", "maculaos.esp")
