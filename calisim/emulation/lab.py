"""Labs: clusters that keep running, detached, until `calisim down`.

A lab is a sandbox of its own (``unshare --net --mount --pid`` with calisim's PID 1, see
sandbox.py) in which the caller's lab process (the CLI's ``python -m calisim.cli.lab_process``)
builds a Cluster with run_lab and then serves it on a control socket until it is told to stop.
The caller hands the lab its topology and the runner of `calisim fault` command lines: both sit
above the emulation, which never imports them.  Nothing of a lab lives in the caller's namespaces
except the ``unshare`` process waiting for it: when the lab's PID 1 dies, however it dies, the
kernel kills every process of the lab and frees its network and mount namespaces.

The registry: one ``NAME.json`` per lab in ``$CALISIM_LABS`` (default /run/calisim/labs, a
tmpfs, so a reboot empties it), directory mode 0700, files 0600.  A record names the lab's PID 1
in the PID namespace of whoever ran `up` together with the inode of the lab's own PID namespace,
so a dead lab (SIGKILL, reboot, a reused PID) is recognised and cleaned by the next ls/up/down.

The control interface (for `exec`, `run --lab`, `inspect`, `graph`, `fault`, `web`, `save` and `down`):
a unix stream socket ``lab.sock`` in the lab's run directory (mode 0600 in a 0700 directory:
root only).  One JSON object a line each way, one request per connection::

    -> {"op": "run", "host": "host1", "command": "calicoctl node status", "timeout": 120}
    <- {"ok": true, "result": {"host": ..., "rc": 0, "stdout": ..., "stderr": ..., "seconds": ...}}
    <- {"ok": false, "error": "unknown host 'host9' (...)"}

Operations (``LabService.op_*``): ``describe`` (what ``up`` prints), ``run`` (as Cluster.run),
``enter`` (a host's PID in the lab and its environment, for nsenter), ``locate`` (a PID in a
node's or a container's network namespace and its interfaces, for `calisim capture`), ``inspect`` (per host
role, addresses, calico-node, BGP sessions, blocks, workloads; per segment its members),
``fault`` (one `calisim fault` command line, by the runner the lab was handed), ``save`` (the
manifest and etcd snapshot `calisim save` writes, calisim.emulation.snapshot), ``diagnose``
(writes diagnostics.txt, returns its path) and ``stop``.  A new operation is one
more ``op_NAME`` method taking keyword arguments and returning JSON-able data.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shlex
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import capture, sandbox, snapshot
from ..datastore import DatastoreError
from ..node.bird import Timers
from ..process import pids, signals
from ..process.unix_server import ThreadingUnixServer
from ..servers.watchdog import ServerLost
from .cluster import CONTROL_SOCKET, Cluster, ClusterError, CommandResult, Progress, no_progress
from .faults import FaultError, Faults
from .rundir import RunDir
from .sandbox import EMULATION
from .state import describe_hosts, inspect_cluster, placement_of
from .topology import CalicoTopo

LABS_ENV = "CALISIM_LABS"
DEFAULT_REGISTRY = Path("/run/calisim/labs")
READY_TIMEOUT = 600.0  # building 50 hosts on a busy machine takes minutes
STOP_TIMEOUT = 60.0
CALL_TIMEOUT = 600.0
log = logging.getLogger("calisim.lab")
FaultRunner = Callable[[Faults, list[str]], str]  # one `calisim fault` command line -> what to print


class LabError(RuntimeError):
    """A lab cannot be found, started, reached or stopped; the message is one line for the user."""


# -- the registry (caller's side) ------------------------------------------------------------
@dataclass(frozen=True)
class LabRecord:
    name: str
    topology: str
    options: dict[str, Any]
    hosts: list[dict[str, Any]]  # as LabService.op_describe: name, role, addresses
    started: float  # epoch seconds
    run_dir: str
    pid: int  # the lab's PID 1, in the PID namespace `up` ran in
    pidns: int  # inode of the lab's own PID namespace: tells a live lab from a reused PID

    @property
    def socket(self) -> Path:
        return Path(self.run_dir) / CONTROL_SOCKET

    def alive(self) -> bool:
        try:
            return os.stat(f"/proc/{self.pid}/ns/pid").st_ino == self.pidns and pids.alive(self.pid)
        except OSError:
            return False

    def client(self) -> "LabClient":
        return LabClient(self.socket)


class Registry:
    """The labs of this machine, one JSON file each in a root-only directory."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path or os.environ.get(LABS_ENV) or DEFAULT_REGISTRY)

    def _ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)

    def _file(self, name: str) -> Path:
        return self.path / f"{name}.json"

    def records(self) -> list[LabRecord]:
        if not self.path.is_dir():
            return []
        found = []
        for file in sorted(self.path.glob("*.json")):
            try:
                found.append(LabRecord(**json.loads(file.read_text())))
            except (OSError, ValueError, TypeError):
                log.warning("ignoring unreadable lab record %s", file)
        return found

    def add(self, record: LabRecord) -> None:
        self._ensure()
        temporary = self._file(f".{record.name}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(asdict(record), out, indent=2)
        temporary.rename(self._file(record.name))

    def remove(self, name: str) -> None:
        self._file(name).unlink(missing_ok=True)

    def clean(self) -> list[LabRecord]:
        """Forget every lab whose PID 1 is gone and remove its socket.  Nothing is left to kill:
        when a PID namespace's init dies the kernel kills every process in it, and the network
        and mount namespaces (with every mount) go with their last process.  (Killing by the
        recorded namespace inode would be wrong: after a reboot it may name someone else's.)"""
        dead = [record for record in self.records() if not record.alive()]
        for record in dead:
            record.socket.unlink(missing_ok=True)
            self.remove(record.name)
        return dead

    def running(self) -> list[LabRecord]:
        self.clean()
        return self.records()

    def find(self, name: str | None) -> LabRecord:
        """The lab called name, or the only one running when name is None; LabError otherwise."""
        labs = self.running()
        if name is None:
            if len(labs) == 1:
                return labs[0]
            if not labs:
                raise LabError("no lab is running (start one with `calisim up TOPOLOGY`)")
            raise LabError(f"{len(labs)} labs are running ({', '.join(r.name for r in labs)}): choose one with --lab")
        for record in labs:
            if record.name == name:
                return record
        running = f" (running: {', '.join(r.name for r in labs)})" if labs else " (no lab is running)"
        raise LabError(f"no lab named {name!r} is running{running}")


# -- the client ------------------------------------------------------------------------------
class LabClient:
    """Talks to a lab's control socket; also a transcript Runner (``run`` returns CommandResult)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def call(self, op: str, wait: float = CALL_TIMEOUT, **arguments: Any) -> Any:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(wait)
                conn.connect(str(self.path))
                conn.sendall(json.dumps({"op": op, **arguments}).encode() + b"\n")
                reply = conn.makefile("rb").readline()
        except OSError as error:
            raise LabError(f"cannot reach the lab at {self.path}: {error}") from error
        if not reply:
            raise LabError(f"the lab at {self.path} closed the connection without answering {op!r}")
        answer = json.loads(reply)
        if not answer.get("ok"):
            raise LabError(answer.get("error", "the lab refused the request"))
        return answer.get("result")

    def run(self, host: str, command: str, timeout: float = 120.0) -> CommandResult:
        return CommandResult(**self.call("run", wait=timeout + 30, host=host, command=command, timeout=timeout))


# -- starting, entering and stopping a lab (caller's side) -----------------------------------
@dataclass(frozen=True)
class LabSpec:
    """What `up` was asked for: sent to the lab process as one JSON argument."""

    name: str
    topology: str
    options: dict[str, Any] = field(default_factory=dict)
    start_nodes: bool = False
    ipip_backend: str = "auto"
    bgp_hold_time: int | None = None  # None: BIRD's 240 s, as Calico; shorter, a cut link drops its sessions soon
    restore: str | None = None  # a saved lab's file (`up --from`): its etcd, calico-nodes and containers
    servers: str | None = None  # `--servers` (A,B,C or sim:N): the lab spread over them
    place: dict[str, str] | None = None  # `--place NODE=SERVER` overrides


def up(spec: LabSpec, process: list[str], run_base: Path | None = None, registry: Registry | None = None,
       progress: Progress = no_progress) -> LabRecord:
    """Start a lab and return its record once it is ready (LabError if it cannot be).  process is
    the command that runs the lab in its sandbox, given the spec as JSON, the run directory and
    the status descriptor as arguments (see run_lab); progress is told the lab's stages as it
    reaches them."""
    if os.geteuid() != 0:
        raise LabError("calisim needs root to create a lab's private namespaces (run it with sudo)")
    registry = registry or Registry()
    if any(record.name == spec.name for record in registry.running()):
        raise LabError(f"a lab named {spec.name!r} is already running (`calisim down {spec.name}` "
                       f"or choose another --name)")
    run_dir = RunDir.create(spec.name, run_base)
    os.chmod(run_dir.path, 0o700)
    status_read, status_write = os.pipe()
    command = [*sandbox.UNSHARE, "--", sys.executable, "-m", "calisim.emulation.sandbox", "--",
               *process, json.dumps(asdict(spec)), str(run_dir.path), str(status_write)]
    environment = {k: v for k, v in os.environ.items() if k not in (sandbox.SANDBOX_ENV, sandbox.FRESH_ENV)}
    machine = sandbox.hand_over_machine_netns(environment)  # for a lab on real servers
    with open(run_dir.path / "lab.log", "ab") as lab_log:
        unshare = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=lab_log, stderr=subprocess.STDOUT,
                                   pass_fds=(status_write, machine), start_new_session=True, env=environment)
    os.close(status_write)
    os.close(machine)
    pid = None
    try:
        pid = _wait_for_child(unshare)
        status = _read_status(status_read, run_dir.path, progress)
        _await_control(LabClient(run_dir.path / CONTROL_SOCKET))
        record = LabRecord(spec.name, spec.topology, spec.options, status["hosts"], time.time(),
                           str(run_dir.path), pid, os.stat(f"/proc/{pid}/ns/pid").st_ino)
        registry.add(record)
        return record
    except BaseException:
        if pid is not None:
            pids.stop([pid], STOP_TIMEOUT, interval=0.1, wait_killed=True)
        unshare.kill()
        unshare.wait()
        raise
    finally:
        os.close(status_read)


def _await_control(client: "LabClient", timeout: float = 30.0) -> None:
    """Wait until the control socket answers: the lab reports ready just before it serves, and a
    command run right after `up` must not find the socket missing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.call("describe", wait=5)
            return
        except LabError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _wait_for_child(unshare: subprocess.Popen, timeout: float = 30.0) -> int:
    """The PID of unshare's child: the lab's PID 1."""
    child = pids.wait_child(unshare, timeout)
    if child is not None:
        return child
    if unshare.poll() is not None:
        raise LabError(f"the lab's sandbox exited at once (status {unshare.returncode})")
    raise LabError("the lab's sandbox did not start")


def _read_status(descriptor: int, run_dir: Path, progress: Progress) -> dict:
    """The lab's status lines: {"progress": STAGE, "done": N, "total": M} as it starts, then one
    {"ok": true, "hosts": [...]} or {"ok": false, "error": ...}."""
    with os.fdopen(os.dup(descriptor), "rb", buffering=0) as lines:
        for line in _lines_until(lines, time.monotonic() + READY_TIMEOUT, run_dir):
            try:
                status = json.loads(line)
            except ValueError:
                break
            if "progress" in status:
                progress(status["progress"], status["done"], status["total"])
                continue
            if not status.get("ok"):
                raise LabError(f"{status.get('error')} (logs in {run_dir})")
            return status
    raise LabError(f"the lab died while starting; see {run_dir / 'lab.log'}")


def _lines_until(stream, deadline: float, run_dir: Path):
    """The lines of the lab's status pipe until it closes; LabError once deadline passes."""
    pending = b""
    while True:
        if not select.select([stream], [], [], max(0.0, min(1.0, deadline - time.monotonic())))[0]:
            if time.monotonic() >= deadline:
                raise LabError(f"the lab was not ready after {READY_TIMEOUT:.0f}s; see {run_dir / 'lab.log'}")
            continue
        chunk = stream.read(65536)
        if not chunk:
            return
        *complete, pending = (pending + chunk).split(b"\n")
        yield from complete


def down(record: LabRecord, registry: Registry | None = None) -> None:
    """Stop a lab: its cluster stops every process by PID; then its PID 1 exits, which frees
    the namespaces and mounts.  A lab that does not answer is terminated through its PID 1."""
    registry = registry or Registry()
    try:
        record.client().call("stop", wait=10)
    except LabError:
        log.info("lab %s does not answer; stopping it through its PID 1", record.name)
    deadline = time.monotonic() + STOP_TIMEOUT
    while record.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if record.alive():
        # SIGKILL last: the kernel then kills the rest of the lab
        pids.stop([record.pid], 10, interval=0.1, wait_killed=True)
    record.socket.unlink(missing_ok=True)
    registry.remove(record.name)


def enter_argv(record: LabRecord, host: str, command: list[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run command (a login shell if empty) on host, with the
    caller's own terminal: nsenter into the lab's PID, mount and network namespaces, then what the
    lab says enters the host (nsenter into its namespaces, over ssh for a host on another server)."""
    entry = record.client().call("enter", host=host, command=command, terminal=os.environ.get("TERM", "xterm"))
    return ["nsenter", "-t", str(record.pid), "-p", "-m", "-n", "--", *entry["argv"]], dict(entry["environment"])


# -- the lab process (inside its sandbox) ----------------------------------------------------
BASH_PROFILE = """\
# Written by calisim: a login shell on this emulated host keeps calisim's PATH
# (calicoctl, docker) that /etc/profile would reset.
export PATH={path}
[ -f ~/.bashrc ] && . ~/.bashrc
"""


class LabService:
    """The operations of the control socket, on one running cluster."""

    def __init__(self, cluster, spec: LabSpec, run_fault: FaultRunner):
        self.cluster = cluster
        self.spec = spec
        self.run_fault = run_fault
        self.stopping = threading.Event()

    def op_describe(self) -> dict:
        return {"name": self.spec.name, "topology": self.spec.topology, "options": self.spec.options,
                "run_dir": str(self.cluster.run_dir.path),
                "hosts": describe_hosts(self.cluster.topo, placement_of(self.cluster))}

    def op_run(self, host: str, command: str, timeout: float = 120.0) -> dict:
        if host != EMULATION:
            self.cluster.host(host)  # ClusterError for an unknown host
        return self.cluster.run(host, command, timeout).as_dict()

    def op_fault(self, argv: list[str]) -> str:
        """One `calisim fault` command line (the runner the lab was handed: calisim.cli.fault's)."""
        return self.run_fault(self.cluster.faults, [str(word) for word in argv])

    def op_enter(self, host: str, command: list[str], terminal: str) -> dict:
        """How `calisim exec` runs command (a login shell if empty) on host from the lab's namespaces."""
        node = self.cluster.host(host)
        environment = {**self.cluster.environment(host), "TERM": terminal}
        node.write_file(str(node.home / ".bash_profile"), BASH_PROFILE.format(path=shlex.quote(environment["PATH"])))
        argv, environment = node.shell_command(command or ["bash", "--login"], environment, terminal=not command)
        return {"argv": argv, "environment": environment}

    def op_locate(self, node: str, container: str | None = None) -> dict:
        """Where `calisim capture` captures: a PID in the node's (or its container's) network
        namespace and the interfaces there (calisim.emulation.capture)."""
        return capture.locate(self.cluster, node, container)

    def op_inspect(self) -> dict:
        return {**self.op_describe(), **inspect_cluster(self.cluster), "faults": self.cluster.faults.active()}

    def op_save(self) -> dict:
        """The lab's manifest and the path of its etcd snapshot, for `calisim save` (calisim.emulation.snapshot)."""
        saved, etcd_db = snapshot.capture(self.cluster, self.spec, self.cluster.run_dir.path / "save")
        etc = {name: snapshot.etc_view(self.cluster.host(name).state_dir).upper
               for name in self.cluster.topo.hosts(sort=True)}
        return {"manifest": saved.to_json(), "etcd_db": str(etcd_db),
                "etc": {name: str(upper) for name, upper in etc.items() if upper.is_dir()}}

    def op_diagnose(self) -> str:
        return str(self.cluster.diagnose())

    def op_stop(self) -> str:
        self.stopping.set()
        return "stopping"

    def handle(self, request: dict) -> dict:
        method = getattr(self, f"op_{request.pop('op', '')}", None)
        if method is None:
            return {"ok": False, "error": f"unknown operation (known: {', '.join(self.operations())})"}
        try:
            return {"ok": True, "result": method(**request)}
        except (ClusterError, DatastoreError, FaultError, snapshot.SaveError, TypeError, OSError) as error:
            return {"ok": False, "error": str(error)}
        except Exception as error:  # a bug must not take the lab down: report it, keep serving
            log.exception("operation %r failed", request)
            return {"ok": False, "error": f"the lab failed: {error!r} (see calisim.log)"}

    @classmethod
    def operations(cls) -> list[str]:
        return sorted(name[3:] for name in dir(cls) if name.startswith("op_"))


def serve_in_background(cluster, spec: LabSpec, run_fault: FaultRunner) -> LabService:
    """The control socket of a cluster that is not a lab (a transcript run), so that its `lab$`
    steps can run `calisim fault`; ``service.stopping.set()`` closes it."""
    service = LabService(cluster, spec, run_fault)
    threading.Thread(target=serve, args=(service, cluster.run_dir.path / CONTROL_SOCKET), name="control",
                     daemon=True).start()
    return service


def serve(service: LabService, path: Path) -> None:
    """Answer requests on the control socket until a `stop` request or SIGTERM."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            try:
                request = json.loads(line)
            except ValueError:
                answer = {"ok": False, "error": "a request is one JSON object on one line"}
            else:
                answer = (service.handle(request) if isinstance(request, dict)
                          else {"ok": False, "error": "not an object"})
            try:
                self.wfile.write(json.dumps(answer).encode() + b"\n")
            except OSError as error:
                log.warning("cannot answer %s: %s", request, error)

    path.unlink(missing_ok=True)
    old_umask = os.umask(0o177)  # the socket is created 0600
    try:
        server = ThreadingUnixServer(str(path), Handler)
    finally:
        os.umask(old_umask)
    thread = threading.Thread(target=server.serve_forever, name="control", daemon=True)
    thread.start()
    try:
        while not service.stopping.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)


def _report(descriptor: int, status: dict) -> bool:
    """Tell `up` one line of how the start goes (a progress line is one write, under PIPE_BUF:
    the node-run threads' lines never interleave); False if `up` is gone (then the lab must not stay)."""
    try:
        os.write(descriptor, json.dumps(status).encode() + b"\n")
        return True
    except BrokenPipeError:
        return False


def run_lab(spec: LabSpec, topo: CalicoTopo, run_fault: FaultRunner, run_dir: Path, status_fd: int) -> int:
    """The lab process, in its sandbox: build topo's cluster, tell `up` on status_fd, serve the
    control socket until told to stop; the exit code."""
    os.set_inheritable(status_fd, False)
    logging.basicConfig(filename=run_dir / "calisim.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    signals.unwind_on(signal.SIGTERM, signal.SIGHUP)  # through Cluster.stop()
    cluster = Cluster(topo, RunDir(run_dir), spec.ipip_backend, bgp_timers=Timers(hold=spec.bgp_hold_time),
                      servers=spec.servers, place=spec.place)
    cluster.progress = lambda stage, done, total: _report(status_fd, {"progress": stage, "done": done,
                                                                     "total": total})
    try:
        saved = snapshot.unpack(Path(spec.restore), cluster.run_dir) if spec.restore else None
        cluster.etcd_snapshot = saved[1] if saved else None
        cluster.start()
        if saved:
            snapshot.restore(cluster, saved[0])
        elif spec.start_nodes:
            cluster.start_nodes()
            cluster.wait_for_mesh(timeout=120)
        cluster.progress = no_progress  # the status descriptor is closed next
        service = LabService(cluster, spec, run_fault)
        ready = _report(status_fd, {"ok": True, **service.op_describe()})
        os.close(status_fd)
        if not ready:
            return 1
        log.info("lab %s ready; control socket %s", spec.name, run_dir / CONTROL_SOCKET)
        serve(service, run_dir / CONTROL_SOCKET)
        return 0
    except (ClusterError, DatastoreError, ServerLost, ValueError, OSError) as error:
        log.exception("lab %s failed", spec.name)
        if cluster.progress is not no_progress:  # the descriptor is still open
            _report(status_fd, {"ok": False, "error": str(error)})
        return 1
    finally:
        cluster.stop()
