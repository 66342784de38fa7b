"""The Docker Engine API of the emulated dockerd, on a unix socket, for the real `docker` CLI and
the Python SDK: routing, requests and answers (Docker's status codes and error texts), and the
hijacked streams of attach, exec, wait and logs (streams.py frames them).  The store and life
cycle behind it are daemon.py's.

Implemented: /_ping, /version, /info, images (ls with filters, inspect, pull of a local image),
networks (create with every option, ls with filters, inspect, rm, connect and disconnect, before
a start too), containers (create, attach with logs=1, wait, start, stop, kill, restart, rename,
logs, top, resize, ls, inspect, rm [-f]) and exec (create with -u and -w, start, resize,
inspect), with Docker's hijacked streams (8-byte frames without a TTY, raw pty bytes with one;
an exec's framing as its start asks) and Docker's error texts; the swarm routes answer as a
daemon outside a swarm.  Paths are percent-decoded (a network named `test 01`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from ..datastore import Datastore, Synchronous
from ..datastore.resources.docker import Network
from ..process.unix_server import ThreadingUnixServer
from . import runtime
from .containers import Attachment, Container, Exec, Stdin
from .daemon import STOP_TIMEOUT, Daemon, rfc3339
from .errors import APIError, DockerError
from . import archive, bridge, changes, execs, ondisk, predefined, prune, system, volumes
from .config import PATH as config_path, ConfigError, DaemonConfig
from .networks import NetworkRequest
from .resolver import EmbeddedDNS
from .streams import copy_stdin, detach_keys, frame, read_by_peer, send_output, subscribe

API_VERSION = "1.50"
log = logging.getLogger("dockerd")


def truthy(value: str | None) -> bool:
    """A boolean query parameter as the CLI (1, true) and the SDK (True) send it."""
    return (value or "").lower() in ("1", "true")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    daemon: Daemon

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s " + format, self.client_address, *args)

    def _send(self, status: int, body: Any = None, headers: dict | None = None) -> None:
        payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        if body is not None and not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD" and status != 304:
            self.wfile.write(payload)

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = re.sub(r"^/v\d+\.\d+", "", url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.raw = raw = self._read_body()
        try:
            body = json.loads(raw) if raw and not path.endswith("/archive") else {}  # a tar for docker cp
            self._dispatch(self.command, path, query, body)
        except APIError as error:
            self._send(error.status, {"message": str(error)} if error.status != 304 else None)
        except DockerError as error:
            status = 404 if "not found" in str(error) else 500
            self._send(status, {"message": str(error)})
        except (json.JSONDecodeError, ValueError) as error:
            self._send(400, {"message": f"invalid request: {error}"})
        except (BrokenPipeError, ConnectionResetError):
            log.debug("%s %s: the client hung up before the answer", self.command, self.path)
        except Exception as error:  # answer, log, and keep serving
            log.exception("%s %s failed", self.command, self.path)
            self._send(500, {"message": f"{type(error).__name__}: {error}"})

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _route

    def _read_body(self) -> bytes:
        """The request's body, by its Content-Length or chunk by chunk (the CLI streams docker cp's tar)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers, up to the blank line
            pass
        return b"".join(chunks)

    def _dispatch(self, method: str, path: str, query: dict, body: dict) -> None:
        parts = [unquote(p) for p in path.split("/") if p]  # each part decoded alone: a name may hold %2F
        if parts == ["_ping"]:
            return self._send(200, b"OK", {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"})
        if parts == ["version"]:
            return self._send(200, system.version(API_VERSION))
        if parts == ["info"]:
            d = self.daemon
            return self._send(200, {**system.info(list(d.containers.values()), {n.driver for n in d.networks()},
                                                  d.state, d.ds.endpoints), **d.config.info()})
        if parts == ["system", "df"] and method == "GET":
            d = self.daemon
            everyone = [(c, d.container_summary(c)) for c in list(d.containers.values())]
            users = volumes.users([c for c, _ in everyone], d.state)
            return self._send(200, system.disk_usage(everyone, volumes.usage(d.state / "volumes", users)))
        if parts[:1] in (["swarm"], ["nodes"], ["services"], ["tasks"], ["secrets"]):
            raise system.swarm(method, parts)
        if parts[:1] == ["networks"]:
            return self._networks(method, parts[1:], query, body)
        if parts[:1] == ["containers"]:
            return self._containers(method, parts[1:], query, body)
        if parts[:1] == ["exec"] and len(parts) == 3:
            return self._exec(method, parts[1], parts[2], query, body)
        if parts[:1] == ["images"]:
            return self._images(method, parts[1:], query)
        if parts[:1] == ["volumes"]:
            return self._volumes(method, parts[1:], query, body)
        if parts == ["build", "prune"] and method == "POST":
            return self._send(200, prune.build_cache())
        raise APIError(404, f"page not found: {method} {path}")

    def _volumes(self, method: str, parts: list[str], query: dict, body: dict) -> None:
        d = self.daemon
        directory = d.state / "volumes"
        mounted = volumes.users(list(d.containers.values()), d.state)
        if not parts and method == "GET":
            return self._send(200, volumes.listing(directory))
        if parts == ["create"] and method == "POST":
            return self._send(201, volumes.create(directory, body.get("Name")))
        if parts == ["prune"] and method == "POST":
            filters = parse_filters(query.get("filters"))  # today's CLI sends all=true for -a: 1.13 pruned all
            prune.refuse_filters({name: value for name, value in filters.items() if name != "all"})
            return self._send(200, volumes.prune(directory, set(mounted)))
        if len(parts) == 1 and method == "GET":
            return self._send(200, volumes.find(directory, parts[0]))
        if len(parts) == 1 and method == "DELETE":
            volumes.remove(directory, parts[0], mounted.get(parts[0], []))
            return self._send(204)
        raise APIError(404, f"page not found: {method} /volumes/{'/'.join(parts)}")

    def _images(self, method: str, parts: list[str], query: dict) -> None:
        if parts == ["prune"] and method == "POST":
            return self._send(200, prune.images(parse_filters(query.get("filters"))))
        if parts == ["json"] and method == "GET":
            return self._send(200, system.image_list(parse_filters(query.get("filters"))))
        if parts == ["create"] and method == "POST":
            progress = system.pull(query.get("fromImage") or "", query.get("tag") or "")
            return self._send(200, b"".join(json.dumps(line).encode() + b"\r\n" for line in progress),
                              {"Content-Type": "application/json"})
        if len(parts) >= 2 and parts[-1] in ("json", "history") and method == "GET":  # a name may hold slashes
            image = system.find_image("/".join(parts[:-1]))
            return self._send(200, image.inspect() if parts[-1] == "json" else image.history())
        raise APIError(404, f"page not found: {method} /images/{'/'.join(parts)}")

    def _networks(self, method: str, parts: list[str], query: dict, body: dict) -> None:
        d = self.daemon
        if parts == ["create"] and method == "POST":
            network = d.create_network(NetworkRequest.from_api(body))
            return self._send(201, {"Id": network.id, "Warning": ""})
        if not parts and method == "GET":
            filters = parse_filters(query.get("filters"))
            return self._send(200, [d.network_json(n) for n in d.networks() if network_matches(n, filters)])
        if parts == ["prune"] and method == "POST":
            return self._send(200, prune.networks(d, parse_filters(query.get("filters"))))
        network = d.find_network(parts[0])
        if len(parts) == 1 and method == "GET":
            return self._send(200, d.network_json(network))
        if len(parts) == 1 and method == "DELETE":
            d.remove_network(network)
            return self._send(204)
        if len(parts) == 2 and parts[1] in ("connect", "disconnect") and method == "POST":
            container = d.find(body.get("Container", ""))
            if parts[1] == "connect":
                d.connect(container, network, Attachment.from_api(network.name, body.get("EndpointConfig")))
            else:
                d.disconnect(container, network)
            return self._send(200, b"")
        raise APIError(404, f"page not found: {method} /networks/{'/'.join(parts)}")

    def _containers(self, method: str, parts: list[str], query: dict, body: dict) -> None:
        d = self.daemon
        if parts == ["create"] and method == "POST":
            volumes.mounts("", body.get("HostConfig") or {}, body, d.state / "volumes")  # Docker's refusals, first
            return self._send(201, d.create(query.get("name"), body))
        if parts == ["json"] and method == "GET":
            filters = parse_filters(query.get("filters"))
            everyone = [c for c in list(d.containers.values())
                        if (c.running or truthy(query.get("all")) or "status" in filters) and matches(c, filters)]
            return self._send(200, [d.container_summary(c) for c in sorted(everyone, key=lambda c: -c.created)])
        if parts == ["prune"] and method == "POST":
            return self._send(200, prune.containers(d, parse_filters(query.get("filters"))))
        container = d.find(parts[0])
        action = parts[1] if len(parts) > 1 else ""
        if not action and method == "DELETE":
            d.remove(container, truthy(query.get("force")), truthy(query.get("v")))
            return self._send(204)
        if method == "GET" and action == "changes":
            upper = container.directory / "upper" if container.directory else None
            layers = container.image.lowerdirs(d.images)
            return self._send(200, changes.changes(upper, layers) if upper and upper.is_dir() else None)
        if method == "GET" and action in ("json", "top", "logs"):
            if action == "logs":
                return self._logs(container, query)
            return self._send(200, d.container_json(container) if action == "json" else d.top(container))
        if action == "archive":
            return self._archive(container, method, query.get("path") or "")
        if method != "POST":
            raise APIError(404, f"page not found: {method} /containers/{'/'.join(parts)}")
        if action == "attach":
            return self._attach(container, query)
        if action == "wait":
            return self._wait(container, query.get("condition") or "not-running")
        if action == "resize":
            runtime.resize(container.process.master if container.running and container.process else None,
                           int(query.get("h") or 0), int(query.get("w") or 0))
            return self._send(200, b"")
        if action == "exec":
            return self._send(201, d.exec_create(container, body))
        if action == "rename":
            d.rename(container, query.get("name") or "")
            return self._send(204)
        timeout = float(query["t"]) if query.get("t") not in (None, "") else container.stop_timeout(STOP_TIMEOUT)
        actions = {"start": lambda: d.start(container),
                   "stop": lambda: d.stop(container, timeout),
                   "kill": lambda: d.kill(container, signal_number(query.get("signal") or "KILL")),
                   "restart": lambda: (d.stop(container, timeout) if container.running else None, d.start(container))}
        if action not in actions:
            raise APIError(404, f"page not found: {method} /containers/{'/'.join(parts)}")
        actions[action]()
        return self._send(204)

    def _archive(self, container: Container, method: str, path: str) -> None:
        """docker cp: the stat (HEAD), a tar of path (GET), a tar unpacked into path (PUT)."""
        if method == "HEAD":
            return self._send(200, b"", archive.stat_header(archive.path_stat(container, path)))
        if method == "GET":
            found, tar = archive.read(container, path)
            return self._send(200, tar, {"Content-Type": "application/x-tar", **archive.stat_header(found)})
        if method == "PUT":
            archive.write(container, path, self.raw)
            return self._send(200, b"")
        raise APIError(404, f"page not found: {method} /containers/{container.name}/archive")

    # -- streams -----------------------------------------------------------------------------
    def _upgrade(self, tty: bool) -> socket.socket:
        """Docker's byte-exact 101, then the connection is a raw two-way pipe."""
        kind = "raw-stream" if tty else "multiplexed-stream"
        self.wfile.write(f"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.{kind}\r\n"
                         "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
        self.wfile.flush()
        self.close_connection = True
        return self.connection

    def _attach(self, container: Container, query: dict) -> None:
        keys = detach_keys(query.get("detachKeys") or "") if container.tty else b""
        replay, follow = truthy(query.get("logs")), truthy(query.get("stream"))
        listening = subscribe(container.output, replay, follow) if replay or follow else None
        connection = self._upgrade(container.tty)
        d = self.daemon
        if truthy(query.get("stdin")) and container.config.get("OpenStdin"):
            def stdin() -> Stdin | None:  # attach comes before start: wait for the run
                d.wait_for(lambda: container.running or container.removed, 30)
                process = container.process if container.running else None
                return None if process is None else Stdin.of(process.popen, process.master)
            threading.Thread(target=copy_stdin, args=(connection, stdin, keys, lambda: detach(listening, connection)),
                             daemon=True).start()
        if listening is not None:
            send_output(container.output, listening, container.tty, connection)
        hang_up(connection)

    def _wait(self, container: Container, condition: str) -> None:
        """Headers at once (the CLI starts the container only then), the status at the event."""
        d = self.daemon
        exits = container.exits
        conditions = {"next-exit": lambda: container.exits > exits, "removed": lambda: container.removed,
                      "not-running": lambda: not container.running}
        if condition not in conditions:
            raise APIError(400, f"invalid condition: \"{condition}\"")
        self.send_response(200)
        for name, value in (("Api-Version", API_VERSION), ("Content-Type", "application/json"),
                            ("Transfer-Encoding", "chunked")):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        while not d.wait_for(conditions[condition], 0.5):
            if runtime.readable([self.connection], 0) and not self.connection.recv(1, socket.MSG_PEEK):
                self.close_connection = True  # the client went (docker run -d drops its wait)
                return
        body = json.dumps({"StatusCode": container.exit_code, "Error": None}).encode() + b"\n"
        self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        self.wfile.flush()

    def _logs(self, container: Container, query: dict) -> None:
        if not container.logs_readable:
            raise APIError(500, "configured logging driver does not support reading")
        streams = {1} if truthy(query.get("stdout")) else set()
        streams |= {2} if truthy(query.get("stderr")) else set()
        tail = query.get("tail") or "all"
        stamp = truthy(query.get("timestamps"))
        output = container.output
        self.send_response(200)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Content-Type", f"application/vnd.docker.{'raw' if container.tty else 'multiplexed'}-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        live: queue.Queue = queue.Queue()
        with output.lock:  # history and the live feed join without a gap, or the run has ended
            follow = truthy(query.get("follow")) and output.live
            lines = [entry for entry in output.log if entry[1] in streams]
            if follow:
                output.subscribers.append(lambda stream, chunk: live.put((stream, chunk)))
        if tail != "all":
            lines = lines[len(lines) - int(tail):] if int(tail) > 0 else []

        def send(moment: float, stream: int, data: bytes) -> None:
            data = (rfc3339(moment) + " ").encode() + data if stamp else data
            self.wfile.write(data if container.tty else frame(stream, data))

        try:
            for moment, stream, data in lines:
                send(moment, stream, data)
            self.wfile.flush()
            while follow and (item := live.get())[1] is not None:
                if item[0] in streams:
                    send(time.time(), *item)
                    self.wfile.flush()
        except OSError:
            pass

    def _exec(self, method: str, exec_id: str, action: str, query: dict, body: dict) -> None:
        execution = self.daemon.execs.get(exec_id)
        if execution is None:
            raise APIError(404, f"No such exec instance: {exec_id}")
        if action == "json":
            return self._send(200, {"ID": execution.id, "Running": execution.exit_code is None and execution.pid > 0,
                                    "ExitCode": execution.exit_code, "Pid": execution.pid,
                                    "ProcessConfig": {"tty": execution.tty, "entrypoint": execution.cmd[0],
                                                      "arguments": execution.cmd[1:], "privileged": False,
                                                      "user": execution.user},
                                    "OpenStdin": execution.stdin, "OpenStdout": True, "OpenStderr": True,
                                    "CanRemove": False, "ContainerID": execution.container.id, "DetachKeys": ""})
        if action == "resize" and method == "POST":
            runtime.resize(execution.master, int(query.get("h") or 0), int(query.get("w") or 0))
            return self._send(200, b"")
        if action == "start" and method == "POST":
            execution.console = body.get("ConsoleSize") or execution.console
            execs.claim(execution)
            if body.get("Detach"):
                if (process := execs.spawn(execution)) is not None:
                    threading.Thread(target=self._finish_exec, args=(execution, process), daemon=True).start()
                return self._send(200, b"")
            return self._exec_attached(execution, bool(body.get("Tty", execution.tty)))
        raise APIError(404, f"page not found: {method} /exec/{exec_id}/{action}")

    def _exec_attached(self, execution: Exec, raw: bool) -> None:
        """The exec's output on the hijacked connection, framed unless raw: the Tty of the exec's
        start, as dockerd decides it (the pty, if any, comes from the exec's create).  The 101 is
        written, and read, before the process starts, so nothing it prints can reach the client ahead of it."""
        connection = self._upgrade(raw)
        read_by_peer(connection)
        process = execs.spawn(execution)
        if process is None:
            message = f"{execution.failure}\r\n".encode()
            connection.sendall(message if raw else frame(1, message))
            hang_up(connection)
            return
        sources = {execution.master: 1} if execution.tty else {process.stdout.fileno(): 1, process.stderr.fileno(): 2}
        output = runtime.Output()
        listening = subscribe(output)
        if execution.stdin:
            stdin = Stdin.of(process, execution.master)
            keys = execution.detach_keys if execution.tty else b""
            threading.Thread(target=copy_stdin, args=(connection, lambda: stdin, keys,
                                                      lambda: detach(listening, connection)), daemon=True).start()
        streaming = threading.Thread(target=send_output, args=(output, listening, raw, connection), daemon=True)
        streaming.start()
        runtime.pump(sources, output)  # to the end of the process, even once the client has detached
        streaming.join()
        self._finish_exec(execution, process)
        hang_up(connection)

    def _finish_exec(self, execution: Exec, process: subprocess.Popen) -> None:
        code = process.wait()
        execution.exit_code = code if code >= 0 else 128 - code
        if execution.master is not None:
            os.close(execution.master)
            execution.master = None


def hang_up(connection: socket.socket) -> None:
    """The end of a hijacked stream (the client may have detached, and the stream ended, already)."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def detach(listening: tuple[queue.Queue, Callable] | None, connection: socket.socket) -> None:
    """The client sent its detach keys: its output stream ends and it is hung up on; the process runs on."""
    if listening is not None:
        listening[0].put((0, None))
    hang_up(connection)


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """`filters` as the CLI sends it ({"name": {"L": true}}) or older clients ({"name": ["L"]})."""
    raw = json.loads(text) if text else {}
    return {key: list(values) for key, values in raw.items()}


def passes(tests: dict[str, Callable[[str], bool]], filters: dict[str, list[str]], unknown: APIError) -> bool:
    """Whether each filter key has a value its test accepts; a key without a test is refused
    (unknown's message names it in place of {})."""
    for key, values in filters.items():
        if key not in tests:
            raise APIError(unknown.status, str(unknown).format(key))
        if not any(tests[key](value) for value in values):
            return False
    return True


def label_matches(labels: dict, wanted: str) -> bool:
    """Docker's `label` filter: a key present, or key=value."""
    key, equals, value = wanted.partition("=")
    return labels.get(key) == value if equals else key in labels


def matches(container: Container, filters: dict[str, list[str]]) -> bool:
    """Docker's `ps --filter`: name (a regular expression), id (a prefix), status, label, network;
    each key must match one of its values."""
    labels = container.config.get("Labels") or {}
    tests = {"name": lambda v: re.search(v, container.name) is not None,
             "id": lambda v: container.id.startswith(v),
             "status": lambda v: container.status == v,
             "network": lambda v: any(a.network == v for a in container.attachments),
             "label": lambda v: label_matches(labels, v)}
    return passes(tests, filters, APIError(400, "invalid filter '{}'"))


def network_matches(network: Network, filters: dict[str, list[str]]) -> bool:
    """Docker 1.13's `network ls --filter`: name and id (regular expressions, searched), driver (exact),
    label (a key, or key=value), type (builtin: bridge, host and none; custom: the users')."""
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            raise APIError(500, f"Invalid filter: 'type'='{value}'")
    labels = network.labels or {}
    tests = {"name": lambda v: re.search(v, network.name) is not None,
             "id": lambda v: re.search(v, network.id) is not None,
             "driver": lambda v: network.driver == v,
             "label": lambda v: label_matches(labels, v),
             "type": lambda v: (v == "builtin") == predefined.is_builtin(network)}
    return passes(tests, filters, APIError(500, "Invalid filter '{}'"))  # Docker 1.13's words and status


def signal_number(name: str) -> int:
    """A signal as the CLI sends it: 9, KILL, SIGKILL."""
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])
    except KeyError:
        raise APIError(400, f"Invalid signal: {name}") from None


def serve(socket_path: Path, ds: Synchronous, state: Path, config: DaemonConfig) -> None:
    """Restore the containers on disk (ondisk.py), answer the Engine API on socket_path until
    SIGTERM, then remove every container, so their endpoints and addresses leave the cluster store
    with the daemon; with live-restore, leave them running for the next dockerd instead."""
    try:
        bridge.set_up(bridge.default(config.bip))  # docker0, as dockerd makes it at start
    except DockerError as error:
        raise SystemExit(f"dockerd: {error}") from None
    config_path.parent.mkdir(parents=True, exist_ok=True)  # /etc/docker, as dockerd makes it (in its host's /etc)
    resolver = EmbeddedDNS(ds.endpoints)
    resolver.start()
    daemon = Daemon(ds, state, resolver, config=config)
    daemon.bridges.restore()  # the user-defined bridge networks an earlier dockerd here made
    ondisk.restore(daemon, config.live_restore)  # then the containers, on them too
    handler = type("BoundHandler", (Handler,), {"daemon": daemon})
    socket_path.unlink(missing_ok=True)
    server = ThreadingUnixServer(str(socket_path), handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving the Docker API on %s", socket_path)
    try:
        server.serve_forever()
    finally:
        if not config.live_restore:  # live-restore: left running
            remove_all(daemon)
        server.server_close()
        socket_path.unlink(missing_ok=True)


def remove_all(daemon: Daemon) -> None:
    """Every container removed at once, as `docker rm -f` of them all would (each waits for its
    process's exit and its plugins' Leave, DeleteEndpoint and ReleaseAddress): a stopping dockerd
    takes the time of the slowest, not of all of them in turn."""
    def remove(container: Container) -> None:
        try:
            daemon.remove(container, force=True)
        except Exception as error:
            log.warning("could not remove %s: %s", container.name, error)

    containers = list(daemon.containers.values())
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(containers)))) as pool:
        list(pool.map(remove, containers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calisim.docker", description="calisim's emulated dockerd")
    parser.add_argument("--socket", type=Path, default=Path("/run/docker/docker.sock"))
    parser.add_argument("--state", type=Path, default=Path("/run/docker/state"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = configured()
    with Synchronous(Datastore.from_env()) as ds:
        serve(args.socket, ds, args.state, config)


def configured() -> DaemonConfig:
    """The host's daemon.json, its cluster store as this dockerd's etcd; a bad file ends dockerd
    with Docker's line, as dockerd exits before it serves."""
    try:
        config = DaemonConfig.load()
        endpoints = config.etcd_endpoints()
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    if endpoints:
        os.environ["ETCD_ENDPOINTS"] = endpoints
    return config
