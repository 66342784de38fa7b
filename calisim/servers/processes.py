"""Processes on a server, reached over its ssh connection: started with their environment spelt
out (ssh does not carry a local one), known by their PID *there*, found ready by a path there,
stopped by PID there, and unix sockets there reached through ssh's forwarding.

Nothing here reads a local path or /proc: a real server's are not this machine's.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .sim import ServerError

STOP_TIMEOUT = 10.0


@dataclass
class RemoteProcess:
    """A process on a server, known by its PID there: started over ssh (the session that started
    it lasts as long as it runs), or forked there by the server's node zygote (no session)."""

    server: str
    ssh: list[str]  # ssh up to its destination: a command follows
    pid: int  # on its server
    session: subprocess.Popen | None = None

    def poll(self) -> int | None:
        """Its exit code once its session has ended (None while it runs, and for a forked one)."""
        return self.session.poll() if self.session is not None else None


def run(ssh: list[str], server: str, command: str, timeout: float = 10.0) -> str:
    """command's output on the server; ServerError naming the server if it fails."""
    try:
        done = subprocess.run([*ssh, command], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ServerError(f"{server}: `{command}` did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        raise ServerError(f"{server}: `{command}` failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def start(ssh: list[str], server: str, argv: list[str], environment: dict[str, str], log: str) -> RemoteProcess:
    """argv on the server with exactly environment, its output appended to log there: the
    shell prints its PID and execs, so that PID is the process's."""
    spelt = shlex.join(["env", "-i", *(f"{key}={value}" for key, value in environment.items()), *argv])
    script = f"echo $$; exec {spelt} >> {shlex.quote(log)} 2>&1 < /dev/null"
    session = subprocess.Popen([*ssh, script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = session.stdout.readline().strip()
    if not first.isdigit():
        session.wait()
        raise ServerError(f"{server}: could not start {argv[0]}: {session.stderr.read().strip() or 'no PID'}")
    return RemoteProcess(server, ssh, int(first), session)


def wait_for_path(process: RemoteProcess, path: str, what: str, timeout: float) -> None:
    """Until path exists on the process's server (its socket, say): ServerError if the process
    exits or the path does not come in time."""
    deadline = time.monotonic() + timeout
    script = f"for i in $(seq 20); do test -e {shlex.quote(path)} && exit 0; sleep 0.05; done; exit 1"
    while subprocess.run([*process.ssh, script], capture_output=True).returncode != 0:
        if process.poll() is not None:
            raise ServerError(f"{process.server}: {what} exited with code {process.poll()} before {path} appeared")
        if time.monotonic() > deadline:
            raise ServerError(f"{process.server}: {what} did not make {path} within {timeout:.0f}s")


def stop(processes: list[RemoteProcess], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to each by PID on its server, SIGKILL to what is left after timeout; one ssh a server."""
    by_server: dict[str, list[RemoteProcess]] = {}
    for process in processes:
        by_server.setdefault(process.server, []).append(process)
    for server, group in by_server.items():
        stop_pids(group[0].ssh, server, [process.pid for process in group], timeout)
        for process in group:
            if process.session is not None:  # it ends with its process
                process.session.wait(timeout=timeout)


def stop_pids(ssh: list[str], server: str, pids: list[int], timeout: float = STOP_TIMEOUT) -> None:
    if not pids:
        return
    listed = " ".join(map(str, pids))
    rounds = max(1, int(timeout / 0.05))
    script = (f"kill -TERM {listed} 2>/dev/null; kill -CONT {listed} 2>/dev/null; for i in $(seq {rounds}); do "
              f"left=; for p in {listed}; do kill -0 $p 2>/dev/null && left=1; done; test -z \"$left\" && exit 0; "
              f"sleep 0.05; done; kill -KILL {listed} 2>/dev/null; exit 0")
    run(ssh, server, script, timeout=timeout + 10)


def forward(ssh: list[str], server: str, local: Path, remote: str) -> Path:
    """A local unix socket whose connections reach the socket remote on the server, over the
    server's one ssh connection (ssh's stream-local forwarding: `ssh -O forward -L`)."""
    local.unlink(missing_ok=True)
    done = subprocess.run([*ssh[:-1], "-O", "forward", "-L", f"{local}:{remote}", ssh[-1]],
                          capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise ServerError(f"{server}: cannot forward {remote} to here: {done.stderr.strip()}")
    return local
