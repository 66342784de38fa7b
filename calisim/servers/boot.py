"""Run on a real server over the user's own ssh: make that server's sandbox for one run and leave it
running.  Everything it needs comes on standard input (one JSON object: the run's names, the
server's sshd files made for the run, its underlay join); it answers on standard output with the
sandbox's PID 1 (as this server numbers it) and the directory it made, then exits, while the
sandbox goes on in a session of its own.  calisim stops it by that PID, over the same ssh.

The sandbox is what a simulated server is (``unshare --net --mount --uts --pid`` with
``calisim.servers.init`` as PID 1 and its own sshd); only its link differs: a VXLAN device made
from this server's namespace straight into the sandbox's (``underlay.py``).  Nothing is added to
this server's own namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
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


def boot(request: dict) -> dict:
    """The sandbox for request, joined to the underlay: its PID 1 and directory; BootError with
    nothing left running or written otherwise."""
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
    return {"pid": init_pid, "directory": str(directory)}


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else "no output"


def main() -> None:
    try:
        answer = boot(json.load(sys.stdin))
    except KeyError as error:
        sys.exit(f"cannot start its server sandbox: the request has no {error}")
    except (BootError, OSError, ValueError) as error:
        sys.exit(f"cannot start its server sandbox: {error}")
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
