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
  - Validation on the node includes the checks apply runs against the node's system (time
    zones, locales, users, kernel modules, sysctl keys), so the module never writes a file the
    node would reject.
  - Writes the file atomically with mode 0600 only when its content differs (check and diff
    mode supported), then runs C(maculaos config apply), the same code the node runs at boot.
  - The diff hides secrets the way C(maculaos config show) does (the node's own redaction:
    C(write_files) items marked C(secret), credentials in URLs); without the maculaos package
    on the node the diff shows no content at all.
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

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:
            return True  # the node refuses aliases: never write one

    def dump(doc: object) -> str:
        return str(yaml.dump(doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False))
except ImportError:  # YAML is a superset of JSON

    def dump(doc: object) -> str:
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def shown(text: str) -> str:
    """A config file as the diff may show it: the node's own redaction, or nothing."""
    if not text:
        return ""
    try:
        from maculaos.config.redact import redact_doc  # noqa: PLC0415 (the node's package)
        from maculaos.config.validate import parse  # noqa: PLC0415
    except ImportError:
        return "<not shown: the maculaos package is not importable here to hide secrets>\n"
    doc, errors = parse(text.encode(), "config")
    if errors:
        return "<not shown: not a valid YAML config>\n"
    return HEADER + dump(redact_doc(doc))


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
        with open(p["path"], "rb") as f:
            before = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        before = ""
    written = before != text
    result: dict[str, object] = {
        "changed": written,
        "written": written,
        "diff": {
            "before": shown(before) if module._diff else "",
            "after": shown(text) if module._diff else "",
            "before_header": p["path"],
            "after_header": p["path"],
        },
    }
    if module.check_mode:
        module.exit_json(**result)
    if written:
        directory = os.path.dirname(p["path"])
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-")  # 0600 from the start
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
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
