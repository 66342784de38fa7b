"""Faults on a node of another server: its commands, its processes' PIDs and signals reached
through that server's ssh connection, never through this machine's /proc or namespaces (a PID
of a server names another process here, or none).  A local node gets the same through nsenter
and os.kill, so the kinds of fault ask here and do not care where a node runs."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

from ...process import pids
from ...servers import processes
from ...servers.sim import ServerError
from .base import FaultError

WAIT_GONE = 10.0  # seconds, as pids.wait_gone


def on_other_server(node) -> bool:
    return bool(getattr(node, "isRemote", False))


def not_yet(node, what: str) -> FaultError:
    """The one line refusing what is not built for a node of another server."""
    return FaultError(f"{what} on {node.name} ({node.server}): not supported on another server yet")


def in_node(node, *argv: str, check: bool = True, namespaces: tuple[str, ...] = ("-n",)) -> subprocess.CompletedProcess:
    """argv in node's namespaces (network by default), on node's server; FaultError with its
    stderr if check fails."""
    entered = ["nsenter", "-t", str(node.pid), *namespaces, "--", *argv]
    command = [*node.ssh_command(), shlex.join(entered)] if on_other_server(node) else entered
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise FaultError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done


def run_there(node, command: str, timeout: float = 15.0) -> str:
    """A shell command on node's server (not in the node): its output; FaultError naming the server."""
    try:
        return processes.run(node.ssh_command(), node.server, command, timeout)
    except ServerError as error:
        raise FaultError(str(error)) from None


def run_script_there(node, script: str, what: str, timeout: float = 30.0) -> None:
    """A shell script on node's server in one round trip; FaultError naming what failed, the
    server and the script's last line of error (not the whole script, as run_there would)."""
    try:
        done = subprocess.run([*node.ssh_command(), script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FaultError(f"{what} ({node.server}): no answer within {timeout:.0f}s") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise FaultError(f"{what} ({node.server}): {said[-1] if said else f'exit status {done.returncode}'}")


def alive(node, pid: int) -> bool:
    """Whether pid runs on node's server (a zombie counts as gone, as in pids.alive)."""
    if not on_other_server(node):
        return pids.alive(pid)
    return run_there(node, f"{_alive_test(pid)} && echo yes; true").strip() == "yes"


def send(node, pid: int, signum: signal.Signals) -> None:
    """signum to pid on node's server; a process already gone is no error (as a race with its exit)."""
    if not on_other_server(node):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        return
    run_there(node, f"kill -{signum.name.removeprefix('SIG')} {pid} 2>/dev/null; true")


def wait_gone(node, pid: int, timeout: float = WAIT_GONE) -> bool:
    """Until pid is gone on node's server; False if it still runs after timeout."""
    if not on_other_server(node):
        return pids.wait_gone(pid, timeout)
    rounds = max(1, int(timeout / 0.05))
    script = f"for i in $(seq {rounds}); do {_alive_test(pid)} || exit 0; sleep 0.05; done; exit 1"
    return subprocess.run([*node.ssh_command(), script], capture_output=True, timeout=timeout + 10).returncode == 0


def cmdline(node, pid: int) -> list[str]:
    """pid's argv on node's server."""
    if not on_other_server(node):
        with open(f"/proc/{pid}/cmdline", "rb") as read:
            return read.read().decode().split("\0")
    return run_there(node, f"tr '\\0' '\\n' < /proc/{pid}/cmdline; echo").split("\n")[:-1]


def read_text(node, path) -> str:
    """A file of node's server at path ('' if missing)."""
    if not on_other_server(node):
        try:
            with open(path) as read:
                return read.read()
        except OSError:
            return ""
    return run_there(node, f"cat {shlex.quote(str(path))} 2>/dev/null; true")


def kill_host(node) -> int:
    """Every process of node's network namespace and below them gone at once (SIGKILL), on its
    server: calisim's own pids there, as here.  How many."""
    if not on_other_server(node):
        return pids.kill_net_namespace_of(node.pid)
    code = f"from calisim.process.pids import kill_net_namespace_of as k; print(k({node.pid}))"
    return int(run_there(node, shlex.join([sys.executable, "-c", code]), timeout=30).strip())


def _alive_test(pid: int) -> str:
    return f"kill -0 {pid} 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' /proc/{pid}/status"

