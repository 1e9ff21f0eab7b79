"""Configuration layers, lowest to highest: schema defaults -> image defaults
(/usr/lib/maculaos/config.yaml) -> /var/lib/maculaos/config.yaml -> kernel command line
``maculaos.<key>=<value>``. Each layer is validated on its own; the result remembers which
layer set each key."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maculaos.config.paths import BOOT_WORDS, CMDLINE, IMAGE_DEFAULTS, LAST_GOOD, NODE_CONFIG
from maculaos.config.schema import BY_PATH
from maculaos.config.validate import check_value, defaults, parse, read, validate


@dataclasses.dataclass
class Effective:
    values: dict[str, Any]
    sources: dict[str, str]
    errors: list[str]  # from any layer; a layer with errors contributes nothing
    node: str = ""  # the node layer in force: the file's path, "last-good" or "defaults"


def _read_layer(path: Path) -> tuple[dict[str, Any], list[str]]:
    data, errors = read(path)
    if data is None:
        return {}, errors
    doc, errors = parse(data, str(path))
    if errors:
        return {}, errors
    values, errors = validate(doc)
    return ({}, [f"{path}: {e}" for e in errors]) if errors else (values, [])


def cmdline_overrides(text: str) -> tuple[dict[str, Any], list[str]]:
    """``maculaos.timezone=Europe/Berlin maculaos.mesh.roles.gateway=true`` -> values.

    Values are YAML scalars (true, 42, text); lists are comma separated."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    for word in words:
        if not word.startswith("maculaos.") or "=" not in word:
            continue
        path, raw = word.split("=", 1)
        if path in BOOT_WORDS:  # bootloader facts, not config
            continue
        key = BY_PATH.get(path)
        if key is None:
            errors.append(f"kernel command line: {path} is not a known key")
            continue
        if key.type == "list[str]":
            value: Any = [v for v in raw.split(",") if v]
        else:
            doc, errs = parse(raw or "''", "kernel command line")
            value = doc if not errs else raw
            if key.type == "str":
                value = raw
        errs = check_value(key, value)
        if errs:
            errors += [f"kernel command line: {e}" for e in errs]
        else:
            values[path] = value
    return values, errors


Checker = Callable[[dict[str, Any]], list[str]]


def load(
    node_config: Path = NODE_CONFIG,
    image_defaults: Path = IMAGE_DEFAULTS,
    cmdline: Path | None = CMDLINE,
    last_good: Path | None = LAST_GOOD,
    system_check: Checker | None = None,
) -> Effective:
    """The effective config. An invalid node config (by the schema, or by ``system_check`` on
    the merged result) is replaced by the last good copy, which the node keeps running on;
    the errors are reported."""
    values = defaults()
    sources = dict.fromkeys(values, "default")
    node_values, node_errors = _read_layer(node_config)
    node_name = str(node_config)
    if node_errors and last_good is not None:
        good, good_errors = _read_layer(last_good)
        node_values, node_name = (good, "last-good") if not good_errors else ({}, "defaults")
    elif node_errors:
        node_name = "defaults"
    layers: list[tuple[str, dict[str, Any], list[str]]] = [
        ("image", *_read_layer(image_defaults)),
        (node_name, node_values, node_errors),
    ]
    if cmdline is not None:
        with contextlib.suppress(OSError):
            layers.append(("cmdline", *cmdline_overrides(cmdline.read_text())))
    merged = _merge(values, sources, layers)
    if system_check is not None and not node_errors:
        problems = [f"{node_config}: {e}" for e in system_check(merged.values)]
        if problems:
            # never apply a config that fails: the last good one, or else none at all
            good, good_errors = (
                _read_layer(last_good)
                if last_good is not None and node_name != "last-good"
                else ({}, ["none"])
            )
            layers[1] = (
                ("last-good", good, problems) if not good_errors else ("defaults", {}, problems)
            )
            return _merge(values, sources, layers)
    return merged


def _merge(
    values: dict[str, Any],
    sources: dict[str, str],
    layers: list[tuple[str, dict[str, Any], list[str]]],
) -> Effective:
    values, sources = dict(values), dict(sources)
    errors: list[str] = []
    for name, layer, errs in layers:
        errors += errs
        for path, value in layer.items():
            values[path] = value
            sources[path] = name
    return Effective(values, sources, errors, layers[1][0] if len(layers) > 1 else "")
