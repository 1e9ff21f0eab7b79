"""Validate a config document against the schema; every error names the key path, the bad
value and what is allowed. Never raises on bad input."""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from maculaos.config.schema import BY_PATH, KEYS, Key

PLAIN_KEY = re.compile(r"[A-Za-z0-9_./${}-]+")
PREFIXES = {p.rsplit(".", i)[0] for p in BY_PATH for i in range(1, p.count(".") + 1)}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_error(key: Key, value: Any) -> str | None:
    t = key.type
    if t == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if t == "str":
        return None if isinstance(value, str) else "must be a string"
    if t == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of strings"
    if t == "dict[str,str]":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in value.items()
        )
        return None if ok else "must be a mapping of names to string values"
    if t == "map":
        return None if isinstance(value, dict) else "must be a mapping"
    if t == "list[dict]":
        ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        return None if ok else "must be a list of mappings"
    return f"has unknown schema type {t}"


def check_value(key: Key, value: Any) -> list[str]:
    where = f"{key.path}: {_show(value)}"
    err = _type_error(key, value)
    if err:
        return [f"{where} {err}"]
    errors: list[str] = []
    if key.allowed and value not in key.allowed:
        allowed = ", ".join(str(a) for a in key.allowed)
        errors.append(f"{where} is not allowed; use one of: {allowed}")
    if key.check:
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            problem = key.check(item)
            if problem:
                at = f"{key.path}[{i}]" if isinstance(value, list) else key.path
                errors.append(f"{at}: {_show(item)} {problem}")
    if key.type == "list[dict]":
        for i, item in enumerate(value):
            for k in item:
                if k not in key.item_keys:
                    errors.append(
                        f"{key.path}[{i}].{k} is not a known key; known: {', '.join(key.item_keys)}"
                    )
            if key.path == "write_files":
                errors += _check_write_file(i, item)
    return errors


def _check_write_file(i: int, item: dict[str, Any]) -> list[str]:
    where = f"write_files[{i}]"
    errors = []
    path = item.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "/../" in path + "/":
        errors.append(f"{where}.path: {_show(path)} must be an absolute path without '..'")
    if not isinstance(item.get("content", ""), str):
        errors.append(f"{where}.content must be a string")
    perms = item.get("permissions", "0644")
    if not (
        isinstance(perms, str) and len(perms) in (3, 4) and all(c in "01234567" for c in perms)
    ):
        errors.append(f"{where}.permissions: {_show(perms)} must be an octal string like '0644'")
    owner = item.get("owner", "root:root")
    if not isinstance(owner, str) or owner.count(":") != 1:
        errors.append(f"{where}.owner: {_show(owner)} must be user:group")
    if item.get("encoding", "text") not in ("text", "b64"):
        errors.append(f"{where}.encoding must be text or b64")
    return errors


def flatten(doc: Any, prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Map known key paths to values; collect unknown keys and bad nesting as errors."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    if not isinstance(doc, dict):
        where = prefix or "the document"
        return {}, [f"{where} must be a mapping of keys, got {type(doc).__name__}"]
    for k, v in doc.items():
        shown = k if isinstance(k, str) and PLAIN_KEY.fullmatch(k) else repr(k)
        path = f"{prefix}.{shown}" if prefix else shown
        if not isinstance(k, str):
            errors.append(f"{path}: keys must be strings")
        elif path in BY_PATH:
            values[path] = v
        elif path in PREFIXES:
            if v is None:
                continue
            sub, errs = flatten(v, path)
            values.update(sub)
            errors += errs
        else:
            known = sorted(
                {
                    p.split(".")[len(path.split(".")) - 1]
                    for p in BY_PATH
                    if p.startswith(prefix + ".")
                }
                if prefix
                else {p.split(".")[0] for p in BY_PATH}
            )
            errors.append(f"{path} is not a known key; known keys here: {', '.join(known)}")
    return values, errors


def validate(doc: Any) -> tuple[dict[str, Any], list[str]]:
    """Return (values by key path, errors). An empty/None document is valid."""
    if doc is None:
        return {}, []
    values, errors = flatten(doc)
    for path, value in values.items():
        errors += check_value(BY_PATH[path], value)
    return values, errors


def parse(text: str, source: str = "config") -> tuple[Any, list[str]]:
    """YAML text -> document, or an error naming the position."""
    try:
        return yaml.safe_load(text), []
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        pos = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        return None, [f"{source}: invalid YAML at {pos}: {e.problem}"]
    except yaml.YAMLError as e:
        return None, [f"{source}: invalid YAML: {e}"]


def defaults() -> dict[str, Any]:
    return {k.path: copy.deepcopy(k.default) for k in KEYS}
