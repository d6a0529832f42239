"""The systemd notify client: messages arrive, and a receiver that stops reading never stalls the daemon."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from daemon.notify import Notifier


def _receiver(path: Path) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    return receiver


def test_messages_reach_the_notify_socket(tmp_path: Path) -> None:
    receiver = _receiver(tmp_path / "notify")
    notifier = Notifier(str(tmp_path / "notify"))
    notifier.send("READY=1", "STATUS=watching")
    receiver.settimeout(5)
    assert receiver.recv(4096) == b"READY=1\nSTATUS=watching"
    notifier.close()
    receiver.close()


def test_a_receiver_that_stops_reading_does_not_block_sending(tmp_path: Path) -> None:
    receiver = _receiver(tmp_path / "notify")  # never read: its queue fills after a few datagrams
    notifier = Notifier(str(tmp_path / "notify"))
    finished = threading.Event()

    def send_many() -> None:
        for number in range(14):
            notifier.send(f"STATUS=message {number}")
        notifier.send("STOPPING=1")
        finished.set()

    worker = threading.Thread(target=send_many, daemon=True)
    worker.start()
    # A blocking socket would wait here forever; each dropped message costs at most SEND_TIMEOUT_SECONDS.
    assert finished.wait(timeout=60), "sending to a full notify socket blocked"
    notifier.close()
    receiver.close()
