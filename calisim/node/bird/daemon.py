"""BIRD as a daemon, in its three roles: a Calico node's and a route reflector's (run and
re-rendered by confd from etcd), and a fabric router's (its config rendered by the topology,
started by the cluster).  Same start line, files and ready check in each; the files are the
host's /var/run/calico and /var/log/calico (NodePaths), so `birdc -s /var/run/calico/bird.ctl`
works on every host that runs one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...process.daemon import Daemon
from ..paths import NodePaths
from .birdc import BirdControl, BirdError
from .config import write_checked


@dataclass
class Bird(Daemon):
    """recovery: a restart after BIRD died (Calico's run script always passes -R): graceful
    restart recovery keeps the kernel's routes until the sessions are back (End-of-RIB)."""

    paths: NodePaths
    name: str = "BIRD"
    recovery: bool = False
    start_timeout: float = 10.0
    # a connect to its socket a check (refused at once until it listens): `calicoctl node run`
    # waits on it, and in a bring-up the next host's node run, and so its BIRD, waits on that
    ready_interval: float = 0.01

    @property
    def log(self) -> Path:
        return self.paths.bird_log

    @property
    def pid_file(self) -> Path:
        return self.paths.bird_pid_file

    @property
    def control(self) -> BirdControl:
        return BirdControl(self.paths.bird_socket)

    def command(self) -> list[str]:
        return (["bird", "-f", "-c", str(self.paths.bird_config), "-s", str(self.paths.bird_socket),
                 "-P", str(self.paths.bird_pid_file)] + (["-R"] if self.recovery else []))

    def prepare(self) -> None:
        self.paths.bird_socket.unlink(missing_ok=True)  # a killed BIRD's

    def ready(self) -> bool:
        try:
            self.control.command("show status")
            return True
        except BirdError:
            return False

    def configure(self, text: str) -> bool:
        """Write text as BIRD's config once `bird -p` accepts it (BirdError if not); False if unchanged."""
        return write_checked(text, self.paths.bird_config)
