"""What dockerd knows of a container (Container), of a `docker exec` in it (Exec), and where a
client's input goes (Stdin): the models the store (daemon.py) keeps and the Engine API (api.py)
answers from."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import runtime
from .images import Image
from .restarts import READABLE_LOGS, RestartPolicy
from ..datastore.resources.docker import Endpoint


@dataclass
class Attachment:
    """A network the container is to be on, as create (NetworkMode and its EndpointsConfig) or a
    connect before start asked: joined at each start, in this order."""
    network: str  # as the user named it
    ipv4: str | None = None  # --ip
    ipv6: str | None = None  # --ip6
    aliases: tuple[str, ...] = ()  # --network-alias
    links: tuple[str, ...] = ()  # --link NAME[:ALIAS] on this network, as the client sent them

    @classmethod
    def from_api(cls, network: str, settings: dict | None) -> "Attachment":
        """From an EndpointSettings of the API (create's NetworkingConfig, or connect's EndpointConfig;
        the CLI puts a user-defined network's --link there)."""
        settings = settings or {}
        ipam = settings.get("IPAMConfig") or {}
        return cls(network, ipam.get("IPv4Address") or None, ipam.get("IPv6Address") or None,
                   tuple(settings.get("Aliases") or ()), tuple(settings.get("Links") or ()))

    def link_aliases(self) -> dict[str, str]:
        """Each link's alias (lower case, as names resolve) -> the linked container's name, as
        Docker parses NAME[:ALIAS] (no alias: the name itself; a leading / dropped)."""
        parsed = (link.partition(":") for link in self.links)
        return {(alias or name).strip("/").lower(): name.strip("/") for name, _, alias in parsed}

    def ipam_config(self) -> dict | None:
        """Inspect's IPAMConfig: the addresses asked for, null if none was."""
        asked = {key: value for key, value in (("IPv4Address", self.ipv4), ("IPv6Address", self.ipv6)) if value}
        return asked or None


@dataclass
class Container:
    id: str
    name: str
    image: Image
    reference: str  # the image as the user named it
    cmd: list[str]
    attachments: list[Attachment]  # NetworkMode's first, then those connected before a start
    config: dict  # what create received: Tty, OpenStdin, StdinOnce, Env, WorkingDir, Labels, ...
    host_config: dict
    created: float = field(default_factory=time.time)
    status: str = "created"  # created, running, exited
    exit_code: int = 0
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    exits: int = 0  # how many runs have ended (the `next-exit` wait condition)
    restart_count: int = 0  # restarts by the policy since the user last started it
    restart_delay: float = 0.0  # the last wait before a restart (restartmanager's back-off)
    manually_stopped: bool = False  # `docker stop` since the last start: no restart by the policy
    removed: bool = False
    process: runtime.Process | None = None
    service: subprocess.Popen | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    links: dict[tuple[str, str], str] = field(default_factory=dict)  # (network ID, alias) -> linked name
    directory: Path | None = None
    output: runtime.Output = field(default_factory=runtime.Output)

    @property
    def network(self) -> str:
        """NetworkMode: the network create named."""
        return self.attachments[0].network

    @property
    def aliases(self) -> tuple[str, ...]:
        """Docker adds the short ID to every endpoint's aliases on a user-defined network."""
        return (self.id[:12],)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def pid(self) -> int:
        return self.process.pid if self.running and self.process else 0

    @property
    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy.from_api(self.host_config.get("RestartPolicy"))

    @property
    def logs_readable(self) -> bool:
        """Whether `docker logs` can read its log driver's output."""
        return (self.host_config.get("LogConfig") or {}).get("Type", "json-file") in READABLE_LOGS

    def stop_timeout(self, default: float) -> float:
        """--stop-timeout if create was given one, else the daemon's default."""
        value = self.config.get("StopTimeout")
        return default if value is None else float(value)

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def hostname(self) -> str:
        """--hostname, else the host's own on `--net host`, else the short ID, as Docker names it."""
        return self.config.get("Hostname") or (socket.gethostname() if self.network == "host" else self.id[:12])

    def environment(self, extra: list[str] | None = None, home: str = "/root") -> dict[str, str]:
        """PATH from the image, HOSTNAME, TERM with a TTY, HOME (the user's), then the user's -e.
        A bare `-e NAME` arrives bare when the client's environment has no NAME (the CLI fills
        in NAME=value when it has): the container does not get it, as Docker documents."""
        env = dict(item.split("=", 1) for item in self.image.config()["Env"])
        env.update(HOSTNAME=self.hostname, HOME=home, **({"TERM": "xterm"} if self.tty else {}))
        for item in [*(self.config.get("Env") or []), *(extra or [])]:
            name, assigned, value = item.partition("=")
            if assigned:
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
    user: str = ""  # -u: name or UID[:group or GID]; empty: the container's user
    workdir: str = ""  # -w; empty: the container's working directory
    detach_keys: bytes = b""  # what ends a client's attachment (with a TTY)
    exit_code: int | None = None
    pid: int = 0
    started: bool = False
    master: int | None = None
    failure: str = ""  # why the process could not start (written to the client in-band)


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
