"""The one redaction of secrets, driven by the schema: keys marked ``secret``, ``write_files``
items marked ``secret: true`` and credentials in URLs (``https://user:token@host``). Used by
``config show``, ``config apply`` output, the status file (and so the journal and banners) and
the fleet module's diff. Standard library only."""

from __future__ import annotations

import re
from typing import Any

from maculaos.config.schema import BY_PATH

HIDDEN = "<redacted>"
USERINFO = re.compile(r"(\w+://)[^/@\s]+@")


def redact_text(text: str) -> str:
    """Free text (a value, an error, a command): credentials in URLs hidden."""
    return USERINFO.sub(rf"\1{HIDDEN}@", text)


def _any(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_any(v) for v in value]
    if isinstance(value, dict):
        return {k: _any(v) for k, v in value.items()}
    return value


def redact(path: str, value: Any) -> Any:
    """The value of key ``path`` as it may be shown."""
    key = BY_PATH.get(path)
    if key is not None and key.secret:
        return HIDDEN
    if path == "write_files" and isinstance(value, list):
        return [
            _any({k: HIDDEN if k == "content" else v for k, v in item.items()})
            if isinstance(item, dict) and item.get("secret") is True
            else _any(item)
            for item in value
        ]
    return _any(value)


def redact_doc(doc: Any, prefix: str = "") -> Any:
    """A whole (nested) config document as it may be shown; unknown keys get the URL rule."""
    if not isinstance(doc, dict):
        return redact(prefix, doc) if prefix in BY_PATH else _any(doc)
    out = {}
    for k, v in doc.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        out[k] = redact(path, v) if path in BY_PATH else redact_doc(v, path)
    return out
