"""A tiny HTTP server that stands in for ``bentoml serve`` in the process provider tests.

    python tests/slow_server.py PORT [--lifetime SECONDS] [--ignore-sigterm]

Binds 127.0.0.1:PORT. ``GET /slow?seconds=S`` answers 200 after S seconds, any other path at
once. On SIGTERM it stops accepting, finishes the requests in flight and exits 0. It always
exits by itself after ``--lifetime`` seconds (default 120), so a failed test leaks nothing
for long. Prints ``ready`` and ``begin <path>`` lines (flushed) for the tests to wait on.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server looks for
        url = urlsplit(self.path)
        print(f"begin {url.path}", flush=True)
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("seconds", ["2"])[0]))
        body = f"done {url.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


class Server(ThreadingHTTPServer):
    # Request threads are joined on close: that is what lets in-flight requests finish.
    daemon_threads = False
    block_on_close = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--lifetime", type=float, default=120.0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    arguments = parser.parse_args()

    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, signal.SIG_IGN if arguments.ignore_sigterm else on_sigterm)
    server = Server(("127.0.0.1", arguments.port), Handler)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    print("ready", flush=True)
    stop.wait(timeout=arguments.lifetime)
    server.shutdown()
    server.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
