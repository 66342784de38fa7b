"""Whether an etcd answers yet: its own `GET /health` (etcd serves HTTP beside gRPC on every
client listener), asked over its unix socket.

Why not a first gRPC request, as before: a client made for one probe connects with gRPC's
100 ms connect deadline (calisim.datastore.etcd's reconnect settings); asked before etcd
served, or on a loaded machine, it failed and the request was tried again 0.25 s later, so every
start waited 0.2-0.5 s past etcd's "ready to serve client requests".  A plain request on the
socket is read the moment etcd serves, and is answered true once a leader is there, as a read
would be.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

PROBE_TIMEOUT = 1.0  # seconds one probe waits for an answer; a slower etcd is asked again


class _UnixConnection(http.client.HTTPConnection):
    """http.client over a unix socket (etcd's `unix://NAME:PORT` listener)."""

    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


def healthy(path: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """True once the etcd listening on unix socket path says `{"health": "true"}`; False while
    the socket is missing, refuses, stays silent for timeout seconds or says anything else."""
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        answer = json.loads(response.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()
    return response.status == 200 and isinstance(answer, dict) and answer.get("health") == "true"
