"""A local receiver for notifications (127.0.0.1 only): records every request, answers as told.

``delay_seconds`` makes it slow (bounded: it never sleeps longer than MAX_DELAY); ``drip`` sends
its answer one byte every 0.3 s for that long instead, so that no single read of the sender times
out; ``status`` sets the answer. ``dead_url()`` gives a URL on a port where nothing listens (connection refused).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MAX_DELAY = 10.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    status: int = 200
    delay_seconds: float = 0.0
    drip: bool = False
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))
                try:
                    if receiver.drip:
                        self._drip()
                        return
                    time.sleep(min(receiver.delay_seconds, MAX_DELAY))
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting (a slow-receiver test): that is the point

            def _drip(self) -> None:
                # A status line, then header bytes one at a time: a client's read timeout never fires.
                self.wfile.write(f"HTTP/1.1 {receiver.status} OK\r\n".encode())
                self.wfile.flush()
                deadline = time.monotonic() + min(receiver.delay_seconds, MAX_DELAY)
                while time.monotonic() < deadline:
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.3)
                self.wfile.write(b"-Drip: 1\r\nContent-Length: 2\r\n\r\nok")

            do_GET = do_POST = _answer  # noqa: N815 - the names http.server looks for

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 10) -> list[Request]:
        """Return the requests once there are ``count`` of them; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.requests) >= count, f"expected {count} requests, got {self.requests}"
        return self.requests

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


def dead_url() -> str:
    """Return a URL on 127.0.0.1 where nothing listens (the port was just free)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
