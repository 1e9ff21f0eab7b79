"""Run an Ansible module's main() in-process with given arguments and return its result."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


def run_module(
    name: str, args: dict[str, Any], check_mode: bool = False, diff: bool = False
) -> dict[str, Any]:
    payload = {
        "ANSIBLE_MODULE_ARGS": {
            **args,
            "_ansible_check_mode": check_mode,
            "_ansible_diff": diff,
            "_ansible_remote_tmp": "/tmp",
            "_ansible_keep_remote_files": False,
        }
    }
    basic._ANSIBLE_ARGS = to_bytes(json.dumps(payload))
    basic._ANSIBLE_PROFILE = "legacy"
    module = importlib.import_module(name)
    captured: dict[str, Any] = {}

    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        captured.update(kwargs)
        captured.setdefault("failed", False)
        raise SystemExit(0)

    def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
        captured.update(kwargs, msg=msg, failed=True)
        raise SystemExit(1)

    mp = pytest.MonkeyPatch()
    mp.setattr(basic.AnsibleModule, "exit_json", exit_json)
    mp.setattr(basic.AnsibleModule, "fail_json", fail_json)
    try:
        with pytest.raises(SystemExit):
            module.main()
    finally:
        mp.undo()
    return captured
