"""A `docker exec`'s process: the start's refusals (claim), then the process in the container's
namespaces and root, as its user and in its directory (spawn), or the runtime's words for why it
cannot run (failed).  api.py claims, writes the stream's 101, waits for the client to read it, and
only then spawns, so nothing the process prints can reach the client ahead of the 101."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import runtime, users
from .containers import Exec
from .errors import APIError


def find_executable(pid: int, command: str, path: str) -> bool:
    """Whether command resolves (as execvp would) inside the root of the container whose PID 1 is pid."""
    root = f"/proc/{pid}/root"
    candidates = [command] if "/" in command else [f"{d}/{command}" for d in path.split(":") if d]
    return any(os.access(root + c if c.startswith("/") else f"{root}/{c}", os.X_OK) for c in candidates)


def claim(execution: Exec) -> None:
    """Refuse an exec start as dockerd does, before any answer is written (the stream's
    upgrade comes next, and only then the process: spawn)."""
    if not execution.container.running:
        raise APIError(409, f"container {execution.container.id} is not running")
    if execution.started:
        raise APIError(409, f"exec command {execution.id} has already run")
    execution.started = True


def spawn(execution: Exec) -> subprocess.Popen | None:
    """The claimed exec's process in the container, as its user and in its directory (None,
    with the exit code and the reason set, if it cannot start: 127 for a command that is not there)."""
    container = execution.container
    root = f"/proc/{container.pid}/root"
    try:
        user = users.lookup(execution.user, Path(root, "etc"))
    except APIError as error:
        return failed(execution, 126, str(error).removeprefix("linux spec user: "))
    env = container.environment(execution.env, home=user.home)
    if execution.tty:
        env["TERM"] = "xterm"
    if execution.workdir and not os.path.isdir(root + execution.workdir):
        return failed(execution, 126, f'chdir to cwd ("{execution.workdir}") set in config.json failed: '
                                           'no such file or directory')
    if not find_executable(container.pid, execution.cmd[0], env.get("PATH", "")):
        return failed(execution, 127, f'exec: "{execution.cmd[0]}": executable file not found in $PATH')
    argv = runtime.exec_argv(container.pid, execution.cmd, execution.tty, user.argv() if execution.user else [],
                             root + execution.workdir if execution.workdir else None)
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


def failed(execution: Exec, code: int, reason: str) -> None:
    """An exec whose process could not start: its exit code, and the runtime's words for why."""
    execution.exit_code = code
    execution.failure = f"OCI runtime exec failed: exec failed: unable to start container process: {reason}: unknown"
