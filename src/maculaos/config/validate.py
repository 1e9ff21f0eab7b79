"""Validate a config document against the schema; every error names the key path, the bad
value and what is allowed. Never raises on bad input."""

from __future__ import annotations

import copy
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from maculaos.config.redact import redact_text
from maculaos.config.schema import BY_PATH, CONTROL, KEYS, Key

PLAIN_KEY = re.compile(r"[A-Za-z0-9_./${}-]+")
PREFIXES = {p.rsplit(".", i)[0] for p in BY_PATH for i in range(1, p.count(".") + 1)}


def _show(value: Any, secret: bool = False) -> str:
    """A value as an error shows it: short, credentials hidden."""
    text = "<redacted>" if secret else redact_text(repr(value))
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
    where = f"{key.path}: {_show(value, key.secret)}"
    err = _type_error(key, value)
    if err:
        return [f"{where} {err}"]
    errors: list[str] = []
    if key.allowed and value not in key.allowed:
        allowed = ", ".join(str(a) for a in key.allowed)
        errors.append(f"{where} is not allowed; use one of: {allowed}")
    if key.type == "dict[str,str]":
        for k, v in value.items():
            problem = key.key_check(k) if key.key_check else None
            if problem:
                errors.append(f"{key.path}: key {_show(k)} {problem}")
                continue
            problem = key.check(v) if key.check else None
            if problem:
                errors.append(f"{key.path}[{k!r}]: {_show(v, key.secret)} {problem}")
    elif key.check:
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            problem = key.check(item)
            if problem:
                at = f"{key.path}[{i}]" if isinstance(value, list) else key.path
                errors.append(f"{at}: {_show(item, key.secret)} {problem}")
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
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or "/../" in path + "/"
        or CONTROL.search(path)
    ):
        errors.append(
            f"{where}.path: {_show(path)} must be an absolute path without '..' or newlines"
        )
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
    if not isinstance(item.get("secret", False), bool):
        errors.append(f"{where}.secret: {_show(item['secret'])} must be true or false")
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
                    # the next part after the prefix (a key may itself contain dots)
                    p[len(prefix) + 1 :].split(".")[0]
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


# Bounds for a config file: it is read before anything else at boot, so a hostile or broken
# one must cost little. Real configs are a few KiB with a few hundred nodes.
MAX_BYTES = 1 << 20
MAX_NODES = 20_000
MAX_DEPTH = 32
BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


class Loader(yaml.SafeLoader):
    """yaml.SafeLoader for config files: no aliases (no "billion laughs"), bounded depth and
    node count, duplicate keys are errors, dates stay strings, numbers never raise."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(
                None, None, "aliases (*name) are not allowed; write the value out", event.start_mark
            )
        self.depth += 1
        self.nodes += 1
        if self.depth > MAX_DEPTH:
            raise ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
            )
        if self.nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} values", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {_show(key)} (first at line {first[key]})",
                    key_node.start_mark,
                )
            first[key] = line
        return super().construct_mapping(node, deep)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[no-untyped-call]
        except (ValueError, OverflowError) as e:  # int("1" * 5000), ...
            raise ConstructorError(
                None, None, f"bad value: {str(e).split(';')[0]}", node.start_mark
            ) from None

    def construct_yaml_int(self, node: ScalarNode) -> Any:
        if ":" in str(node.value):  # YAML 1.1 base 60 (1:30): a string, and no quadratic cost
            return self.construct_scalar(node)
        return super().construct_yaml_int(node)

    def construct_timestamp(self, node: ScalarNode) -> Any:
        return self.construct_scalar(node)  # a date is text here: no datetime, no ValueError


Loader.add_constructor("tag:yaml.org,2002:timestamp", Loader.construct_timestamp)
Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)


def _at(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"line {line}, column {index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def decode(data: bytes, source: str = "config") -> tuple[str | None, list[str]]:
    """Bytes of a config file -> text, or an error: too big, not UTF-8 (NUL, UTF-16/32, bad
    bytes). A UTF-8 byte order mark is dropped."""
    if len(data) > MAX_BYTES:
        return None, [
            f"{source}: is larger than {MAX_BYTES // 1024} KiB (the limit for a config file)"
        ]
    for bom, name in BOMS:
        if data.startswith(bom):
            return None, [f"{source}: is {name} encoded (byte order mark); save it as UTF-8"]
    nul = data.find(b"\0")
    if nul >= 0:
        at = _at(data.decode("utf-8", "replace"), len(data[:nul].decode("utf-8", "replace")))
        return None, [f"{source}: contains a NUL byte at {at}; a config file is UTF-8 text"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = _at(data[: e.start].decode("utf-8", "replace"), e.start)
        return None, [f"{source}: is not UTF-8 text: byte 0x{data[e.start]:02x} at {at}"]
    return text.removeprefix("\ufeff"), []


def read(path: Path) -> tuple[bytes | None, list[str]]:
    """A config file's bytes (None: no such file) in bounded time and memory: a FIFO, a device
    or a huge file is an error, not a hang."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, []
    except PermissionError:
        return None, [f"{path}: cannot read: permission denied (needs root)"]
    except OSError as e:
        return None, [f"{path}: cannot read: {e.strerror}"]
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, [f"{path}: is not a regular file"]
        if st.st_size > MAX_BYTES:
            return None, [
                f"{path}: is larger than {MAX_BYTES // 1024} KiB (the limit for a config file)"
            ]
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_BYTES + 1), []
    except OSError as e:
        return None, [f"{path}: cannot read: {e.strerror}"]
    finally:
        os.close(fd)


def parse(text: str | bytes, source: str = "config") -> tuple[Any, list[str]]:
    """YAML text (or a file's bytes) -> document, or an error naming the position. Bounded in
    time and memory (see MAX_*); never raises on bad input."""
    if isinstance(text, bytes):
        decoded, errors = decode(text, source)
        if decoded is None:
            return None, errors
        text = decoded
    elif len(text) > MAX_BYTES:
        return None, [
            f"{source}: is larger than {MAX_BYTES // 1024} KiB (the limit for a config file)"
        ]
    try:
        return yaml.load(text, Loader=Loader), []  # a SafeLoader
    except yaml.reader.ReaderError as e:
        return None, [f"{source}: invalid YAML at {_at(text, e.position)}: {e.reason}"]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        pos = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        return None, [f"{source}: invalid YAML at {pos}: {e.problem}"]
    except yaml.YAMLError as e:
        return None, [f"{source}: invalid YAML: {e}"]


def defaults() -> dict[str, Any]:
    return {k.path: copy.deepcopy(k.default) for k in KEYS}
