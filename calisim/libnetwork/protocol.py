"""Docker's plugin protocol, both sides: HTTP POST + JSON over a unix socket.

``PluginServer`` serves one plugin (standard-library HTTP in a thread; every request runs as a
coroutine on the node agent's event loop, where the datastore and IPAM clients live) and answers
errors as libnetwork expects them (HTTP 500, {"Err": message}); ``call_plugin`` is the client
side, as dockerd's libnetwork calls a plugin.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from ..process.unix_server import ThreadingUnixServer

CONTENT_TYPE = "application/vnd.docker.plugins.v1.1+json"
REQUEST_TIMEOUT = 30.0
log = logging.getLogger("calico-libnetwork")

Handler = Callable[[dict], Awaitable[dict]]


class PluginError(Exception):
    """Answered as HTTP 500 {"Err": message}, as libnetwork expects."""


class Plugin(Protocol):
    implements: str

    def handlers(self) -> dict[str, Handler]: ...


def require(request: dict, field: str) -> str:
    value = request.get(field)
    if not value or not isinstance(value, str):
        raise PluginError(f"Missing or invalid {field} in request")
    return value


class PluginServer:
    """One plugin on one unix socket: standard-library HTTP in a thread, handlers on the loop."""

    def __init__(self, path: Path, plugin: Plugin, loop: asyncio.AbstractEventLoop):
        self.path = Path(path)
        self.plugin = plugin
        self.loop = loop
        self.handlers = {"Plugin.Activate": self._activate, **plugin.handlers()}
        self._server: ThreadingUnixServer | None = None
        self._open: set[socket.socket] = set()  # the connections kept alive between requests

    async def _activate(self, request: dict) -> dict:
        return {"Implements": [self.plugin.implements]}

    def answer(self, url: str, body: bytes) -> tuple[int, dict]:
        """(HTTP status, JSON answer) for a POST of body to url; called from the server's threads."""
        handler = self.handlers.get(url.lstrip("/"))
        if handler is None:
            return 404, {"Err": f"404 page not found: {url}"}
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise PluginError("The request body must be a JSON object")
            future = asyncio.run_coroutine_threadsafe(handler(request), self.loop)
            return 200, future.result(REQUEST_TIMEOUT)
        except json.JSONDecodeError as error:
            return 500, {"Err": f"Invalid JSON in request: {error}"}
        except PluginError as error:
            log.warning("%s: %s", url, error)
            return 500, {"Err": str(error)}
        except Exception as error:  # a broken request must get an answer, and the plugin must live on
            log.exception("%s failed", url)
            return 500, {"Err": f"{type(error).__name__}: {error}"}

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                server._open.add(self.connection)

            def finish(self) -> None:
                server._open.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = server.answer(self.path, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.path, *args)

        self._server = ThreadingUnixServer(str(self.path), Handler)
        threading.Thread(target=self._server.serve_forever, name=f"plugin {self.path.name}", daemon=True).start()
        os.chmod(self.path, 0o660)

    def stop(self) -> None:
        """No new connection, and those kept open end: a client's next request on one fails and
        goes to whatever serves the socket next, never to this plugin."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            for connection in list(self._open):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:  # its client closed it meanwhile
                    pass
            self.path.unlink(missing_ok=True)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class _Connections:
    """Kept-alive connections to each plugin socket, as the Go HTTP client of Docker's plugin
    package keeps them: a request then costs neither a connect nor the server a new thread.  One
    idle connection serves one request at a time; a thread that finds none opens one."""

    def __init__(self) -> None:
        self.idle: dict[str, list[_UnixConnection]] = {}
        self.lock = threading.Lock()

    def take(self, path: Path, timeout: float) -> tuple[_UnixConnection, bool]:
        """An idle connection to path (and True), or a new one (and False)."""
        with self.lock:
            idle = self.idle.get(str(path))
            connection = idle.pop() if idle else None
        if connection is None:
            return _UnixConnection(path, timeout), False
        connection.sock.settimeout(timeout)
        return connection, True

    def give_back(self, path: Path, connection: _UnixConnection) -> None:
        with self.lock:
            self.idle.setdefault(str(path), []).append(connection)


_connections = _Connections()


def _post(connection: _UnixConnection, method: str, body: bytes) -> tuple[int, dict, bool]:
    """(HTTP status, decoded answer, whether the server keeps the connection open)."""
    connection.request("POST", f"/{method}", body, {"Content-Type": "application/json", "Accept": CONTENT_TYPE})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"{}"), not response.will_close


def call_plugin(path: Path, method: str, request: dict | None = None,
                timeout: float = REQUEST_TIMEOUT) -> tuple[int, dict]:
    """POST a plugin request as libnetwork does; returns (HTTP status, decoded answer).  A kept
    connection the plugin has closed since (it restarted) is given up for a new one, once, as
    Docker's plugin client tries a request again when its connection fails."""
    body = json.dumps(request or {}).encode()
    connection, reused = _connections.take(path, timeout)
    try:
        try:
            status, answer, open_ = _post(connection, method, body)
        except ConnectionError:  # http.client's RemoteDisconnected too
            if not reused:
                raise
            connection.close()
            connection = _UnixConnection(path, timeout)
            status, answer, open_ = _post(connection, method, body)
    except BaseException:
        connection.close()
        raise
    if open_:
        _connections.give_back(path, connection)
    else:
        connection.close()
    return status, answer
