"""Errors and progress: one die(), one timed step()."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import NoReturn


class MaculaError(Exception):
    """An error with a message for the user and an optional hint on how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


def die(message: str, hint: str | None = None) -> NoReturn:
    raise MaculaError(message, hint)


def info(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Announce a long step and report how long it took."""
    info(f"{title} ...")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        info(f"{title}: FAILED after {time.monotonic() - start:.1f}s")
        raise
    info(f"{title}: done in {time.monotonic() - start:.1f}s")
