"""The release-server test double counts what it sent the way it sends it: the bench's and
the VM tier's delta figures are these counts."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from tests.support.release_server import bytes_sent, serve


@pytest.mark.parametrize(
    "rng", [None, "bytes=0-", "bytes=10-19", "bytes=990-", "bytes=990-5000", "bytes=-7"]
)
def test_bytes_sent_is_what_a_client_received(tmp_path: Path, rng: str | None) -> None:
    (tmp_path / "casync").mkdir()
    (tmp_path / "casync" / "x.cacnk").write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    (tmp_path / "other.json").write_text("{}")
    with serve(tmp_path) as (url, log):
        req = urllib.request.Request(f"{url}/casync/x.cacnk")
        if rng:
            req.add_header("Range", rng)
        with urllib.request.urlopen(req, timeout=10) as r:
            got = len(r.read())
        urllib.request.urlopen(f"{url}/other.json", timeout=10).read()
    assert bytes_sent(tmp_path, log, ".cacnk") == got
    assert bytes_sent(tmp_path, log) == got + 2
