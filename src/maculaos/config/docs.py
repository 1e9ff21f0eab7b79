"""Generate docs/config-reference.md from the schema: `python -m maculaos.config.docs`."""

from __future__ import annotations

import json
import sys

from maculaos.config.schema import KEYS


def render() -> str:
    lines = [
        "# MaculaOS configuration reference",
        "",
        "Generated from `src/maculaos/config/schema.py` by `python -m maculaos.config.docs`;",
        "do not edit. The node reads `/var/lib/maculaos/config.yaml` (layers, lowest first:",
        "these defaults, the image's `/usr/lib/maculaos/config.yaml`, the node file, kernel",
        "command line `maculaos.<key>=<value>`). `maculaos config validate` checks a file.",
        "",
        "Keys marked *validated only* are checked now and acted on by a later feature.",
        "",
        "Editors: `docs/config.schema.json` (generated from the same table) lets the YAML",
        "language server check and complete the file; put this first line in `config.yaml`:",
        "`# yaml-language-server: $schema=<path or URL of docs/config.schema.json>`.",
        "",
        "| key | type | default | allowed | description |",
        "|---|---|---|---|---|",
    ]
    for k in KEYS:
        allowed = ", ".join(str(a) for a in k.allowed)
        desc = k.description + ("" if k.acted_on else " *(validated only)*")
        default = json.dumps(k.default).replace("|", "\\|")
        lines.append(f"| `{k.path}` | {k.type} | `{default}` | {allowed} | {desc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
