"""The client side of the node zygote (calisim.node.zygote): daemons forked for the cluster
(spawn, spawn_logged; over ssh on a server, fork_requested), and `calicoctl` commands forked for
the installed entry point when it runs in a run (forked_by_zygote).

The `calicoctl` on every emulated host's PATH is this client written in C (calicoctl.c, built by
`make setup` as build/node/calicoctl, linked into the run's bin/ by install): a cluster bring-up
runs one per host and every `calicoctl apply` waits for it, and even `python -I -S` importing
nothing took ~16 ms of CPU to start.

This file imports nothing from calisim, and none of the standard library's Python modules
(socket.py, signal.py, json and dataclasses would cost more than the interpreter's start):
fork_command runs it under `python -I -S` on a server.

Protocol, one connection per process: the client sends one request (marshal: module, args, env,
cwd, the process whose namespaces to join (0: the client's own), the target numbers of the
descriptors it passes with SCM_RIGHTS; only root in the run's sandbox reaches the socket, mode
0600); the zygote answers ``pid N`` and, when that process exits, ``exit CODE``.
"""

import _signal
import _socket
import marshal
import os
import sys

ZYGOTE_ENV = "CALISIM_NODE_ZYGOTE"  # the socket of this run's zygote
ANSWER_TIMEOUT = 30.0  # for the zygote's `pid N`
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
# the hosts' calicoctl (calicoctl.c), where `make setup` builds it in this clone
CALICOCTL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "build", "node", "calicoctl")


class ZygoteError(RuntimeError):
    """The zygote could not start the process (the caller then starts it itself)."""


class Lines:
    """Lines read from a socket (the zygote's answers), however its writes arrive."""

    def __init__(self, connection: _socket.socket):
        self.connection = connection
        self.buffer = b""

    def readline(self) -> str:
        while b"\n" not in self.buffer:
            data = self.connection.recv(256)
            if not data:
                line, self.buffer = self.buffer, b""
                return line.decode()
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode() + "\n"


class ForkedProcess:
    """A process the zygote forked: what its caller needs of subprocess.Popen (pid, wait, poll, kill)."""

    def __init__(self, pid: int, connection: _socket.socket, lines: Lines):
        self.pid = pid
        self.connection = connection
        self.lines = lines
        self.returncode: "int | None" = None

    def wait(self, timeout: "float | None" = None) -> int:
        if self.returncode is None:
            self.connection.settimeout(timeout)
            try:
                line = self.lines.readline()
            except TimeoutError:
                import subprocess

                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout) from None
            self.returncode = int(line.split()[1]) if line.startswith("exit ") else -_signal.SIGKILL
            self.connection.close()
        return self.returncode

    def poll(self) -> "int | None":
        try:
            return self.wait(0)
        except Exception:
            return None

    def kill(self) -> None:
        try:
            os.kill(self.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass


def spawn(module: str, args: list, fds: dict, socket_path: "str | None" = None, env: "dict | None" = None,
          namespaces_of: int = 0) -> ForkedProcess:
    """Ask the zygote for `python -m module args...` here (this process's namespaces, environment
    and working directory), with fds = {number in the new process: descriptor here}; or with env
    and in the namespaces of process namespaces_of (a host's shell: how the cluster starts a
    host's dockerd from outside the host)."""
    path = socket_path or os.environ.get(ZYGOTE_ENV)
    if not path:
        raise ZygoteError(f"{ZYGOTE_ENV} is not set")
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    lines = Lines(connection)
    try:
        # made before connecting: sent as soon as connected
        request = marshal.dumps({"module": module, "args": list(args), "env": dict(os.environ if env is None else env),
                                 "cwd": os.getcwd(), "fds": list(fds), "namespaces_of": namespaces_of})
        descriptors = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds.values())
        connection.settimeout(ANSWER_TIMEOUT)
        connection.connect(path)
        connection.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, descriptors)])
        connection.shutdown(_socket.SHUT_WR)  # the request ends here
        answer = lines.readline()
    except OSError as error:
        connection.close()
        raise ZygoteError(f"the node zygote at {path} did not answer: {error}") from None
    if not answer.startswith("pid "):
        connection.close()
        raise ZygoteError(f"the node zygote refused: {answer.strip() or 'no answer'}")
    return ForkedProcess(int(answer.split()[1]), connection, lines)


def spawn_logged(module: str, args: list, log: str, socket_path: str, env: dict,
                 namespaces_of: int) -> ForkedProcess:
    """A daemon forked (spawn): its standard input /dev/null, its output appended to the file log."""
    logfile = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        return spawn(module, args, {0: devnull, 1: logfile, 2: logfile}, socket_path, env, namespaces_of)
    finally:
        os.close(logfile)
        os.close(devnull)


def fork_command() -> list:
    """The command line that, run on another server, has that server's zygote fork the daemons
    requested on its standard input (fork_requested): this file, by the same interpreter at the
    same path there (a server has calisim installed where this machine has it), under -I -S as
    the hosts' calicoctl, so that a request costs an ssh session and no imports."""
    return [sys.executable, "-I", "-S", "-c", FORK_REQUESTED, os.path.dirname(os.path.abspath(__file__))]


FORK_REQUESTED = "import sys; sys.path.insert(0, sys.argv[1]); import zygote_client; zygote_client.fork_requested()"


def fork_requested() -> None:
    """Each request of the marshal'd list on standard input (spawn_logged's arguments) forked by
    the zygote it names, and one line out for each: `pid N` (its PID on this server) or `error
    WHY`.  Returns without waiting for them: the zygote reaps them, and they are known by PID."""
    for request in marshal.loads(sys.stdin.buffer.read()):
        try:
            process = spawn_logged(**request)
        except (ZygoteError, OSError) as error:
            print(f"error {error}", flush=True)
            continue
        process.connection.close()  # its exit is not waited for here: the zygote's notice goes nowhere
        print(f"pid {process.pid}", flush=True)


def forked_by_zygote(argv: list) -> "int | None":
    """Run `calicoctl argv` forked by the run's zygote into this process's namespaces, with its
    environment, working directory and standard streams: the zygote did the imports (the etcd
    client, grpc, asyncio, YAML) once.  Returns its exit code, or None without a zygote (or when
    it does not answer, or a standard stream is closed).  Signals sent here go on to it (one that
    comes while the zygote forks it, once its pid is known); if it died of one, so does this process."""
    if not os.environ.get(ZYGOTE_ENV):
        return None
    process = None
    pending = []

    def forward(signum: int, _frame: object) -> None:
        if process is None:
            pending.append(signum)
            return
        try:
            os.kill(process.pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        _signal.signal(signum, forward)
    try:
        process = spawn("calisim.calicoctl", argv, {0: 0, 1: 1, 2: 2})
    except (ZygoteError, OSError):
        if pending:
            die_of(pending[0])
        return None
    for signum in pending:
        forward(signum, None)
    code = process.wait()
    if code < 0:
        die_of(-code)
    return code


def die_of(signum: int) -> None:
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install(directory: str) -> bool:
    """Link the hosts' calicoctl (CALICOCTL) into directory as `calicoctl` (in place of one there);
    False, and nothing made, when it is not built."""
    if not os.access(CALICOCTL, os.X_OK):
        return False
    os.makedirs(directory, exist_ok=True)
    link = os.path.join(directory, "calicoctl")
    os.symlink(CALICOCTL, link + ".new")
    os.replace(link + ".new", link)
    return True
