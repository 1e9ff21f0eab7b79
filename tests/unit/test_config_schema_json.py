"""Issue 9 item 16 (first part): the schema table generates a JSON Schema, published in docs/
for editors (YAML language server). It is current, a valid draft 2020-12 schema, never rejects
a file the node accepts, and rejects what an editor can see is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maculaos.config import schema_json
from maculaos.config.cli import nest
from maculaos.config.schema import KEYS
from maculaos.config.validate import validate

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "docs" / "config.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(
    schema_json.generate(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def _editor_ok(doc: Any) -> bool:
    return not list(VALIDATOR.iter_errors(doc))


def test_item16_the_published_schema_is_current() -> None:
    assert PUBLISHED.read_text() == schema_json.render(), (
        "run: python -m maculaos.config.schema_json > docs/config.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(PUBLISHED.read_text()))


def test_item16_defaults_and_examples_pass() -> None:
    assert _editor_ok(nest({k.path: k.default for k in KEYS}))
    assert _editor_ok(None) and _editor_ok({})
    example = {
        "maculaos": {"timezone": "Europe/Berlin", "keyboard": "de", "locale": "de_DE.UTF-8",
                     "labels": {"macula.io/role": "edge"}, "upgrade": {"channel": "beta"}},
        "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI test"],
        "write_files": [{"path": "/etc/x", "content": "y", "permissions": "0600"}],
    }  # fmt: skip
    assert validate(example)[1] == [] and _editor_ok(example)


@pytest.mark.parametrize(
    "doc",
    [
        {"maculaos": {"bogus": 1}},
        {"bogus": 1},
        {"maculaos": {"upgrade": {"channel": "weekly"}}},
        {"maculaos": {"upgrade": {"max_tries": 0}}},
        {"maculaos": {"keyboard": "DE!"}},
        {"maculaos": {"hostname": "Not A Hostname"}},
        {"ssh_authorized_keys": "ssh-ed25519 AAAA"},
        {"write_files": [{"path": "/x", "mode": "0600"}]},
        {"maculaos": {"upgrade": {"auto_apply": "yes"}}},
    ],
)
def test_item16_what_an_editor_can_see_is_wrong_is_rejected_by_both(doc: dict[str, Any]) -> None:
    assert validate(doc)[1], doc
    assert not _editor_ok(doc), doc


def _value(key: Any) -> st.SearchStrategy[Any]:
    base = [st.just(key.default), st.text(max_size=12), st.integers(-5, 70000), st.booleans(),
            st.lists(st.text(max_size=8), max_size=3)]  # fmt: skip
    if key.allowed:
        base.append(st.sampled_from(list(key.allowed)))
    return st.one_of(base)


DOCS = st.lists(st.sampled_from(KEYS), max_size=6, unique_by=lambda k: k.path).flatmap(
    lambda keys: st.tuples(*[_value(k) for k in keys]).map(
        lambda values: nest({k.path: v for k, v in zip(keys, values, strict=True)})
    )
)


@settings(max_examples=300, deadline=None)
@given(DOCS)
def test_item16_a_file_the_node_accepts_always_passes_the_editor_schema(doc: Any) -> None:
    if not validate(doc)[1]:
        assert _editor_ok(doc), list(VALIDATOR.iter_errors(doc))


@pytest.mark.parametrize(
    ("path", "value"),
    [("maculaos.locale", "de_DE@\u00fc"), ("maculaos.upgrade.health_timeout", 30)],
)
def test_item16_patterns_mean_the_same_to_the_node_and_to_editors(path: str, value: Any) -> None:
    """Editors (ECMA-262) read \\d and \\w as ASCII, Python as Unicode: the patterns use
    ASCII classes, so both sides agree whichever engine checks."""
    doc = nest({path: value})
    assert bool(validate(doc)[1]) == (not _editor_ok(doc)), doc
    published = PUBLISHED.read_text()
    assert "\\\\d" not in published and "\\\\w" not in published
