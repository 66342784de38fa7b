"""calico-node and the route reflector as daemons: how `calicoctl node run` and `routereflector
run` start one in the background and stop the one running before.

Both are `python -m MODULE ...` in a session of their own, their output in their log
(NodePaths.node_log), their pid file written once they are up; forked by the run's node zygote
when there is one (imports done, pages shared), else executed.  Their ready check is what they
say on a status pipe while they start (``READY`` or ``ERROR``), relayed as the containers'
`docker run` did.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..process import pids
from ..process.daemon import Daemon, DaemonError
from . import zygote_client
from .paths import NodePaths
from .zygote import MODULES

NODE_START_TIMEOUT = 60.0
# calico/node's settings read from its environment (`docker run -e ...` for the container): kept
# beside its pid file, as the container kept them, so that it can be started again with them
NODE_SETTINGS = ("CALICO_IPIP_BACKEND", "CALICO_IPV4POOL_CIDR", "CALICO_IPV6POOL_CIDR", "CALICO_LIBNETWORK_ENABLED",
                 "FELIX_IPV6SUPPORT", "IP6_AUTODETECTION_METHOD", "NO_DEFAULT_POOLS")


@dataclass
class NodeDaemon(Daemon):
    """calico-node (module calisim.node), or a route reflector (calisim.node.routereflector with
    its own paths: NodePaths(daemon="routereflector", ...))."""

    paths: NodePaths
    args: list[str] = field(default_factory=list)
    module: str = "calisim.node"
    name: str = "calico-node"  # in "Starting NAME (pid N)"
    start_timeout: float = NODE_START_TIMEOUT

    @property
    def log(self) -> Path:
        return self.paths.node_log

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]

    def stop_running(self) -> bool:
        """Stop the one running now (TERM, KILL after stop_timeout); False if none runs."""
        pid = self.running_pid()
        if pid is None:
            return False
        pids.stop([pid], self.stop_timeout)
        return True

    @property
    def settings_file(self) -> Path:
        return self.paths.run_dir / f"{self.paths.daemon}.env"

    def settings(self) -> dict[str, str]:
        """The NODE_SETTINGS it was last started with ({} if unknown)."""
        try:
            return json.loads(self.settings_file.read_text())
        except (OSError, ValueError):
            return {}

    def run(self) -> str:
        """Start it (its NODE_SETTINGS kept first) and relay what it says on its status pipe until
        it is up: its last line, or DaemonError."""
        self.settings_file.write_text(json.dumps({name: os.environ[name] for name in NODE_SETTINGS
                                                  if name in os.environ}))
        read_end, write_end = os.pipe()
        with open(self.log, "ab") as logfile:
            process = self.launch(write_end, logfile)
        os.close(write_end)
        print(f"Starting {self.name} (pid {process.pid}); logs in {self.paths.log_dir}")
        with os.fdopen(read_end) as status:
            return self.relay_startup(status, process)

    def launch(self, status_fd: int, logfile) -> "subprocess.Popen | zygote_client.ForkedProcess":
        """Forked by the run's node zygote when there is one, else executed."""
        args = [*self.args, "--status-fd", str(status_fd)]
        if os.environ.get(zygote_client.ZYGOTE_ENV) and self.module in MODULES:
            with open(os.devnull, "rb") as devnull:
                try:
                    return zygote_client.spawn(self.module, args, {0: devnull.fileno(), 1: logfile.fileno(),
                                                                   2: logfile.fileno(), status_fd: status_fd})
                except zygote_client.ZygoteError as error:
                    logfile.write(f"{error}; starting it without the zygote\n".encode())  # the log is binary
                    logfile.flush()
        return subprocess.Popen([sys.executable, "-m", self.module, *args], pass_fds=(status_fd,),
                                stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, start_new_session=True)

    def relay_startup(self, status, process: subprocess.Popen) -> str:
        """Print what the daemon says while it starts; return its final line, or raise DaemonError."""
        daemon = self.paths.daemon
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([status], [], [], 0.5)
            if not ready:
                continue
            line = status.readline()
            if not line:
                break
            word, _, text = line.rstrip("\n").partition(" ")
            if word == "READY":
                return text
            if word == "ERROR":
                process.wait(timeout=10)
                raise DaemonError(f"{'Calico node' if daemon == 'calico-node' else daemon} failed to start: {text}")
            print(text, flush=True)
        else:
            process.kill()
            process.wait()
            raise DaemonError(f"{daemon} did not finish starting within {self.start_timeout:.0f}s; see {self.log}")
        code = process.wait(timeout=10)
        raise DaemonError(f"{daemon} exited with code {code} during startup; see {self.log}")
