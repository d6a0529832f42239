"""Waiting for something to happen, bounded, without sleeping longer than needed."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 10) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def serves(port: int) -> bool:
    try:
        return get(port, timeout_seconds=1)[0] == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str = "/", timeout_seconds: float = 10) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_seconds) as response:
        return response.status, response.read().decode()
