"""A local HTTP file server with Range support, and switches to cut bodies short (to test
resumed downloads), to redirect and to send a body slowly (to test the download policy),
and to fail every request (a host that is down)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FileServer:
    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.root, self.host = root, host
        self.cut_after: int | None = None  # bytes of a body to send before hanging up
        self.redirects: dict[str, str] = {}  # path -> Location
        self.drip_s: float | None = None  # pause between 1 KiB pieces of a body
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        self.error: int | None = None  # answer every request with this HTTP status

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, self.headers.get("Range", "")))
                if owner.error is not None:
                    self.send_error(owner.error)
                    return
                if self.path in owner.redirects:
                    self.send_response(302)
                    self.send_header("Location", owner.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = owner.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_after is not None:
                    body = body[:owner.cut_after]
                if owner.drip_s is None:
                    self.wfile.write(body)
                    return
                with contextlib.suppress(OSError):  # the client may give up first
                    for start in range(0, len(body), 1024):
                        self.wfile.write(body[start:start + 1024])
                        self.wfile.flush()
                        time.sleep(owner.drip_s)

        server = ThreadingHTTPServer((self.host, 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://{self.host}:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
