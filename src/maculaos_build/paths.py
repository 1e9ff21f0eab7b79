"""Where the build keeps its cache and outputs (all git-ignored)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MACULAOS_CACHE", REPO / "cache"))
OUTPUT = Path(os.environ.get("MACULAOS_OUTPUT", REPO / "output"))
ROLES = REPO / "ansible" / "roles"
