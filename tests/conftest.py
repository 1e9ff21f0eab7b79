"""Shared test setup: make the module_utils importable the way Ansible ships them."""

from __future__ import annotations

import sys
from pathlib import Path

import maculaos.disk
import maculaos.squashfs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "library"))
# Ansible ships plugins/module_utils/maculaos_*.py as ansible.module_utils.maculaos_*;
# those files are links to these modules.
sys.modules["ansible.module_utils.maculaos_disk"] = maculaos.disk
sys.modules["ansible.module_utils.maculaos_squashfs"] = maculaos.squashfs
