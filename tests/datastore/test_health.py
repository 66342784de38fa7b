"""etcd's /health over its unix socket, against a stand-in server (the real etcd answers it in
every emulation test: the cluster's start waits on it)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from calisim.datastore.health import healthy


def serve_once(path: Path, answer: bytes | None, requests: list[bytes]) -> threading.Thread:
    """A unix socket that reads one request (into requests) and sends answer (None: never answers)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        connection, _ = listener.accept()
        with connection, listener:
            requests.append(connection.recv(4096))
            if answer is None:
                connection.recv(4096)  # until the client gives up and closes
                return
            connection.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.parametrize("answer, expected", [
    (response("200 OK", b'{"health":"true"}'), True),
    (response("503 Service Unavailable", b'{"health":"false"}'), False),  # no leader yet
    (response("200 OK", b"not json"), False),
    (b"", False),  # closed without an answer
])
def test_only_a_true_health_answer_is_ready(tmp_path, answer, expected):
    requests: list[bytes] = []
    thread = serve_once(tmp_path / "etcd.sock:2379", answer, requests)
    assert healthy(tmp_path / "etcd.sock:2379") is expected
    thread.join(timeout=5)
    assert requests[0].startswith(b"GET /health HTTP/1.1\r\n")


def test_a_missing_socket_is_not_ready(tmp_path):
    assert healthy(tmp_path / "etcd.sock:2379") is False


def test_a_silent_etcd_is_not_ready_after_the_probe_timeout(tmp_path):
    thread = serve_once(tmp_path / "etcd.sock:2379", None, [])
    assert healthy(tmp_path / "etcd.sock:2379", timeout=0.2) is False
    thread.join(timeout=5)
    assert not thread.is_alive()
