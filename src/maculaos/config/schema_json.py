"""The schema table as a JSON Schema (draft 2020-12), published as docs/config.schema.json so
that editors check and complete ``config.yaml`` through the YAML language server:
``python -m maculaos.config.schema_json > docs/config.schema.json`` (a test keeps it current).

The JSON Schema says what an editor can check (structure, types, allowed values, patterns,
ranges); ``maculaos config validate`` checks all of that and more (label and sysctl grammar,
write_files rules, what the node has installed). A file the node accepts always passes it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from maculaos.config import schema
from maculaos.config.schema import KEYS, Key

SCHEMA_ID = "https://raw.githubusercontent.com/macula-io/macula-os/main/docs/config.schema.json"
# checks that are functions, not patterns: what an editor can check of them
_FRAGMENTS: dict[Any, dict[str, Any]] = {
    schema.port_number: {"minimum": 1, "maximum": 65535},
    schema.ip_address: {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
}
_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "list[str]": {"type": "array", "items": {"type": "string"}},
    "dict[str,str]": {
        "type": "object",
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
    "map": {"type": "object"},
    "list[dict]": {"type": "array", "items": {"type": "object"}},
}


def _fragment(check: Any) -> dict[str, Any]:
    return dict(getattr(check, "json_schema", None) or _FRAGMENTS.get(check, {}))


def _leaf(key: Key) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(_TYPES[key.type]))
    out["description"] = key.description + ("" if key.acted_on else " (validated only)")
    out["default"] = key.default
    if key.allowed:
        out["enum"] = list(key.allowed)
    if key.check is not None:
        frag = _fragment(key.check)
        if key.type == "list[str]":
            out["items"].update(frag)
        elif key.type == "dict[str,str]":
            out["additionalProperties"] = {"type": ["string", "number", "boolean"]}
        else:
            out.update(frag)
    if key.type == "list[dict]" and key.item_keys:
        out["items"] = {
            "type": "object",
            "properties": {k: {} for k in key.item_keys},
            "additionalProperties": False,
        }
    return out


def generate() -> dict[str, Any]:
    root: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "MaculaOS node configuration (/var/lib/maculaos/config.yaml)",
        "description": "Generated from src/maculaos/config/schema.py; do not edit.",
        "type": ["object", "null"],
        "properties": {},
        "additionalProperties": False,
    }
    for key in KEYS:
        node = root
        *parents, leaf = key.path.split(".")
        for part in parents:
            props = node.setdefault("properties", {})
            node = props.setdefault(
                part, {"type": ["object", "null"], "properties": {}, "additionalProperties": False}
            )
        node.setdefault("properties", {})[leaf] = _leaf(key)
    return root


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
