"""dockerd as a daemon: one emulated dockerd (`python -m calisim.docker`) per Calico host, as
the seed's machines each ran Docker; up once its socket, /run/docker/docker.sock in the host,
exists.

A cluster has it forked by the run's node zygote (calisim.node.zygote) into the namespaces of
the host's shell (a host on another server: by that server's own zygote): each dockerd as its
own interpreter held ~35 MiB and spent ~0.5 s of CPU importing; forked, it shares the imported
pages with every other dockerd and calico-node.  It is still a process of its own in its host,
with the same command line, stopped by its PID."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..node import zygote_client
from ..process.daemon import Daemon, DaemonError

MODULE = "calisim.docker"


@dataclass
class Dockerd(Daemon):
    """The dockerd of the host whose run directory is state_dir (its /run/docker is state_dir/docker)."""

    state_dir: Path
    name: str = "dockerd"  # "dockerd in host1"
    host_pid: int = 0  # a process of the host: dockerd takes its host name from its UTS namespace (docker info)
    start_timeout: float = 20.0
    ready_interval: float = 0.02  # a stat a check: a cluster's start, and so its first step, waits on it

    @property
    def socket(self) -> Path:
        return self.state_dir / "docker" / "docker.sock"

    @property
    def log(self) -> Path:
        return self.state_dir / "log" / "dockerd.log"

    def command(self) -> list[str]:
        uts = ["nsenter", "-t", str(self.host_pid), "-u", "--"] if self.host_pid else []
        return [*uts, sys.executable, "-m", MODULE]

    def fork(self, zygote_socket: Path, environment: dict[str, str]) -> zygote_client.ForkedProcess:
        """prepare, then forked by the zygote at zygote_socket (fork_request); ZygoteError if the
        zygote does not answer (the caller then uses start)."""
        self.prepare()
        return zygote_client.spawn_logged(**self.fork_request(zygote_socket, environment))

    def fork_request(self, zygote_socket: Path, environment: dict[str, str]) -> dict:
        """What the zygote at zygote_socket is asked for: this dockerd in the namespaces of the
        host's process host_pid, with environment, its output appended to the log (the arguments
        of zygote_client.spawn_logged; a host on another server has its server's zygote asked
        over ssh: zygote_client.fork_requested)."""
        return {"module": MODULE, "args": [], "log": str(self.log), "socket_path": str(zygote_socket),
                "env": environment, "namespaces_of": self.host_pid}

    def prepare(self) -> None:
        self.socket.unlink(missing_ok=True)  # a stopped or killed one's

    def ready(self) -> bool:
        return self.socket.exists()

    def wait_ready(self, process) -> None:
        """As every daemon, and a dockerd that exited says why (its last line: a bad daemon.json's)."""
        try:
            super().wait_ready(process)
        except DaemonError as error:
            raise DaemonError(f"{error}: {self.last_words()}" if self.last_words() else str(error)) from None

    def last_words(self) -> str:
        """The last line of dockerd's log: why it stopped, when it stopped on its own."""
        try:
            with open(self.log, "rb") as log:
                log.seek(max(0, log.seek(0, 2) - 4096))
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""
