"""Where a calico-node keeps its files on its host.

A Mininet host mounts its own directories on these paths, so the same code finds its own
host's files; environment variables move them for tests.  Light on purpose: `calicoctl node`
imports it on every start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..process import pids


@dataclass(frozen=True)
class NodePaths:
    """Where a node keeps its state; a Mininet host mounts its own directories on these paths."""

    run_dir: Path = field(default_factory=lambda: Path(os.environ.get("CALICO_RUN_DIR", "/var/run/calico")))
    log_dir: Path = field(default_factory=lambda: Path(os.environ.get("CALICO_LOG_DIR", "/var/log/calico")))
    daemon: str = "calico-node"  # or "routereflector": the process whose pid file and log these are
    log_name: str = "node.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.daemon}.pid"

    @property
    def bird_config(self) -> Path:
        return self.run_dir / "bird.cfg"

    @property
    def bird_socket(self) -> Path:
        return self.run_dir / "bird.ctl"

    @property
    def bird_pid_file(self) -> Path:
        return self.run_dir / "bird.pid"

    plugin_dir: Path = field(default_factory=lambda: Path(os.environ.get("CALICO_PLUGIN_DIR", "/run/docker/plugins")))

    @property
    def node_log(self) -> Path:
        return self.log_dir / self.log_name

    @property
    def thread_dump(self) -> Path:
        return self.log_dir / "threads.log"

    @property
    def bird_log(self) -> Path:
        return self.log_dir / "bird.log"

    def running_pid(self) -> int | None:
        """The PID of this host's daemon (calico-node) if it is alive."""
        return pids.from_file(self.pid_file)
