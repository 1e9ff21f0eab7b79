"""Test double for a MaculaOS release server (the real contract: static files over HTTP with
Range requests, as any web server or GitHub's asset CDN serves them).

``drop_after``: the first response for a file is cut after that many bytes (a flaky link),
so clients must resume with ``Range``.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    drop_after: int | None
    dropped: set[str]
    log: list[tuple[str, str | None]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = (self.root / self.path.lstrip("/").split("?", 1)[0]).resolve()
        self.log.append((self.path, self.headers.get("Range")))
        if not path.is_file() or self.root.resolve() not in path.parents:
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            if first:
                start, end = int(first), min(size - 1, int(last) if last else size - 1)
            else:  # the last n bytes
                start, end = max(0, size - int(last)), size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        length = end - start + 1
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = None
        if self.drop_after is not None and self.path not in self.dropped and length > 0:
            self.dropped.add(self.path)
            cut = self.drop_after
        with path.open("rb") as f:
            f.seek(start)
            sent = 0
            while sent < length:
                chunk = f.read(min(1 << 20, length - sent))
                if cut is not None and sent + len(chunk) > cut:
                    self.wfile.write(chunk[: cut - sent])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)


def bytes_sent(root: Path, log: list[tuple[str, str | None]], suffix: str = "") -> int:
    """What the server sent for the logged requests of files ending in ``suffix``: a whole
    file, or the range asked (``a-b``, ``a-``, the last ``-n``), as ``_Handler`` serves it."""
    total = 0
    for path, rng in log:
        f = root / path.lstrip("/").split("?", 1)[0]
        if not f.is_file() or not f.name.endswith(suffix):
            continue
        size = f.stat().st_size
        if rng and rng.startswith("bytes=") and "," not in rng:
            first, _, last = rng[6:].partition("-")
            if not first:  # the last n bytes
                size = min(size, int(last))
            else:
                size = max(0, min(size - 1, int(last) if last else size - 1) - int(first) + 1)
        total += size
    return total


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # a client that goes away mid-transfer (a power-cut node, a dropped link) is what
        # this server exists to see, not an error worth a traceback
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextlib.contextmanager
def serve(
    root: Path, host: str = "127.0.0.1", port: int = 0, drop_after: int | None = None
) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """Serve ``root``; yields (base URL, request log of (path, Range header))."""
    log: list[tuple[str, str | None]] = []
    handler = type(
        "Handler",
        (_Handler,),
        {"root": root, "drop_after": drop_after, "dropped": set(), "log": log},
    )
    server = _Server((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":  # python -m tests.support.release_server DIR [PORT]
    with serve(Path(sys.argv[1]), "0.0.0.0", int(sys.argv[2]) if len(sys.argv) > 2 else 8080) as (
        url,
        _,
    ):
        print(url, flush=True)
        threading.Event().wait()
    os._exit(0)
