"""An emulated dockerd per host: enough of the Docker Engine API, on a unix socket, for the real
`docker` CLI to run the seed's commands unchanged.

Containers are processes holding their own network, UTS and mount namespaces (see
cnm.start_sandbox); networking goes through Calico's plugins exactly as libnetwork
does (cnm.py).  Images are not pulled: `busybox` runs commands with the busybox applets.
Names resolve as with Docker's embedded DNS: each container's /etc/hosts lists the containers
that share a network with it, on every host (endpoints are global, in the cluster store), and is
kept current while the daemon runs.

Implemented: /_ping, /version, networks (create, ls, inspect, rm, connect, disconnect),
containers (create, start, ls, inspect, rm [-f]), exec (create, start with a hijacked
multiplexed stream, inspect).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import secrets
import select
import signal
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..datastore import Datastore, DatastoreError, Synchronous
from . import cnm as dn

API_VERSION = "1.50"
IMAGES = {"busybox": ["sh"], "workload": ["sh"]}  # image -> default command; both run busybox applets
SERVICES = {"workload": [sys.executable, "-m", "calisim.probes", "serve"]}  # TCP echo :80, UDP echo :69
HOSTS_REFRESH = 0.5  # seconds between /etc/hosts refreshes
log = logging.getLogger("dockerd")


class APIError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Container:
    id: str
    name: str
    image: str
    cmd: list[str]
    network: str
    ip: str | None
    created: float = field(default_factory=time.time)
    sandbox: subprocess.Popen | None = None
    endpoints: list[dn.Endpoint] = field(default_factory=list)
    directory: Path | None = None
    service: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.sandbox is not None and self.sandbox.poll() is None


@dataclass
class Exec:
    id: str
    container: Container
    cmd: list[str]
    exit_code: int | None = None
    pid: int = 0


@functools.cache
def busybox_applets() -> frozenset[str]:
    return frozenset(subprocess.run(["busybox", "--list"], capture_output=True, text=True).stdout.split())


def truthy(value: str | None) -> bool:
    """A boolean query parameter as the CLI (1, true) and the SDK (True) send it."""
    return (value or "").lower() in ("1", "true")


def image_name(image: str) -> str:
    return image.split(":", 1)[0].split("/")[-1]


class Daemon:
    def __init__(self, ds: Synchronous, state: Path):
        self.ds = ds
        self.state = state
        self.containers: dict[str, Container] = {}
        self.execs: dict[str, Exec] = {}
        self.lock = threading.RLock()  # the datastore face and the maps are shared by request threads

    # -- containers ----------------------------------------------------------------------------
    def find(self, ref: str) -> Container:
        for container in self.containers.values():
            if ref in (container.id, container.name, "/" + container.name) or (len(ref) >= 3 and container.id.startswith(ref)):
                return container
        raise APIError(404, f"No such container: {ref}")

    def create(self, name: str | None, body: dict) -> dict:
        image = body.get("Image") or ""
        if image_name(image) not in IMAGES:
            raise APIError(404, f"No such image: {image if ':' in image else image + ':latest'}")
        name = name or secrets.token_hex(4)
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
            raise APIError(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        for other in self.containers.values():
            if other.name == name:
                raise APIError(409, f'Conflict. The container name "/{name}" is already in use by container '
                                    f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')
        network = (body.get("HostConfig") or {}).get("NetworkMode") or "default"
        if network in ("default", "bridge", "host", "none"):
            raise APIError(400, f"network {network} is not available in calisim: use --net with a calico network")
        try:
            with self.lock:
                dn.find_network(self.ds, network)
        except dn.DockerError as error:  # not 404: on a 404 from create the CLI tries to pull the image
            raise APIError(400, str(error)) from None
        settings = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).get(network) or {}
        ip = (settings.get("IPAMConfig") or {}).get("IPv4Address") or None
        container = Container(secrets.token_hex(32), name, image, body.get("Cmd") or IMAGES[image_name(image)],
                              network, ip)
        self.containers[container.id] = container
        return {"Id": container.id, "Warnings": []}

    def start(self, container: Container) -> None:
        if container.running:
            return
        container.directory = self.state / "containers" / container.id
        container.directory.mkdir(parents=True, exist_ok=True)
        (container.directory / "hosts").write_text("127.0.0.1\tlocalhost\n")
        (container.directory / "resolv.conf").write_text("# names come from /etc/hosts, as Docker's embedded DNS\n")
        container.sandbox = dn.start_sandbox(container.name, container.directory)
        try:
            with self.lock:
                network = dn.find_network(self.ds, container.network)
                container.endpoints = [dn.connect(self.ds, network, container.name, container.sandbox.pid, container.ip)]
        except (dn.DockerError, DatastoreError) as error:
            container.sandbox.kill()
            container.sandbox.wait()
            raise APIError(500, f"failed to create endpoint {container.name} on network {container.network}: {error}")
        if image_name(container.image) in SERVICES:
            container.service = subprocess.Popen(["nsenter", "-t", str(container.sandbox.pid), "-n", "--",
                                                  *SERVICES[image_name(container.image)]],
                                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.refresh_hosts()

    def remove(self, container: Container, force: bool) -> None:
        if container.running and not force:
            raise APIError(409, f"cannot remove container \"/{container.name}\": container is running: "
                                "stop the container before removing or force remove")
        with self.lock:
            for endpoint in container.endpoints:
                dn.disconnect(self.ds, endpoint)
        container.endpoints = []
        for process in (container.service, container.sandbox):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        del self.containers[container.id]

    def refresh_hosts(self) -> None:
        """Each local container's /etc/hosts: itself and every container sharing a network with it."""
        with self.lock:
            everyone = {n.id: dn.endpoints(self.ds, n) for n in dn.networks(self.ds)}
        for container in list(self.containers.values()):
            if not container.running or container.directory is None:
                continue
            lines = ["127.0.0.1\tlocalhost"]
            for endpoint in container.endpoints:
                lines += [f"{e.address.split('/')[0]}\t{e.container}" for e in everyone.get(endpoint.network_id, [])]
            text = "\n".join(dict.fromkeys(lines)) + "\n"
            hosts = container.directory / "hosts"
            if hosts.read_text() != text:
                hosts.write_text(text)  # the bind mount follows the inode: write in place

    # -- JSON views ----------------------------------------------------------------------------
    def container_json(self, container: Container) -> dict:
        networks = {}
        for endpoint in container.endpoints:
            with self.lock:
                network = dn.find_network(self.ds, endpoint.network_id)
            networks[network.name] = {"NetworkID": network.id, "EndpointID": endpoint.id, "Gateway": "169.254.1.1",
                                      "IPAddress": endpoint.address.split("/")[0], "IPPrefixLen": 32,
                                      "MacAddress": endpoint.mac, "Aliases": [container.name]}
        status = "running" if container.running else ("exited" if container.sandbox else "created")
        created = datetime.fromtimestamp(container.created, timezone.utc).isoformat().replace("+00:00", "Z")
        return {"Id": container.id, "Name": "/" + container.name, "Created": created, "Image": container.image,
                "State": {"Status": status, "Running": container.running, "Pid": container.sandbox.pid if container.running else 0,
                          "ExitCode": 0},
                "Config": {"Image": container.image, "Cmd": container.cmd, "Hostname": container.name},
                "HostConfig": {"NetworkMode": container.network},
                "NetworkSettings": {"Networks": networks}}

    def container_summary(self, container: Container) -> dict:
        full = self.container_json(container)
        return {"Id": container.id, "Names": ["/" + container.name], "Image": container.image,
                "Command": " ".join(container.cmd), "Created": int(container.created), "State": full["State"]["Status"],
                "Status": "Up" if container.running else "Created", "Ports": [], "Labels": {},
                "NetworkSettings": full["NetworkSettings"], "HostConfig": full["HostConfig"]}

    def network_json(self, network: dn.Network) -> dict:
        with self.lock:
            endpoints = dn.endpoints(self.ds, network)
        containers = {}
        for endpoint in endpoints:
            local = next((c for c in self.containers.values() if endpoint in c.endpoints), None)
            if local is not None:
                containers[local.id] = {"Name": local.name, "EndpointID": endpoint.id, "MacAddress": endpoint.mac,
                                        "IPv4Address": endpoint.address, "IPv6Address": ""}
        return {"Name": network.name, "Id": network.id, "Created": network.created or "0001-01-01T00:00:00Z",
                "Scope": "global", "Driver": network.driver,
                "EnableIPv6": False, "Internal": False, "Attachable": False, "Ingress": False,
                "IPAM": {"Driver": network.ipam_driver, "Options": {}, "Config": [{"Subnet": network.pool}]},
                "Containers": containers, "Options": {}, "Labels": {}}

    # -- exec ------------------------------------------------------------------------------------
    def exec_create(self, container: Container, body: dict) -> dict:
        if not container.running:
            raise APIError(409, f"container {container.id} is not running")
        execution = Exec(secrets.token_hex(32), container, body.get("Cmd") or [])
        self.execs[execution.id] = execution
        return {"Id": execution.id}

    def exec_argv(self, execution: Exec) -> list[str]:
        cmd = list(execution.cmd)
        if cmd and cmd[0] in busybox_applets():  # both images are busybox-based
            cmd = ["busybox", *cmd]
        return ["nsenter", "-t", str(execution.container.sandbox.pid), "-n", "-u", "-m", "--", *cmd]

    def exec_run(self, execution: Exec, write_frame) -> None:
        """Run the command, streaming stdout (1) and stderr (2) frames as they come."""
        try:
            process = subprocess.Popen(self.exec_argv(execution), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as error:
            write_frame(2, f"OCI runtime exec failed: {error}\n".encode())
            execution.exit_code = 126
            return
        execution.pid = process.pid
        streams = {process.stdout.fileno(): 1, process.stderr.fileno(): 2}
        while streams:
            ready, _, _ = select.select(list(streams), [], [])
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    write_frame(streams[fd], chunk)
                else:
                    del streams[fd]
        execution.exit_code = process.wait()


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
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = re.sub(r"^/v\d+\.\d+", "", url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
            self._dispatch(self.command, path, query, body)
        except APIError as error:
            self._send(error.status, {"message": str(error)})
        except dn.DockerError as error:
            status = 404 if "not found" in str(error) else 500
            self._send(status, {"message": str(error)})
        except (json.JSONDecodeError, ValueError) as error:
            self._send(400, {"message": f"invalid request: {error}"})
        except Exception as error:  # answer, log, and keep serving
            log.exception("%s %s failed", self.command, self.path)
            self._send(500, {"message": f"{type(error).__name__}: {error}"})

    do_GET = do_POST = do_DELETE = do_HEAD = _route

    def _dispatch(self, method: str, path: str, query: dict, body: dict) -> None:
        d = self.daemon
        parts = [p for p in path.split("/") if p]
        if parts == ["_ping"]:
            return self._send(200, b"OK", {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"})
        if parts == ["version"]:
            return self._send(200, {"Version": "calisim", "ApiVersion": API_VERSION, "MinAPIVersion": "1.24",
                                    "Os": "linux", "Arch": "amd64", "Components": []})
        if parts[:1] == ["networks"]:
            return self._networks(method, parts[1:], query, body)
        if parts[:1] == ["containers"]:
            return self._containers(method, parts[1:], query, body)
        if parts[:1] == ["exec"] and len(parts) == 3:
            execution = d.execs.get(parts[1])
            if execution is None:
                raise APIError(404, f"No such exec instance: {parts[1]}")
            if parts[2] == "json":
                return self._send(200, {"ID": execution.id, "Running": execution.exit_code is None and execution.pid > 0,
                                        "ExitCode": execution.exit_code, "Pid": execution.pid,
                                        "ContainerID": execution.container.id})
            if parts[2] == "start" and method == "POST":
                return self._exec_start(execution, body)
        if parts[:1] == ["images"]:
            raise APIError(404, f"pull access denied for {query.get('fromImage', '?')}, repository does not exist "
                                f"or may require 'docker login' (calisim has only the images {', '.join(IMAGES)})")
        raise APIError(404, f"page not found: {method} {path}")

    def _networks(self, method: str, parts: list[str], query: dict, body: dict) -> None:
        d = self.daemon
        if parts == ["create"] and method == "POST":
            config = ((body.get("IPAM") or {}).get("Config") or [{}])
            subnet = (config[0] or {}).get("Subnet") if config else None
            with d.lock:
                network = dn.create_network(d.ds, body["Name"], body.get("Driver") or "calico",
                                            (body.get("IPAM") or {}).get("Driver") or "calico-ipam", subnet)
            return self._send(201, {"Id": network.id, "Warning": ""})
        if not parts and method == "GET":
            with d.lock:
                networks = dn.networks(d.ds)
            return self._send(200, [d.network_json(n) for n in networks])
        with d.lock:
            network = dn.find_network(d.ds, parts[0])
        if len(parts) == 1 and method == "GET":
            return self._send(200, d.network_json(network))
        if len(parts) == 1 and method == "DELETE":
            with d.lock:
                dn.remove_network(d.ds, network.id)
            return self._send(204)
        if len(parts) == 2 and parts[1] in ("connect", "disconnect") and method == "POST":
            container = d.find(body.get("Container", ""))
            with d.lock:
                if parts[1] == "connect":
                    ip = ((body.get("EndpointConfig") or {}).get("IPAMConfig") or {}).get("IPv4Address")
                    container.endpoints.append(dn.connect(d.ds, network, container.name, container.sandbox.pid, ip))
                else:
                    for endpoint in [e for e in container.endpoints if e.network_id == network.id]:
                        dn.disconnect(d.ds, endpoint)
                        container.endpoints.remove(endpoint)
            d.refresh_hosts()
            return self._send(200, b"")
        raise APIError(404, f"page not found: {method} /networks/{'/'.join(parts)}")

    def _containers(self, method: str, parts: list[str], query: dict, body: dict) -> None:
        d = self.daemon
        if parts == ["create"] and method == "POST":
            return self._send(201, d.create(query.get("name"), body))
        if parts == ["json"] and method == "GET":
            everyone = [c for c in d.containers.values() if c.running or truthy(query.get("all"))]
            return self._send(200, [d.container_summary(c) for c in everyone])
        container = d.find(parts[0])
        action = parts[1] if len(parts) > 1 else ""
        if action == "json" and method == "GET":
            return self._send(200, d.container_json(container))
        if action == "start" and method == "POST":
            d.start(container)
            return self._send(204)
        if action == "exec" and method == "POST":
            return self._send(201, d.exec_create(container, body))
        if action == "wait" and method == "POST":
            if container.sandbox is not None:  # answers when the container stops (the CLI may not wait)
                container.sandbox.wait()
            return self._send(200, {"StatusCode": 0 if container.sandbox is None else container.sandbox.returncode})
        if not action and method == "DELETE":
            d.remove(container, truthy(query.get("force")))
            return self._send(204)
        raise APIError(404, f"page not found: {method} /containers/{'/'.join(parts)}")

    def _exec_start(self, execution: Exec, body: dict) -> None:
        """Answer 101 and stream the command's output in Docker's multiplexed frames."""
        self.send_response(101, "UPGRADED")
        self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "tcp")
        self.send_header("Api-Version", API_VERSION)
        self.end_headers()
        self.wfile.flush()

        def write_frame(stream: int, data: bytes) -> None:
            self.wfile.write(bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data)
            self.wfile.flush()

        self.daemon.exec_run(execution, write_frame)
        self.close_connection = True


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 refuses the docker CLI's parallel requests (rm -f a b c ...)


def serve(socket_path: Path, ds: Synchronous, state: Path) -> None:
    daemon = Daemon(ds, state)
    handler = type("BoundHandler", (Handler,), {"daemon": daemon})
    socket_path.unlink(missing_ok=True)
    server = _Server(str(socket_path), handler)
    stop = threading.Event()

    def refresh_hosts_forever() -> None:
        while not stop.wait(HOSTS_REFRESH):
            try:
                daemon.refresh_hosts()
            except Exception as error:  # etcd away for a moment: try again next round
                log.warning("could not refresh /etc/hosts: %s", error)

    threading.Thread(target=refresh_hosts_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving the Docker API on %s", socket_path)
    try:
        server.serve_forever()
    finally:
        stop.set()
        for container in list(daemon.containers.values()):
            try:
                daemon.remove(container, force=True)
            except Exception as error:
                log.warning("could not remove %s: %s", container.name, error)
        server.server_close()
        socket_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calisim.docker", description="calisim's emulated dockerd")
    parser.add_argument("--socket", type=Path, default=Path("/run/docker/docker.sock"))
    parser.add_argument("--state", type=Path, default=Path("/run/docker/state"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with Synchronous(Datastore.from_env()) as ds:
        serve(args.socket, ds, args.state)

