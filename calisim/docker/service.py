"""dockerd as a daemon: one emulated dockerd (`python -m calisim.docker`) per Calico host, as
the seed's machines each ran Docker; up once its socket, /run/docker/docker.sock in the host,
exists."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..process.daemon import Daemon


@dataclass
class Dockerd(Daemon):
    """The dockerd of the host whose run directory is state_dir (its /run/docker is state_dir/docker)."""

    state_dir: Path
    name: str = "dockerd"  # "dockerd in host1"
    host_pid: int = 0  # a process of the host: dockerd takes its host name from its UTS namespace (docker info)
    start_timeout: float = 20.0
    ready_interval: float = 0.1

    @property
    def socket(self) -> Path:
        return self.state_dir / "docker" / "docker.sock"

    @property
    def log(self) -> Path:
        return self.state_dir / "log" / "dockerd.log"

    def command(self) -> list[str]:
        uts = ["nsenter", "-t", str(self.host_pid), "-u", "--"] if self.host_pid else []
        return [*uts, sys.executable, "-m", "calisim.docker"]

    def prepare(self) -> None:
        self.socket.unlink(missing_ok=True)  # a stopped or killed one's

    def ready(self) -> bool:
        return self.socket.exists()
