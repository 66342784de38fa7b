"""Run on a real server over the user's own ssh: make that server's sandbox for one run and hold it
for as long as that ssh session lasts.  The request comes as one JSON line on standard input (the
run's names, the server's sshd files made for the run, its underlay join); the answer is one JSON
line on standard output with the sandbox's PID 1 (as this server numbers it).  When standard
input ends (calisim stopping the run, or calisim gone: its ssh client dies with its sandbox) the
sandbox is stopped by that PID and its directory removed, so a controller that crashed leaves
nothing running here either.

The sandbox is what a simulated server is (``unshare --net --mount --uts --pid`` with
``calisim.servers.init`` as PID 1 and its own sshd), in a session of its own; only its link
differs: a VXLAN device made from this server's namespace straight into the sandbox's
(``underlay.py``).  Nothing is added to this server's own namespace.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..process import pids
from .sim import START_TIMEOUT, sandbox_command
from .underlay import UnderlayJoin

DEVICE = "eth0"  # the server sandbox's one link, as a simulated server's


class BootError(RuntimeError):
    """The sandbox could not be made; the message is the one line calisim shows."""


def write_ssh_files(directory: Path, files: dict[str, str]) -> None:
    """The sandbox's sshd files, private to root (a host key readable by others is refused by sshd)."""
    ssh = directory / "ssh"
    ssh.mkdir(mode=0o700)
    for name, text in files.items():
        path = ssh / name
        path.touch(mode=0o600)
        path.write_text(text)


def start_sandbox(name: str, run_dir: str, directory: Path) -> tuple[subprocess.Popen, int]:
    """unshare and the sandbox's PID 1, in a session of their own so they outlive this ssh session."""
    with open(directory / "init.log", "ab") as log:
        unshare = subprocess.Popen(sandbox_command(name, Path(run_dir), directory), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    init_pid = pids.wait_child(unshare, START_TIMEOUT)
    if init_pid is None:
        raise BootError(f"its namespaces could not be made ({_last_line(directory / 'init.log')})")
    return unshare, init_pid


def join_underlay(join: UnderlayJoin) -> None:
    for command in [join.create_command(), *join.inside_commands()]:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BootError(f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()}")


@dataclass
class Sandbox:
    """A server sandbox made here: unshare, its PID 1, its directory."""

    unshare: subprocess.Popen
    init_pid: int
    directory: Path

    def stop(self) -> None:
        """Its PID 1 stopped (the kernel ends all it ran, its underlay device with its namespace),
        then its directory removed."""
        pids.stop([self.init_pid], wait_killed=True)
        self.unshare.wait(timeout=START_TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)


def boot(request: dict) -> Sandbox:
    """The sandbox for request, joined to the underlay; BootError with nothing left running or
    written otherwise."""
    directory = Path(tempfile.mkdtemp(prefix="calisim-server-"))
    unshare = None
    try:
        write_ssh_files(directory, request["ssh_files"])
        unshare, init_pid = start_sandbox(request["name"], request["run_dir"], directory)
        join_underlay(UnderlayJoin(DEVICE, init_pid, request["address"], request["vni"], request["mtu"],
                                   tuple(request["peers"])))
    except BaseException:
        if unshare is not None:
            unshare.kill()  # --kill-child: its PID 1 goes too, and with it the sandbox
            unshare.wait()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Sandbox(unshare, init_pid, directory)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else "no output"


def main() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the session's end is read on standard input
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(1))  # through the sandbox's stop
    try:
        sandbox = boot(json.loads(sys.stdin.readline()))
    except KeyError as error:
        sys.exit(f"cannot start its server sandbox: the request has no {error}")
    except (BootError, OSError, ValueError) as error:
        sys.exit(f"cannot start its server sandbox: {error}")
    try:
        print(json.dumps({"pid": sandbox.init_pid}), flush=True)
        sys.stdin.read()  # until the session ends
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
