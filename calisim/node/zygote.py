"""The node zygote: one interpreter that has imported calico-node (asyncio, aetcd and grpc,
pyroute2, Jinja2 and BIRD's templates, Felix) once, and forks a calico-node into a host's
namespaces for each `calicoctl node run` that asks it; calicoctl's own commands, each
forked the same way by the `calicoctl` it stands for; and each host's dockerd, which the
cluster asks for in the namespaces of the host's shell (dockerd's modules, imported here too,
are shared with the nodes': the datastore, asyncio, aetcd and grpc are most of both).

Each calico-node as its own `python -m calisim.node` spent about 0.4 s of CPU importing and
held ~37 MiB of its own; forked from here it starts in milliseconds and shares the imported
pages with every other node (gc.freeze keeps the collector from touching, and so copying,
them).  It is still a process of its own in its host's network, mount and UTS namespaces
(setns into those of the asking calicoctl, found with SO_PEERCRED), in a session of its own,
with the environment, working directory, standard streams and status pipe of that calicoctl,
and with the same command line in /proc/PID/cmdline: nothing a host sees changes.

The cluster starts one per run in the sandbox's own namespaces and names its socket in
CALISIM_NODE_ZYGOTE; without it (a node started by hand, tests) calicoctl execs as before.

The client and the protocol: calisim.node.zygote_client.
"""

from __future__ import annotations

import argparse
import array
import ctypes
import gc
import importlib
import marshal
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..process.daemon import Daemon
from . import zygote_pages

MODULES = {"calisim.node": "calisim.node.agent", "calisim.node.routereflector": "calisim.node.routereflector",
           "calisim.calicoctl": "calisim.calicoctl", "calisim.docker": "calisim.docker.api"}
# what it forks (`-m` module -> the module whose main(argv) that runs): imported once, up front, with
PRELOAD = ("calisim.calicoctl.resources", "calisim.calicoctl.config", "calisim.calicoctl.ipam",
           "calisim.calicoctl.node")  # what calicoctl's commands import when run
# the daemons among them: SIGPIPE ignored, as `python -m` leaves it, so that a write to a closed pipe
# or socket (in dockerd, a container's stream whose reader went) is an error and not their death
DAEMONS = ("calisim.node", "calisim.node.routereflector", "calisim.docker")
NAMESPACES = (("uts", 0x04000000), ("net", 0x40000000), ("mnt", 0x00020000))  # setns order; CLONE_NEW*
TITLE_ROOM = 1024  # bytes of command line kept for the forked daemons' own (see set_cmdline)
MAX_REQUEST = 1 << 20
PRIORITY_BOOST = -10  # niceness added to the zygote's own (see raise_priority)
REQUEST_TIMEOUT = 5.0  # a client that connects and sends nothing does not hold up the others
MAX_FDS = 8
RUN_MARK = "CALISIM_RUN_DIR"  # in the environment of every process a run starts in its hosts


# -- the zygote ---------------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        raise OSError(ctypes.get_errno(), f"setns: {os.strerror(ctypes.get_errno())}")


def set_cmdline(argv: list[str]) -> None:
    """Write argv over this process's command line (the room the zygote's own TITLE_ROOM padding
    left), so /proc/PID/cmdline reads as the daemon's, as after an exec."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: stat fields 48 and 49
    text = "\0".join(argv).encode() + b"\0"
    if len(text) > end - start:
        return  # too long to fit: keep the zygote's
    ctypes.memmove(start, text + b"\0" * (end - start - len(text)), end - start)


def enter_namespaces(pid: int) -> None:
    """Join the UTS, network and mount namespaces of process pid (opened first: after the mount
    namespace changes, /proc/pid is looked up there)."""
    fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY), flag) for name, flag in NAMESPACES]
    for fd, flag in fds:
        setns(fd, flag)
        os.close(fd)


def install_fds(received: list[int], targets: list[int]) -> None:
    """Put each received descriptor at its target number and close every other one."""
    moved = [os.dup(fd) for fd in received]  # out of the way of the targets first
    for fd, target in zip(moved, targets):
        os.dup2(fd, target, inheritable=True)
    keep = set(targets)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def become_daemon(request: dict, received: list[int], peer: int) -> int:
    """In the forked child: become `python -m module args` in the peer's namespaces; its exit code."""
    enter_namespaces(peer)
    os.setsid()
    os.chdir(request["cwd"])
    install_fds(received, request["fds"])
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
    if request["module"] in DAEMONS:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as an interpreter's start leaves it (see DAEMONS)
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # the zygote's cached choice: chosen again from this environment's TMPDIR
    sys.argv = [sys.executable, "-m", request["module"], *request["args"]]
    set_cmdline(sys.argv)
    sys.stdin = os.fdopen(0, "r")
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        importlib.import_module(MODULES[request["module"]]).main(request["args"])
        return 0
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def receive(connection: socket.socket) -> tuple[dict, list[int]]:
    """The request (up to the client's end of writing) and the descriptors sent with it."""
    descriptors = array.array("i")
    data, ancillary, _, _ = connection.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(MAX_FDS * descriptors.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            descriptors.frombytes(payload[:len(payload) - len(payload) % descriptors.itemsize])
    received = list(descriptors)
    try:
        while data and len(data) < MAX_REQUEST:
            more = connection.recv(MAX_REQUEST)
            if not more:
                break
            data += more
        request = marshal.loads(data)
        if request["module"] not in MODULES or len(request["fds"]) != len(received):
            raise ValueError(f"cannot start {request['module']!r} with {len(received)} descriptors")
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        for fd in received:
            os.close(fd)
        raise
    return request, received


def peer_pid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(credentials[:4], sys.byteorder)


class Zygote:
    """Accepts requests, forks, and tells each client when its daemon exits.  A request is read
    once it has come, never waited for: a client descheduled between its connect and its send
    (at load 40, up to 0.9 s) would otherwise hold up every client behind it."""

    def __init__(self, socket_path: Path, niceness: int):
        self.niceness = niceness  # its children's: the zygote's own before raise_priority
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        socket_path.unlink(missing_ok=True)
        self.listener.bind(str(socket_path))
        os.chmod(socket_path, 0o600)
        self.listener.listen(128)
        self.arriving: dict[int, socket.socket] = {}  # accepted connections, by descriptor, until their request comes
        self.children: dict[int, socket.socket] = {}
        self.exits: dict[int, int] = {}  # child pid -> its pidfd, readable once it exits: reaped at once
        self.poller = select.poll()
        self.poller.register(self.listener, select.POLLIN)

    def serve(self) -> None:
        while True:
            for fd, _ in self.poller.poll():
                if fd == self.listener.fileno():
                    self.accept()
                elif fd in self.arriving:
                    self.start(self.arriving.pop(fd))
            self.reap()

    def accept(self) -> None:
        connection, _ = self.listener.accept()
        self.arriving[connection.fileno()] = connection
        self.poller.register(connection, select.POLLIN)

    def start(self, connection: socket.socket) -> None:
        """Fork the process the connection's request asks for (or refuse it)."""
        self.poller.unregister(connection)
        connection.settimeout(REQUEST_TIMEOUT)  # for the rest of a request that came in parts
        try:
            request, received = receive(connection)
        except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
            try:
                connection.sendall(f"error {error}\n".encode())
            except OSError:
                pass
            connection.close()
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.listener.close()
                os.setpriority(os.PRIO_PROCESS, 0, self.niceness)
                code = become_daemon(request, received, request.get("namespaces_of") or peer_pid(connection))
            finally:
                os._exit(code)
        for fd in received:
            os.close(fd)
        self.children[pid] = connection
        self.exits[pid] = os.pidfd_open(pid)
        self.poller.register(self.exits[pid], select.POLLIN)
        try:
            connection.sendall(f"pid {pid}\n".encode())
        except OSError:
            pass

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.exits:
                self.poller.unregister(self.exits[pid])
                os.close(self.exits.pop(pid))
            connection = self.children.pop(pid, None)
            if connection is not None:
                try:
                    connection.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="calisim.node.zygote", description=__doc__.split("\n\n")[0])
    parser.add_argument("socket", type=Path)
    parser.add_argument("title_room", nargs="?", help="padding: room for the forked daemons' command lines")
    args = parser.parse_args(argv)
    warm_up()
    # Its children are stopped first; nothing of the zygote's own needs tidying, and unwinding
    # an interpreter holding every module of calico-node and dockerd took 20-30 ms of the stop.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    zygote = Zygote(args.socket, os.getpriority(os.PRIO_PROCESS, 0))
    raise_priority(PRIORITY_BOOST)
    gc.collect()
    pages = zygote_pages.prepare()  # what the forks copy of its pages (see there)
    gc.freeze()  # the children's collections leave the imported objects (and their pages) alone
    print(f"node zygote ready on {args.socket}", flush=True)
    print(pages, flush=True)
    zygote.serve()


def raise_priority(boost: int) -> None:
    """The zygote stands for the kernel's fork and exec: a host's `calicoctl` waits for its answer
    (twice for a `node run`) while every running node competes for the CPU with it (at 100 hosts
    on 2 cores, answers took 1-3 s at nice 0).  Its children run at the niceness it started with."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + boost)
    except PermissionError:
        pass  # not root: answered at the same priority as everything else


def warm_up() -> None:
    """What every node would otherwise do for itself on its first pass: import its modules,
    pyroute2's lazily loaded netlink ones (0.16 s of CPU), compile BIRD's templates, probe
    which IPIP backends this machine has (three processes a node), load libnftables (its
    relocated data, ~0.1 MiB a node, is then shared); and what a forked module's
    prepare_for_forks does once for all its forks (calicoctl: build its argument parser)."""
    for module in (*MODULES.values(), *PRELOAD):
        getattr(importlib.import_module(module), "prepare_for_forks", lambda: None)()
    from pyroute2 import IPRoute

    from ..felix import ipip, ruleset
    from . import bird

    ipip.choose_backend("auto")
    try:
        ruleset.library()
    except OSError:
        pass  # no libnftables here: each Felix says so as it starts

    with IPRoute() as ipr:  # the sandbox's own namespace, read only
        ipr.get_links()
    bird.compile_templates()


def command_line(socket_path: Path) -> list[str]:
    """How the zygote is started: with TITLE_ROOM bytes of padding for set_cmdline."""
    return [sys.executable, "-m", "calisim.node.zygote", str(socket_path), "." * TITLE_ROOM]


@dataclass
class ZygoteDaemon(Daemon):
    """The zygote as the cluster runs it: in the sandbox's own namespaces, up once its socket exists."""

    socket: Path
    log: Path
    name: str = "the node zygote"
    start_timeout: float = 30.0
    ready_interval: float = 0.02  # a stat a check: the cluster's start waits on it

    @classmethod
    def of_run(cls, run_dir: Path) -> "ZygoteDaemon":
        return cls(run_dir / "zygote.sock", run_dir / "zygote.log")

    def command(self) -> list[str]:
        return command_line(self.socket)

    def ready(self) -> bool:
        return self.socket.exists()

    def spawn(self) -> subprocess.Popen:
        """Start it in this process's namespaces (the sandbox's own) with environment()."""
        return self.start(env=environment(), stdin=subprocess.DEVNULL)


def environment() -> dict[str, str]:
    """A zygote's: this process's, without the run's CALISIM_RUN_DIR mark that the cluster's stop
    looks for in its hosts' processes: it serves every host, so it stops last."""
    return {key: value for key, value in os.environ.items() if key != RUN_MARK}


if __name__ == "__main__":
    main()
