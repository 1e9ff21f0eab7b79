#!/usr/bin/python
"""Ansible module: validate and write a MaculaOS node config, then apply it on the node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: maculaos_config
short_description: Write /var/lib/maculaos/config.yaml on a MaculaOS node and apply it
description:
  - Validates I(config) with the node's own schema (C(maculaos config validate -)), so the
    fleet and the node can never disagree about what is valid. An invalid config fails the
    task, names every bad key and changes nothing on the node.
  - Writes the file atomically with mode 0600 only when its content differs (check and diff
    mode supported), then runs C(maculaos config apply), the same code the node runs at boot.
options:
  config:
    description: The node configuration (the keys of docs/config-reference.md).
    type: dict
    required: true
  path:
    description: Config file on the node.
    type: path
    default: /var/lib/maculaos/config.yaml
  apply:
    description: Run C(maculaos config apply) after writing (or when the node reports errors).
    type: bool
    default: true
  executable:
    description: The maculaos command.
    type: path
    default: maculaos
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: MaculaOS developers
"""

EXAMPLES = r"""
- name: Configure the node
  maculaos_config:
    config:
      maculaos:
        timezone: Europe/Berlin
        labels: {macula.io/site: lab}
"""

RETURN = r"""
written:
  description: Whether the file was (or in check mode would be) rewritten.
  returned: always
  type: bool
changes:
  description: What C(maculaos config apply) changed on the node.
  returned: when applied
  type: list
  elements: str
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml

    def dump(doc: object) -> str:
        return str(yaml.safe_dump(doc, sort_keys=True, default_flow_style=False))

    def load(text: str) -> object:
        return yaml.safe_load(text)
except ImportError:  # YAML is a superset of JSON

    def dump(doc: object) -> str:
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def load(text: str) -> object:
        return json.loads(text)


HEADER = "# Written by Ansible (maculaos_config); the node applies it at every boot.\n"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config": {"type": "dict", "required": True},
            "path": {"type": "path", "default": "/var/lib/maculaos/config.yaml"},
            "apply": {"type": "bool", "default": True},
            "executable": {"type": "path", "default": "maculaos"},
        },
        supports_check_mode=True,
    )
    p = module.params
    exe = module.get_bin_path(p["executable"], required=True)
    text = HEADER + dump(p["config"])
    rc, out, err = module.run_command(
        [exe, "config", "validate", "-"],
        data=text,
        binary_data=True,
        environ_update={"LC_ALL": "C"},
    )
    if rc != 0:
        errors = [line.replace("<stdin>: ", "", 1) for line in err.splitlines() if line]
        module.fail_json(msg="invalid MaculaOS config: " + "; ".join(errors), errors=errors)
    try:
        with open(p["path"]) as f:
            before = f.read()
    except FileNotFoundError:
        before = ""
    written = before != text
    result: dict[str, object] = {
        "changed": written,
        "written": written,
        "diff": {
            "before": before,
            "after": text,
            "before_header": p["path"],
            "after_header": p["path"],
        },
    }
    if module.check_mode:
        module.exit_json(**result)
    if written:
        directory = os.path.dirname(p["path"])
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, p["path"])
    if p["apply"]:
        rc, out, err = module.run_command([exe, "config", "--config", p["path"], "apply", "--json"])
        try:
            applied = json.loads(out)
        except ValueError:
            module.fail_json(msg=f"maculaos config apply failed (rc={rc}): {err.strip()}", **result)
        result["changes"] = applied.get("changes", [])
        result["changed"] = written or bool(applied.get("changed"))
        if applied.get("errors"):
            module.fail_json(
                msg="maculaos config apply reported errors: " + "; ".join(applied["errors"]),
                **result,
            )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
