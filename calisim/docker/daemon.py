"""An emulated dockerd per host: the Docker Engine API, on a unix socket, for the real `docker`
CLI and the Python SDK.

Containers are real: each run is a PID 1 in its own mount, PID, UTS, IPC and network
namespaces, pivoted into an overlayfs writable layer over its image (images.py; init.py starts
it, runtime.py holds its processes).  Networking goes through Calico's plugins exactly as
libnetwork does (cnm.py): a container joins its network when it starts and leaves it (Leave,
DeleteEndpoint, ReleaseAddress) when it stops.  Names resolve through Docker's embedded DNS server
(resolver.py): each container's /etc/resolv.conf names 127.0.0.11, where the daemon answers the
names of the containers that share a network with it, on every host (endpoints are global, in the
cluster store), as NAME and NAME.NETWORK, with each of their addresses (IPv4, and IPv6 on an
`--ipv6` network).  Its /etc/hosts holds Docker's lines and its own name, as Docker writes it on
a user-defined network.

Implemented: /_ping, /version, networks (create with every option, ls, inspect, rm, connect,
disconnect), containers (create, attach, wait, start, stop, kill, restart, logs, top, resize,
ls, inspect, rm [-f]) and exec (create, start, resize, inspect), with Docker's hijacked streams
(8-byte frames without a TTY, raw pty bytes with one) and Docker's error texts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from ..datastore import Datastore, DatastoreError, Synchronous
from ..libnetwork import GATEWAY
from . import cnm as dn
from . import runtime
from .images import IMAGES, IMAGES_DIR, Image, lookup
from .resolver import EmbeddedDNS, socket_in

API_VERSION = "1.50"
STOP_TIMEOUT = 10  # seconds `docker stop` waits before SIGKILL, as Docker
RESOLV_CONF = "nameserver 127.0.0.11\noptions ndots:0\n"  # Docker's embedded DNS on user-defined networks
HOSTS_HEADER = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::\tip6-localnet",
                "ff00::\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
log = logging.getLogger("dockerd")


class APIError(Exception):
    def __init__(self, status: int, message: str = ""):
        super().__init__(message)
        self.status = status


def not_modified() -> APIError:
    return APIError(304)  # start of a running container, stop of a stopped one: success, nothing done


@dataclass
class Container:
    id: str
    name: str
    image: Image
    reference: str  # the image as the user named it
    cmd: list[str]
    network: str
    ip: str | None
    config: dict  # what create received: Tty, OpenStdin, StdinOnce, Env, WorkingDir, Labels, ...
    host_config: dict
    created: float = field(default_factory=time.time)
    status: str = "created"  # created, running, exited
    exit_code: int = 0
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    exits: int = 0  # how many runs have ended (the `next-exit` wait condition)
    removed: bool = False
    process: runtime.Process | None = None
    service: subprocess.Popen | None = None
    endpoints: list[dn.Endpoint] = field(default_factory=list)
    directory: Path | None = None
    output: runtime.Output = field(default_factory=runtime.Output)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def pid(self) -> int:
        return self.process.pid if self.running and self.process else 0

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def hostname(self) -> str:
        return self.config.get("Hostname") or self.id[:12]

    def environment(self, extra: list[str] | None = None) -> dict[str, str]:
        """PATH from the image, HOSTNAME, TERM with a TTY, HOME, then the user's -e."""
        env = dict(item.split("=", 1) for item in self.image.config()["Env"])
        env.update(HOSTNAME=self.hostname, HOME="/root", **({"TERM": "xterm"} if self.tty else {}))
        for item in [*(self.config.get("Env") or []), *(extra or [])]:
            name, _, value = item.partition("=")
            env[name] = value
        return env


@dataclass
class Exec:
    id: str
    container: Container
    cmd: list[str]
    tty: bool
    stdin: bool
    env: list[str]
    console: list[int]  # [height, width] of the client's terminal
    exit_code: int | None = None
    pid: int = 0
    started: bool = False
    master: int | None = None


@dataclass
class Stdin:
    """Where a client's input goes: a pty master (never closed by the client's EOF) or a pipe."""
    write: Callable[[bytes], Any]
    close: Callable[[], None]

    @classmethod
    def of(cls, process: subprocess.Popen, master: int | None) -> "Stdin | None":
        if master is not None:
            return cls(lambda data: os.write(master, data), lambda: None)
        if process.stdin is None:
            return None
        pipe = process.stdin
        return cls(lambda data: (pipe.write(data), pipe.flush()), pipe.close)


def truthy(value: str | None) -> bool:
    """A boolean query parameter as the CLI (1, true) and the SDK (True) send it."""
    return (value or "").lower() in ("1", "true")


def rfc3339(moment: float) -> str:
    if not moment:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration, as `docker ps` shows it."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 120:
        return "About a minute"
    if seconds < 3600:
        return f"{int(seconds // 60)} minutes"
    if seconds < 7200:
        return "About an hour"
    return f"{int(seconds // 3600)} hours"


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream: [stream, 0, 0, 0, length (big endian)] + data."""
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def find_executable(pid: int, command: str, path: str) -> bool:
    """Whether command resolves (as execvp would) inside the root of the container whose PID 1 is pid."""
    root = f"/proc/{pid}/root"
    candidates = [command] if "/" in command else [f"{d}/{command}" for d in path.split(":") if d]
    return any(os.access(root + c if c.startswith("/") else f"{root}/{c}", os.X_OK) for c in candidates)


def hosts_text(container: Container) -> str:
    """Docker's /etc/hosts on a user-defined network: its lines and the container's own addresses
    and hostname (the other containers' names are the embedded DNS server's)."""
    lines = [*HOSTS_HEADER, *(f"{address}\t{container.hostname}" for e in container.endpoints for address in e.addresses)]
    return "\n".join(dict.fromkeys(lines)) + "\n"


class Daemon:
    def __init__(self, ds: Synchronous, state: Path, resolver: EmbeddedDNS, images: Path = IMAGES_DIR):
        self.ds = ds
        self.state = state
        self.resolver = resolver
        self.images = images
        self.containers: dict[str, Container] = {}
        self.execs: dict[str, Exec] = {}
        self.lock = threading.RLock()  # the datastore face and the maps are shared by request threads
        self.events = threading.Condition()  # container state changes (exits, removals)

    # -- containers ----------------------------------------------------------------------------
    def find(self, ref: str) -> Container:
        for container in list(self.containers.values()):
            if ref in (container.id, container.name, "/" + container.name) or (len(ref) >= 3 and container.id.startswith(ref)):
                return container
        raise APIError(404, f"No such container: {ref}")

    def create(self, name: str | None, body: dict) -> dict:
        reference = body.get("Image") or ""
        image = lookup(reference)
        if image is None:
            raise APIError(404, f"No such image: {reference if ':' in reference else reference + ':latest'}")
        name = name or secrets.token_hex(4)
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
            raise APIError(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        for other in self.containers.values():
            if other.name == name:
                raise APIError(409, f'Conflict. The container name "/{name}" is already in use by container '
                                    f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')
        host_config = body.get("HostConfig") or {}
        network = host_config.get("NetworkMode") or "default"
        if network in ("default", "bridge", "host", "none"):
            raise APIError(400, f"network {network} is not available in calisim: use --net with a calico network")
        try:
            with self.lock:
                dn.find_network(self.ds, network)
        except dn.DockerError as error:  # not 404: on a 404 from create the CLI tries to pull the image
            raise APIError(400, str(error)) from None
        settings = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).get(network) or {}
        ip = (settings.get("IPAMConfig") or {}).get("IPv4Address") or None
        cmd = [*(body.get("Entrypoint") or []), *(body.get("Cmd") or ([] if body.get("Entrypoint") else image.cmd))]
        container = Container(secrets.token_hex(32), name, image, reference, cmd, network, ip, body, host_config)
        self.containers[container.id] = container
        return {"Id": container.id, "Warnings": []}

    def files(self, container: Container) -> dict[str, str]:
        """Docker's /etc/hosts, /etc/hostname and /etc/resolv.conf for the container (bind-mounted)."""
        for name, text in (("hosts", hosts_text(container)), ("hostname", container.hostname + "\n"),
                           ("resolv.conf", RESOLV_CONF)):
            (container.directory / name).write_text(text)
        return {name: str(container.directory / name) for name in ("hosts", "hostname", "resolv.conf")}

    def write_hosts(self, container: Container) -> None:
        """The container's /etc/hosts once its endpoints changed (in place: the bind mount follows the inode)."""
        (container.directory / "hosts").write_text(hosts_text(container))

    def spec(self, container: Container) -> dict:
        """What init.py needs: the layers, the writable layer, Docker's files, the command."""
        for sub in ("upper", "work", "merged"):
            (container.directory / sub).mkdir(parents=True, exist_ok=True)
        return {"lowerdirs": [str(d) for d in container.image.lowerdirs(self.images)],
                "upper": str(container.directory / "upper"), "work": str(container.directory / "work"),
                "merged": str(container.directory / "merged"), "hostname": container.hostname,
                "files": self.files(container), "env": container.environment(),
                "cmd": container.cmd, "workdir": container.config.get("WorkingDir") or "/",
                "console": container.host_config.get("ConsoleSize") or [0, 0]}

    def start(self, container: Container) -> None:
        """Start PID 1, join the network, then let the command run (Docker's order)."""
        if container.running:
            raise not_modified()
        if not all(d.is_dir() for d in container.image.lowerdirs(self.images)):
            raise APIError(500, f"image {container.image.name} is not built in {self.images}: run `make setup`")
        container.directory = self.state / "containers" / container.id
        began = time.monotonic()
        try:
            process = runtime.start(self.spec(container), container.tty, bool(container.config.get("OpenStdin")))
        except runtime.RuntimeFailure as error:
            raise APIError(500, f"failed to create task for container: {error}") from None
        rooted = time.monotonic()
        try:
            self.resolver.serve(container.id, socket_in(process.pid), lambda: [e.network_id for e in container.endpoints])
        except OSError as error:
            process.kill()
            raise APIError(500, f"failed to start the embedded DNS server of {container.name}: {error}") from None
        try:
            with self.lock:
                network = dn.find_network(self.ds, container.network)
                container.endpoints = [dn.connect(self.ds, network, container.name, process.pid, container.ip)]
        except (dn.DockerError, DatastoreError) as error:
            self.resolver.close(container.id)
            process.kill()
            raise APIError(500, f"failed to create endpoint {container.name} on network {container.network}: {error}")
        self.joined(container, container.endpoints[0])
        joined = time.monotonic()
        try:
            process.go()
        except runtime.RuntimeFailure as error:
            self.resolver.close(container.id)
            try:
                self.leave_networks(container)
            except (dn.DockerError, DatastoreError) as leaving:  # the command's failure is the one to report
                log.warning("%s could not leave its network: %s", container.name, leaving)
            container.exit_code, container.error = error.code, str(error)
            raise APIError(400, "failed to create task for container: failed to create shim task: OCI runtime create "
                                "failed: runc create failed: unable to start container process: error during container "
                                f"init: {error}: unknown") from None
        container.output.begin()
        with self.events:
            container.process, container.status, container.started_at = process, "running", time.time()
            container.exit_code, container.error = 0, ""
            self.events.notify_all()
        if container.image.services:
            container.service = subprocess.Popen(["nsenter", "-t", str(process.pid), "-n", "--", *container.image.services],
                                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sources = {process.master: 1} if process.master is not None else \
            {process.popen.stdout.fileno(): 1, process.popen.stderr.fileno(): 2}
        pumping = threading.Thread(target=runtime.pump, args=(sources, container.output), daemon=True)
        pumping.start()
        threading.Thread(target=self.monitor, args=(container, process, pumping), daemon=True).start()
        log.info("started %s (PID %d): root and namespaces %.3f s, network %.3f s, total %.3f s", container.name,
                 process.pid, rooted - began, joined - rooted, time.monotonic() - began)

    def monitor(self, container: Container, process: runtime.Process, pumping: threading.Thread) -> None:
        """When PID 1 ends: its output is all logged, the network is left, waiters are told;
        --rm removes the container."""
        code = process.popen.wait()
        self.resolver.close(container.id)
        pumping.join()
        if container.service is not None:
            container.service.kill()
            container.service.wait()
            container.service = None
        try:
            self.leave_networks(container)
        except Exception as error:
            log.warning("%s could not leave its network: %s", container.name, error)
        for stream in (process.popen.stdin, process.popen.stdout, process.popen.stderr):
            if stream is not None:
                stream.close()
        if process.master is not None:
            os.close(process.master)
        with self.events:
            container.status, container.exit_code, container.finished_at = "exited", code, time.time()
            container.exits += 1
            self.events.notify_all()
        if container.host_config.get("AutoRemove"):
            self.remove(container, force=True)

    def joined(self, container: Container, endpoint: dn.Endpoint) -> None:
        """A new endpoint: in the container's /etc/hosts, and in the name table before the API answers."""
        self.write_hosts(container)
        self.resolver.record(endpoint, present=True)

    def left(self, container: Container, endpoint: dn.Endpoint) -> None:
        """An endpoint gone (no longer in container.endpoints): out of /etc/hosts and of the name table."""
        self.write_hosts(container)
        self.resolver.record(endpoint, present=False)

    def leave_networks(self, container: Container) -> None:
        endpoints, container.endpoints = container.endpoints, []
        for endpoint in endpoints:
            with self.lock:
                dn.disconnect(self.ds, endpoint)
            self.left(container, endpoint)

    def wait_for(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        with self.events:
            return self.events.wait_for(condition, timeout)

    def send_signal(self, container: Container, signum: int) -> None:
        if not container.running:
            raise APIError(409, f"cannot kill container: {container.name}: container {container.id} is not running")
        try:
            os.kill(container.process.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self, container: Container, signum: int = signal.SIGKILL) -> None:
        self.send_signal(container, signum)
        if signum == signal.SIGKILL:
            self.wait_for(lambda: not container.running)

    def stop(self, container: Container, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after timeout seconds (PID 1 without a TERM handler ignores it)."""
        if not container.running:
            raise not_modified()
        self.send_signal(container, signal.SIGTERM)
        if not self.wait_for(lambda: not container.running, timeout):
            self.kill(container)

    def remove(self, container: Container, force: bool) -> None:
        if container.running and not force:
            raise APIError(409, f"cannot remove container \"/{container.name}\": container is running: "
                                "stop the container before removing or force remove")
        if container.running:
            self.kill(container)
        with self.events:
            if container.removed:
                return
            self.containers.pop(container.id, None)
            for exec_id in [e.id for e in list(self.execs.values()) if e.container is container]:
                del self.execs[exec_id]
            if container.directory is not None:
                shutil.rmtree(container.directory, ignore_errors=True)
            container.removed = True
            self.events.notify_all()

    def top(self, container: Container) -> dict:
        """`ps -ef` of the container's processes (host PIDs, as Docker shows them)."""
        if not container.running:
            raise APIError(409, f"container {container.id} is not running")
        namespace = os.stat(f"/proc/{container.pid}/ns/pid").st_ino
        lines = subprocess.run(["ps", "-ef"], capture_output=True, text=True, check=True).stdout.splitlines()
        titles = lines[0].split()
        processes = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            try:
                if os.stat(f"/proc/{fields[1]}/ns/pid").st_ino == namespace:
                    processes.append(fields)
            except OSError:
                continue
        return {"Titles": titles, "Processes": processes}

    # -- JSON views ----------------------------------------------------------------------------
    def container_json(self, container: Container) -> dict:
        networks = {}
        for endpoint in container.endpoints:
            network = self.resolver.network(endpoint.network_id)
            if network is None:
                with self.lock:
                    network = dn.find_network(self.ds, endpoint.network_id)
            networks[network.name] = {"NetworkID": network.id, "EndpointID": endpoint.id, "Gateway": GATEWAY,
                                      "IPAddress": endpoint.address.split("/")[0], "IPPrefixLen": 32,
                                      "GlobalIPv6Address": endpoint.address6.split("/")[0],
                                      "GlobalIPv6PrefixLen": 128 if endpoint.address6 else 0,
                                      "MacAddress": endpoint.mac, "Aliases": [container.name],
                                      "IPAMConfig": {"IPv4Address": container.ip} if container.ip else None}
        if not networks:  # a stopped container keeps its network's name, without an endpoint
            networks[container.network] = {"NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                                           "IPPrefixLen": 0, "MacAddress": "", "Aliases": [container.name],
                                           "IPAMConfig": {"IPv4Address": container.ip} if container.ip else None}
        config = container.config
        return {"Id": container.id, "Name": "/" + container.name, "Created": rfc3339(container.created),
                "Path": container.cmd[0] if container.cmd else "", "Args": container.cmd[1:],
                "Image": f"sha256:{container.image.name}", "RestartCount": 0, "Driver": "overlay2",
                "State": {"Status": container.status, "Running": container.running, "Paused": False,
                          "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": container.pid,
                          "ExitCode": container.exit_code, "Error": container.error,
                          "StartedAt": rfc3339(container.started_at), "FinishedAt": rfc3339(container.finished_at)},
                "Config": {"Hostname": container.hostname, "Domainname": "", "User": config.get("User") or "",
                           "AttachStdin": bool(config.get("AttachStdin")), "AttachStdout": bool(config.get("AttachStdout")),
                           "AttachStderr": bool(config.get("AttachStderr")), "Tty": container.tty,
                           "OpenStdin": bool(config.get("OpenStdin")), "StdinOnce": bool(config.get("StdinOnce")),
                           "Env": [f"{k}={v}" for k, v in container.environment().items() if k != "HOME"],
                           "Cmd": config.get("Cmd") or list(container.image.cmd), "Image": container.reference,
                           "WorkingDir": config.get("WorkingDir") or "", "Entrypoint": config.get("Entrypoint"),
                           "Labels": config.get("Labels") or {}},
                "HostConfig": {"NetworkMode": container.network, "AutoRemove": bool(container.host_config.get("AutoRemove")),
                               "LogConfig": {"Type": "json-file", "Config": {}},
                               "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}},
                "NetworkSettings": {"Networks": networks, "SandboxKey": f"/proc/{container.pid}/ns/net" if container.running else ""},
                "Mounts": []}

    def container_summary(self, container: Container) -> dict:
        full = self.container_json(container)
        if container.running:
            status = f"Up {human_duration(time.time() - container.started_at)}"
        elif container.exits:
            status = f"Exited ({container.exit_code}) {human_duration(time.time() - container.finished_at)} ago"
        else:
            status = "Created"
        return {"Id": container.id, "Names": ["/" + container.name], "Image": container.reference,
                "ImageID": full["Image"], "Command": " ".join(container.cmd), "Created": int(container.created),
                "State": container.status, "Status": status, "Ports": [], "Labels": full["Config"]["Labels"],
                "NetworkSettings": {"Networks": full["NetworkSettings"]["Networks"]}, "HostConfig": full["HostConfig"],
                "Mounts": []}

    def network_json(self, network: dn.Network) -> dict:
        with self.lock:
            endpoints = dn.endpoints(self.ds, network)
        containers = {}
        for endpoint in endpoints:
            local = next((c for c in self.containers.values() if endpoint in c.endpoints), None)
            if local is not None:
                containers[local.id] = {"Name": local.name, "EndpointID": endpoint.id, "MacAddress": endpoint.mac,
                                        "IPv4Address": endpoint.address, "IPv6Address": endpoint.address6}
        ipam = {"Subnet": network.pool, **({"IPRange": network.ip_range} if network.ip_range else {}),
                **({"Gateway": network.gateway.split("/")[0]} if network.gateway and network.gateway != "0.0.0.0/0" else {})}
        return {"Name": network.name, "Id": network.id, "Created": network.created or "0001-01-01T00:00:00Z",
                "Scope": "global", "Driver": network.driver,
                "EnableIPv6": bool(network.pool_id6), "Internal": False, "Attachable": False, "Ingress": False,
                "IPAM": {"Driver": network.ipam_driver, "Options": {},
                         "Config": [ipam, *([{"Subnet": network.pool6}] if network.pool6 else [])]},
                "Containers": containers, "Options": network.options or {}, "Labels": network.labels or {}}

    # -- exec ------------------------------------------------------------------------------------
    def exec_create(self, container: Container, body: dict) -> dict:
        if not container.running:
            raise APIError(409, f"container {container.id} is not running")
        if not body.get("Cmd"):
            raise APIError(400, "No exec command specified")
        execution = Exec(secrets.token_hex(32), container, list(body["Cmd"]), bool(body.get("Tty")),
                         bool(body.get("AttachStdin")), list(body.get("Env") or []), body.get("ConsoleSize") or [0, 0])
        self.execs[execution.id] = execution
        return {"Id": execution.id}

    def exec_spawn(self, execution: Exec) -> subprocess.Popen | None:
        """The exec's process in the container (None, with ExitCode 127, if its command is not there)."""
        container = execution.container
        if not container.running:
            raise APIError(409, f"container {container.id} is not running")
        if execution.started:
            raise APIError(409, f"exec command {execution.id} has already run")
        execution.started = True
        env = container.environment(execution.env)
        if execution.tty:
            env["TERM"] = "xterm"
        if not find_executable(container.pid, execution.cmd[0], env.get("PATH", "")):
            execution.exit_code = 127
            return None
        argv = runtime.exec_argv(container.pid, execution.cmd, execution.tty)
        if execution.tty:
            execution.master, slave = runtime.terminal_in(container.pid)
            runtime.resize(execution.master, *execution.console)
            process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
            os.close(slave)
        else:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE if execution.stdin else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        execution.pid = process.pid
        return process


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
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
            self._dispatch(self.command, path, query, body)
        except APIError as error:
            self._send(error.status, {"message": str(error)} if error.status != 304 else None)
        except dn.DockerError as error:
            status = 404 if "not found" in str(error) else 500
            self._send(status, {"message": str(error)})
        except (json.JSONDecodeError, ValueError) as error:
            self._send(400, {"message": f"invalid request: {error}"})
        except (BrokenPipeError, ConnectionResetError):
            log.debug("%s %s: the client hung up before the answer", self.command, self.path)
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
            return self._exec(method, parts[1], parts[2], query, body)
        if parts[:1] == ["images"]:
            raise APIError(404, f"pull access denied for {query.get('fromImage', '?')}, repository does not exist "
                                f"or may require 'docker login' (calisim has only the images {', '.join(IMAGES)})")
        raise APIError(404, f"page not found: {method} {path}")

    def _networks(self, method: str, parts: list[str], query: dict, body: dict) -> None:
        d = self.daemon
        if parts == ["create"] and method == "POST":
            with d.lock:
                network = dn.create_network(d.ds, dn.NetworkRequest.from_api(body))
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
            if not container.running:
                raise APIError(409, f"container {container.id} is not running")
            if parts[1] == "connect":
                ip = ((body.get("EndpointConfig") or {}).get("IPAMConfig") or {}).get("IPv4Address")
                with d.lock:
                    endpoint = dn.connect(d.ds, network, container.name, container.pid, ip)
                container.endpoints.append(endpoint)
                d.joined(container, endpoint)
            else:
                for endpoint in [e for e in container.endpoints if e.network_id == network.id]:
                    with d.lock:
                        dn.disconnect(d.ds, endpoint)
                    container.endpoints.remove(endpoint)
                    d.left(container, endpoint)
            return self._send(200, b"")
        raise APIError(404, f"page not found: {method} /networks/{'/'.join(parts)}")

    def _containers(self, method: str, parts: list[str], query: dict, body: dict) -> None:
        d = self.daemon
        if parts == ["create"] and method == "POST":
            return self._send(201, d.create(query.get("name"), body))
        if parts == ["json"] and method == "GET":
            filters = parse_filters(query.get("filters"))
            everyone = [c for c in list(d.containers.values())
                        if (c.running or truthy(query.get("all")) or "status" in filters) and matches(c, filters)]
            return self._send(200, [d.container_summary(c) for c in sorted(everyone, key=lambda c: -c.created)])
        container = d.find(parts[0])
        action = parts[1] if len(parts) > 1 else ""
        if not action and method == "DELETE":
            d.remove(container, truthy(query.get("force")))
            return self._send(204)
        if method == "GET" and action in ("json", "top", "logs"):
            if action == "logs":
                return self._logs(container, query)
            return self._send(200, d.container_json(container) if action == "json" else d.top(container))
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
        timeout = float(query["t"]) if query.get("t") not in (None, "") else STOP_TIMEOUT
        actions = {"start": lambda: d.start(container),
                   "stop": lambda: d.stop(container, timeout),
                   "kill": lambda: d.kill(container, signal_number(query.get("signal") or "KILL")),
                   "restart": lambda: (d.stop(container, timeout) if container.running else None, d.start(container))}
        if action not in actions:
            raise APIError(404, f"page not found: {method} /containers/{'/'.join(parts)}")
        actions[action]()
        return self._send(204)

    # -- streams -----------------------------------------------------------------------------
    def _upgrade(self, tty: bool) -> socket.socket:
        """Docker's byte-exact 101, then the connection is a raw two-way pipe."""
        kind = "raw-stream" if tty else "multiplexed-stream"
        self.wfile.write(f"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.{kind}\r\n"
                         "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
        self.wfile.flush()
        self.close_connection = True
        return self.connection

    @staticmethod
    def _listen(output: runtime.Output) -> tuple[queue.Queue, Callable]:
        """Subscribe to output before anything can be missed; chunks come as (stream, bytes), then (0, None)."""
        chunks: queue.Queue = queue.Queue()

        def write(stream: int, chunk: bytes | None) -> None:
            chunks.put((stream, chunk))

        output.subscribe(write)
        return chunks, write

    @staticmethod
    def _stream(output: runtime.Output, listening: tuple[queue.Queue, Callable], tty: bool,
                connection: socket.socket) -> None:
        """Send output as it comes (framed unless tty) until its run ends or the client goes."""
        chunks, write = listening
        try:
            while (item := chunks.get())[1] is not None:
                connection.sendall(item[1] if tty else frame(*item))
        except OSError:
            pass
        finally:
            output.unsubscribe(write)

    def _copy_stdin(self, connection: socket.socket, target: Callable[[], Stdin | None]) -> None:
        """The client's bytes to the container's stdin; the client's half-close closes it (StdinOnce)."""
        stdin: Stdin | None = None
        first = True
        while True:
            try:
                chunk = connection.recv(65536)
            except OSError:
                chunk = b""
            if first:
                stdin, first = target(), False
            try:
                if not chunk:
                    if stdin is not None:
                        stdin.close()
                    return
                if stdin is not None:
                    stdin.write(chunk)
            except (OSError, ValueError):  # the process has gone
                return

    def _attach(self, container: Container, query: dict) -> None:
        listening = self._listen(container.output) if truthy(query.get("stream")) else None
        connection = self._upgrade(container.tty)
        d = self.daemon
        if truthy(query.get("stdin")) and container.config.get("OpenStdin"):
            def stdin() -> Stdin | None:  # attach comes before start: wait for the run
                d.wait_for(lambda: container.running or container.removed, 30)
                process = container.process if container.running else None
                return None if process is None else Stdin.of(process.popen, process.master)
            threading.Thread(target=self._copy_stdin, args=(connection, stdin), daemon=True).start()
        if listening is not None:
            self._stream(container.output, listening, container.tty, connection)
        connection.shutdown(socket.SHUT_RDWR)

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
                                                      "arguments": execution.cmd[1:], "privileged": False, "user": ""},
                                    "OpenStdin": execution.stdin, "OpenStdout": True, "OpenStderr": True,
                                    "CanRemove": False, "ContainerID": execution.container.id, "DetachKeys": ""})
        if action == "resize" and method == "POST":
            runtime.resize(execution.master, int(query.get("h") or 0), int(query.get("w") or 0))
            return self._send(200, b"")
        if action == "start" and method == "POST":
            execution.console = body.get("ConsoleSize") or execution.console
            process = self.daemon.exec_spawn(execution)
            if body.get("Detach"):
                if process is not None:
                    threading.Thread(target=self._finish_exec, args=(execution, process), daemon=True).start()
                return self._send(200, b"")
            return self._exec_attached(execution, process)
        raise APIError(404, f"page not found: {method} /exec/{exec_id}/{action}")

    def _exec_attached(self, execution: Exec, process: subprocess.Popen | None) -> None:
        connection = self._upgrade(execution.tty)
        if process is None:
            message = (f'OCI runtime exec failed: exec failed: unable to start container process: exec: '
                       f'"{execution.cmd[0]}": executable file not found in $PATH: unknown\r\n').encode()
            connection.sendall(message if execution.tty else frame(1, message))
            connection.shutdown(socket.SHUT_RDWR)
            return
        sources = {execution.master: 1} if execution.tty else {process.stdout.fileno(): 1, process.stderr.fileno(): 2}
        if execution.stdin:
            stdin = Stdin.of(process, execution.master)
            threading.Thread(target=self._copy_stdin, args=(connection, lambda: stdin), daemon=True).start()
        output = runtime.Output()
        streaming = threading.Thread(target=self._stream, args=(output, self._listen(output), execution.tty, connection),
                                     daemon=True)
        streaming.start()
        runtime.pump(sources, output)
        streaming.join()
        self._finish_exec(execution, process)
        connection.shutdown(socket.SHUT_RDWR)

    def _finish_exec(self, execution: Exec, process: subprocess.Popen) -> None:
        code = process.wait()
        execution.exit_code = code if code >= 0 else 128 - code
        if execution.master is not None:
            os.close(execution.master)
            execution.master = None


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """`filters` as the CLI sends it ({"name": {"L": true}}) or older clients ({"name": ["L"]})."""
    raw = json.loads(text) if text else {}
    return {key: list(values) for key, values in raw.items()}


def matches(container: Container, filters: dict[str, list[str]]) -> bool:
    """Docker's `ps --filter`: name (a regular expression), id (a prefix), status, label, network;
    each key must match one of its values."""
    labels = container.config.get("Labels") or {}
    tests = {"name": lambda v: re.search(v, container.name) is not None,
             "id": lambda v: container.id.startswith(v),
             "status": lambda v: container.status == v,
             "network": lambda v: container.network == v,
             "label": lambda v: (labels.get(v.partition("=")[0]) == v.partition("=")[2]) if "=" in v else v in labels}
    for key, values in filters.items():
        if key not in tests:
            raise APIError(400, f"invalid filter '{key}'")
        if not any(tests[key](value) for value in values):
            return False
    return True


def signal_number(name: str) -> int:
    """A signal as the CLI sends it: 9, KILL, SIGKILL."""
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])
    except KeyError:
        raise APIError(400, f"Invalid signal: {name}") from None


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 refuses the docker CLI's parallel requests (rm -f a b c ...)


def serve(socket_path: Path, ds: Synchronous, state: Path) -> None:
    resolver = EmbeddedDNS(ds.endpoints)
    resolver.start()
    daemon = Daemon(ds, state, resolver)
    handler = type("BoundHandler", (Handler,), {"daemon": daemon})
    socket_path.unlink(missing_ok=True)
    server = _Server(str(socket_path), handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving the Docker API on %s", socket_path)
    try:
        server.serve_forever()
    finally:
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
