"""PID 1 of a simulated server, or of a real server's sandbox (``boot.py``): it makes the
server's filesystem view private, then runs the server's sshd and reaps every orphan until it is
told to stop.

It runs under ``unshare --net --mount --uts --pid``, so by exiting it makes the kernel kill
everything still running on its server: nothing a server started can outlive it.  sshd is a
child, not PID 1, so a killed sshd leaves the server running but unreachable, as on a real one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

STAGE = Path("/run/calisim/server")
CHECKOUT = Path(__file__).resolve().parents[2]  # the server's directory, on its way to the run directory's path


class Stopping(Exception):
    """SIGTERM arrived: leave the reaping loop (a handler that returns would let os.wait block on)."""


def _mount(*arguments: str) -> None:
    subprocess.run(["mount", *arguments], check=True)


def name_itself(name: str) -> None:
    """The hostname, and an /etc/hosts of this server's own that resolves it (sudo warns on
    every command otherwise, and Mininet's remote shells read that warning as output)."""
    socket.sethostname(name)
    hosts = Path("/run/calisim/hosts")
    hosts.write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n")
    _mount("--bind", str(hosts), "/etc/hosts")


def make_private_view(run_dir: Path, server_dir: Path) -> None:
    """Fresh /run and /tmp, and the server's own directory seen at the run directory's path: a
    server sees only its own files there, as a real server would.  The directory is held at
    STAGE first: a run directory below /tmp is hidden once /tmp is the server's own."""
    _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
    STAGE.mkdir(parents=True)
    _mount("--bind", str(server_dir), str(STAGE))
    held = hold_installation()
    _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp")
    run_dir.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(STAGE), str(run_dir))
    for path, stage in held:
        path.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(stage), str(path))
    Path("/run/sshd").mkdir(mode=0o755)  # sshd's privilege separation directory
    _mount("-t", "sysfs", "sysfs", "/sys")  # /sys/class/net shows the mounter's namespace: make it this server's


def forget_the_machines_shell_startup() -> None:
    """An empty root .bashrc, which bash reads for every command sshd runs: a real server's root
    has its own, and this machine's (pyenv's init, which rehashes under a lock of the machine's
    own) slowed every session and, when a session was killed mid-rehash, held every later one
    of every server for a minute."""
    bashrc = Path.home() / ".bashrc"
    if bashrc.exists():
        empty = Path("/run/calisim/bashrc")
        empty.parent.mkdir(parents=True, exist_ok=True)
        empty.write_text("")
        _mount("--bind", str(empty), str(bashrc))


def hold_installation() -> list[tuple[Path, Path]]:
    """calisim and its interpreter's environment, where they lie below /tmp (a clone there), held
    under /run before /tmp becomes the server's own: a real server has calisim installed at the
    same path, and so must a simulated one."""
    held = []
    for index, path in enumerate(sorted({CHECKOUT, Path(sys.prefix).resolve()})):
        if path.is_relative_to("/tmp") and not any(path.is_relative_to(kept) for kept, _ in held):
            stage = Path(f"/run/calisim/installation{index}")
            stage.mkdir(parents=True)
            _mount("--bind", str(path), str(stage))
            held.append((path, stage))
    return held


def bring_up_loopback() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def serve(sshd: list[str], log: Path) -> int:
    """Start sshd, reap every child until SIGTERM, then stop sshd and return."""
    with open(log, "ab") as output:
        daemon = subprocess.Popen(sshd, stdout=output, stderr=subprocess.STDOUT)

    def stop(_signum: int, _frame: object) -> None:
        raise Stopping

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            try:
                os.wait()
            except ChildProcessError:
                signal.pause()  # sshd gone and nothing else left: wait for the stop
    except Stopping:
        daemon.terminate()
    return 0


def main() -> None:
    if len(sys.argv) != 5 or os.getpid() != 1:
        sys.exit("usage: python -m calisim.servers.init NAME RUN_DIR SERVER_DIR SSHD_CONFIG "
                 "(run by calisim as PID 1 of a simulated server)")
    name, run_dir, server_dir, config = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    make_private_view(run_dir, server_dir)
    forget_the_machines_shell_startup()
    name_itself(name)
    bring_up_loopback()
    sys.exit(serve(["/usr/sbin/sshd", "-D", "-e", "-f", config], run_dir / "sshd.log"))


if __name__ == "__main__":
    main()
