"""The daemon's side of a container's processes (containerd's part): start PID 1 through
cinit (cinit/cinit.c), run `docker exec` processes in its namespaces, terminals from the container's own
devpts, and the output pump that feeds logs and attached clients.

Talks to cinit over a SOCK_SEQPACKET control socket, and to the container's processes through
pipes or a pty master.  cinit's first process is the container's shim (containerd-shim's part):
it holds the read ends of the output pipes, or the pty master, for as long as the container runs,
and writes runtime.json (its PID and those descriptors' numbers) and, at the end, the exit status,
so that a dockerd started after this one died can adopt the container (`adopt`: pidfd_getfd).
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# the container's init and shim, C (cinit/cinit.c), built by `make setup`
INIT = Path(__file__).resolve().parents[2] / "build" / "cinit" / "cinit"
TIOCSPTLCK, TIOCGPTPEER = 0x40045431, 0x5441
START_TIMEOUT = 20.0
SYS_PIDFD_GETFD = 438  # x86_64
UNKNOWN_EXIT = 255  # the status dockerd records for a container that died unseen


class RuntimeFailure(RuntimeError):
    """The command could not be started; code is Docker's exit code for it (126, 127, 128)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class Process:
    """One run of a container: the init process (our child) and PID 1's host PID."""
    popen: subprocess.Popen
    pid: int
    control: socket.socket | None
    master: int | None = None  # the pty's master when the container has a TTY
    outputs: dict[int, int] = field(default_factory=dict)  # fd -> stream (1 stdout, 2 stderr), as the pump reads

    def close_outputs(self) -> None:
        """Once the pump has read them to their end."""
        for fd in self.outputs:
            os.close(fd)
        self.outputs, self.master = {}, None

    def go(self) -> None:
        """Let PID 1 exec the command (its network is ready); raise if it could not."""
        self.control.send(b"go")
        answer = _receive(self.control, START_TIMEOUT)[0]
        self.control.close()
        if answer:
            message = json.loads(answer)
            self.popen.wait()
            raise RuntimeFailure(message["error"], message["code"])

    def kill(self) -> None:
        for pid in (self.pid, self.popen.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait()


def readable(descriptors: list, timeout: float | None = None) -> list[int]:
    """Those of descriptors (fds or sockets) that can be read, or have ended, within timeout
    seconds (None: until one can).  poll(2), not select(2), which cannot watch a descriptor above
    1023: a daemon with 500 containers holds more than a thousand."""
    poller = select.poll()
    for descriptor in descriptors:
        poller.register(descriptor, select.POLLIN)
    return [fd for fd, _ in poller.poll(None if timeout is None else timeout * 1000)]


def _receive(sock: socket.socket, timeout: float) -> tuple[bytes, list[int]]:
    if not readable([sock], timeout):
        raise RuntimeFailure("the container's init did not answer", 128)
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def init_argv(spec: dict, tty: bool, control: int, held: list[int]) -> list[str]:
    """cinit's command line for spec (what the daemon prepared: layers, files, mounts, user, command)."""
    argv = [str(INIT), "--control", str(control), "--hostname", spec["hostname"],
            "--root", spec["merged"], spec["upper"], spec["work"], "--workdir", spec.get("workdir") or "/"]
    argv += [item for lower in spec["lowerdirs"] for item in ("--lower", lower)]
    argv += [item for name, source in spec["files"].items() for item in ("--file", name, source)]
    argv += [item for source, destination, writable in spec.get("mounts", [])
             for item in ("--mount", source, destination, "rw" if writable else "ro")]
    argv += [item for name, value in spec["env"].items() for item in ("--env", f"{name}={value}")]
    uid, gid, groups = spec.get("user", [0, 0, []])
    argv += ["--user", str(uid), str(gid), *(item for group in groups for item in ("--group", str(group)))]
    argv += ["--network", "host"] if spec.get("network") == "host" else []
    argv += ["--tty", "--console", *(str(size) for size in spec["console"])] if tty else []
    argv += [item for fd in held for item in ("--held", str(fd))]
    argv += [item for option in ("runtime", "exit") if spec.get(option) for item in (f"--{option}", spec[option])]
    return [*argv, "--", *spec["cmd"]]


def start(spec: dict, tty: bool, open_stdin: bool) -> Process:
    """Start the container's init and wait until PID 1 stands in its root, before its command."""
    if not os.access(INIT, os.X_OK):
        raise RuntimeFailure(f"the container init {INIT} is not built: run `make setup`", 128)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pipes = [] if tty else [os.pipe(), os.pipe()]  # stdout's and stderr's; the shim holds their read ends too
    held = [read for read, _ in pipes]
    try:
        popen = subprocess.Popen(init_argv(spec, tty, theirs.fileno(), held),
                                 pass_fds=(theirs.fileno(), *held), start_new_session=True,
                                 stdout=pipes[0][1] if pipes else subprocess.DEVNULL,
                                 stderr=pipes[1][1] if pipes else subprocess.DEVNULL,
                                 stdin=subprocess.PIPE if open_stdin and not tty else subprocess.DEVNULL)
    finally:
        for _, write in pipes:
            os.close(write)
    theirs.close()
    process = Process(popen, 0, ours, outputs=dict(zip(held, (1, 2))))
    ready = False
    try:
        while not (process.pid and ready):
            data, fds = _receive(ours, START_TIMEOUT)
            message = json.loads(data) if data else {"error": "the container's init exited", "code": 128}
            if "error" in message:
                raise RuntimeFailure(message["error"], message["code"])
            process.pid = message.get("pid", process.pid)
            if message.get("ready"):
                ready, process.master = True, (fds[0] if fds else None)
                process.outputs = {process.master: 1} if process.master is not None else process.outputs
    except Exception:
        process.kill()
        ours.close()
        process.close_outputs()
        raise
    return process


class Shim:
    """The shim of a container another dockerd started, as subprocess.Popen's face for the
    monitor: waited on through its pidfd (it is not our child), its status read from the file it
    writes before it exits (UNKNOWN_EXIT if it was killed first)."""
    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int, exit_file: Path):
        self.pid, self.pidfd, self.exit_file, self.returncode = pid, pidfd, exit_file, None

    def poll(self) -> int | None:
        return self.wait() if readable([self.pidfd], 0) else None

    def wait(self) -> int:
        if self.returncode is None:
            readable([self.pidfd])
            self.returncode = recorded_exit(self.exit_file)
            os.close(self.pidfd)
        return self.returncode


class Service:
    """A workload image's service that another dockerd started in a container's network namespace
    (an `nsenter -t PID1 -n` process), killed and waited on as the monitor does a Popen's."""

    def __init__(self, pid: int, pidfd: int):
        self.pid, self.pidfd = pid, pidfd

    @classmethod
    def find(cls, pid: int, container_pid: int) -> "Service | None":
        """The process pid, if it still is the service of the container whose PID 1 is
        container_pid: in that container's network namespace, outside its PID namespace (nsenter
        -n execs the service, so its command line is the service's own, not nsenter's)."""
        try:
            same = [os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(f"/proc/{container_pid}/ns/{kind}").st_ino
                    for kind in ("net", "pid")]
            return cls(pid, os.pidfd_open(pid)) if same == [True, False] else None
        except OSError:
            return None

    def kill(self) -> None:
        signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def wait(self) -> None:
        readable([self.pidfd])
        os.close(self.pidfd)


def recorded_exit(exit_file: Path) -> int:
    """The status a shim wrote as it ended; UNKNOWN_EXIT if it wrote none (it was killed first)."""
    try:
        return int(exit_file.read_text())
    except (OSError, ValueError):
        return UNKNOWN_EXIT


def adopt(directory: Path) -> Process | None:
    """The running container whose runtime files are in directory, its output descriptors taken
    from its shim (pidfd_getfd); None if the shim has ended."""
    try:
        state = json.loads((directory / "runtime.json").read_text())
        pidfd = os.pidfd_open(state["shim"])
    except (OSError, ValueError, KeyError):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    outputs = {}
    for number, stream in state["outputs"].items():
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(number), 0)
        if fd < 0:
            os.close(pidfd)
            return None
        outputs[fd] = stream
    master = next((fd for fd in outputs if state.get("tty")), None)
    return Process(Shim(state["shim"], pidfd, directory / "exit"), state["pid"], None, master, outputs)


def terminal_in(pid: int) -> tuple[int, int]:
    """A (master, slave) pty from the devpts of the container whose PID 1 is pid, so that `tty`
    inside prints /dev/pts/N."""
    master = os.open(f"/proc/{pid}/root/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    return master, fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)


def resize(master: int | None, height: int, width: int) -> None:
    if master is not None:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def top(pid: int) -> dict:
    """`ps -ef` of the processes in the PID namespace of the container whose PID 1 is pid (host
    PIDs, as Docker shows them)."""
    namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
    lines = subprocess.run(["ps", "-ef"], capture_output=True, text=True, check=True).stdout.splitlines()
    titles = lines[0].split()
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        try:
            if os.stat(f"/proc/{fields[1]}/ns/pid").st_ino == namespace:
                processes.append(fields)
        except OSError:
            continue
    return {"Titles": titles, "Processes": processes}


def exec_argv(pid: int, cmd: list[str], tty: bool, user: list[str] | None = None,
              workdir: str | None = None) -> list[str]:
    """A command in every namespace and the root of the container whose PID 1 is pid, as user
    (nsenter's -S/-G) and in workdir (a path through /proc/PID/root: nsenter opens it before it
    enters the root), else in PID 1's; with a TTY it leads its own session on it, as a shell under
    `docker exec -it` does."""
    where = f"--wd={workdir}" if workdir else "-w"
    enter = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", where, *(user or []), "--", *cmd]
    return ["setsid", "-c", *enter] if tty else enter


@dataclass
class Output:
    """A run's output: raw chunks to subscribers (attach, logs -f) as they come, and complete
    lines to the log (Docker's json-file keeps lines, with their stream and time)."""
    log: list[tuple[float, int, bytes]] = field(default_factory=list)
    subscribers: list[Callable[[int, bytes | None], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    live: bool = False  # a run is producing output (between begin and finish)
    keep: Callable[[list[tuple[float, int, bytes]]], None] | None = None  # the log driver: lines as they come

    def begin(self) -> None:
        with self.lock:
            self.live = True

    def subscribe(self, write: Callable[[int, bytes | None], None]) -> None:
        with self.lock:
            self.subscribers.append(write)

    def unsubscribe(self, write: Callable[[int, bytes | None], None]) -> None:
        with self.lock:
            if write in self.subscribers:
                self.subscribers.remove(write)

    def publish(self, stream: int, chunk: bytes, partial: dict[int, bytes]) -> None:
        lines = (partial.get(stream, b"") + chunk).split(b"\n")
        partial[stream] = lines.pop()
        with self.lock:
            now = time.time()
            self.append([(now, stream, line + b"\n") for line in lines])
            for write in list(self.subscribers):
                write(stream, chunk)

    def append(self, entries: list[tuple[float, int, bytes]]) -> None:
        """Complete lines into the log (the lock held), and to the log driver."""
        self.log += entries
        if self.keep is not None and entries:
            self.keep(entries)

    def finish(self, partial: dict[int, bytes]) -> None:
        """The run ended: keep unterminated lines, tell the subscribers (None) and drop them."""
        with self.lock:
            self.append([(time.time(), stream, rest) for stream, rest in partial.items() if rest])
            subscribers, self.subscribers, self.live = self.subscribers, [], False
        for write in subscribers:
            write(0, None)


def pump(sources: dict[int, int], output: Output) -> None:
    """Copy fds (fd -> stream number) to output until each ends (EOF, or EIO on a pty master)."""
    partial: dict[int, bytes] = {}
    while sources:
        for fd in readable(list(sources)):
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if chunk:
                output.publish(sources[fd], chunk, partial)
            else:
                del sources[fd]
    output.finish(partial)
