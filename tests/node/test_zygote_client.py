"""The `calicoctl` a cluster's hosts run (calisim/node/calicoctl.c, the zygote's client in C):
its request and answers against a zygote of the test's own (what it sends, exit codes, signals
before and after the pid is known); then commands forked by a real node zygote with the caller's
arguments, environment, working directory, standard streams, exit code and signals; the installed
calicoctl when there is no zygote.  And the Python client's fork_requested."""

import array
import marshal
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from calisim.node import zygote_client as client
from calisim.node import zygote

POOL = "- apiVersion: v1\n  kind: ipPool\n  metadata: {cidr: 10.77.0.0/16}\n"


@pytest.fixture(scope="module")
def zygote_socket(tmp_path_factory):
    """A node zygote (in the test's sandbox namespaces, as a cluster runs it); yields its socket."""
    path = tmp_path_factory.mktemp("zygote") / "zygote.sock"
    process = subprocess.Popen(zygote.command_line(path), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("node zygote ready"), "the zygote did not start"
        yield path
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def calicoctl(tmp_path, etcd):
    """Runs the installed client script; returns subprocess.run's result."""
    bin_dir = tmp_path / "bin"
    assert client.install(str(bin_dir)), f"{client.CALICOCTL} is not built: run `make setup`"
    script = bin_dir / "calicoctl"

    def run(*argv, zygote_socket=None, popen=False, **kwargs):
        environment = {"PATH": os.environ["PATH"], "ETCD_ENDPOINTS": etcd, "CALICO_RUN_DIR": str(tmp_path / "run")}
        if zygote_socket is not None:
            environment[client.ZYGOTE_ENV] = str(zygote_socket)
        if popen:
            return subprocess.Popen([script, *argv], env=environment, cwd=tmp_path, **kwargs)
        return subprocess.run([script, *argv], env=environment, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, **kwargs)
    return run


def zygote_children(socket_path: Path) -> set[int]:
    zygote_pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                      and str(socket_path).encode() in _read(p / "cmdline"))
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and _read(p / "stat").rsplit(b")", 1)[-1].split()[1:2] == [str(zygote_pid).encode()]}


def poll(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


class FakeZygote:
    """A zygote of the test's own on a socket: takes one request (and its descriptors), then says
    what the test tells it to (answer)."""

    def __init__(self, path: Path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.requested = threading.Event()
        self.request: dict = {}
        self.fds: list[int] = []
        self.connection: socket.socket | None = None
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        self.connection, _ = self.listener.accept()
        fds = array.array("i")
        data, ancillary, _, _ = self.connection.recvmsg(1 << 20, socket.CMSG_SPACE(8 * fds.itemsize))
        for _, _, payload in ancillary:
            fds.frombytes(payload)
        while more := self.connection.recv(1 << 20):
            data += more
        self.request, self.fds = marshal.loads(data), list(fds)
        self.requested.set()

    def answer(self, text: str) -> None:
        assert self.requested.wait(30), "the client sent no request"
        self.connection.sendall(text.encode())

    def hang_up(self) -> None:
        self.connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        for end in (self.connection, self.listener):
            if end is not None:
                end.close()


@pytest.fixture
def fake_zygote(tmp_path):
    zygote_ = FakeZygote(tmp_path / "fake.sock")
    yield zygote_
    zygote_.close()


@pytest.fixture
def sleeper():
    """A process standing for the command the zygote forked."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def signals_pending(pid: int) -> int:
    """Signals sent to process pid that its handlers have not yet run for."""
    status = dict(line.split(":\t", 1) for line in _read(Path(f"/proc/{pid}/status")).decode().splitlines())
    return int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)


def run_client(argv: list, env: dict, **kwargs) -> subprocess.Popen:
    assert os.access(client.CALICOCTL, os.X_OK), f"{client.CALICOCTL} is not built: run `make setup`"
    return subprocess.Popen([client.CALICOCTL, *argv], env=env, **kwargs)


def test_install_links_the_built_client_and_makes_nothing_when_it_is_not_built(tmp_path, monkeypatch):
    assert client.install(str(tmp_path / "bin")) and client.install(str(tmp_path / "bin"))  # again: replaced
    assert os.listdir(tmp_path / "bin") == ["calicoctl"] and os.readlink(tmp_path / "bin" / "calicoctl") == client.CALICOCTL
    monkeypatch.setattr(client, "CALICOCTL", str(tmp_path / "not-built"))
    assert not client.install(str(tmp_path / "other-bin")) and not (tmp_path / "other-bin").exists()


def test_the_request_is_the_callers_arguments_environment_directory_and_streams(fake_zygote, tmp_path):
    """Empty, non-ASCII and non-UTF-8 strings reach the zygote as Python's os.fsdecode has them."""
    argv = [b"apply", b"", "z\u00fcrich \u2603".encode(), b"\xff\xfe-raw", b"\xed\xa0\x80"]
    env = {b"PATH": b"/usr/bin", b"EMPTY": b"", "NAME_\u00e9".encode(): "caf\u00e9".encode(), b"RAW": b"a\x80b",
           client.ZYGOTE_ENV.encode(): bytes(fake_zygote.path)}
    (tmp_path / "input").write_text("stdin")
    with open(tmp_path / "input") as stdin:
        process = run_client(argv, env, cwd=tmp_path, stdin=stdin, stdout=subprocess.DEVNULL)
    fake_zygote.answer("pid 1\nexit 7\n")
    assert process.wait(30) == 7  # the command's exit code
    assert fake_zygote.request == {"module": "calisim.calicoctl", "args": [os.fsdecode(arg) for arg in argv],
                                   "env": {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()},
                                   "cwd": str(tmp_path), "fds": [0, 1, 2], "namespaces_of": 0}
    assert len(fake_zygote.fds) == 3 and os.read(fake_zygote.fds[0], 16) == b"stdin"  # its own standard input


@pytest.mark.parametrize("answers, code", [("pid 1\nexit 0\n", 0), ("pid 1\nexit 255", 255),
                                           ("pid 1\nexit -2\n", -signal.SIGINT), ("pid 1\n", -signal.SIGKILL)])
def test_the_exit_code_is_the_commands_and_a_death_by_signal_is_the_clients(fake_zygote, answers, code):
    """A zygote gone without an exit line is taken as the command's kill."""
    process = run_client(["version"], {client.ZYGOTE_ENV: str(fake_zygote.path)})
    fake_zygote.answer(answers)
    fake_zygote.hang_up()  # as the zygote does after the exit line
    assert process.wait(30) == code


@pytest.mark.parametrize("before_pid", [False, True], ids=["after its pid", "before its pid"])
def test_signals_go_on_to_the_forked_command(fake_zygote, sleeper, before_pid):
    process = run_client(["node", "run"], {client.ZYGOTE_ENV: str(fake_zygote.path)})
    assert fake_zygote.requested.wait(30)
    if before_pid:
        process.send_signal(signal.SIGHUP)  # kept until the zygote says which pid
        assert poll(lambda: signals_pending(process.pid) == 0), "the client did not take the signal"
        assert sleeper.poll() is None
    fake_zygote.answer(f"pid {sleeper.pid}\n")
    if not before_pid:
        process.send_signal(signal.SIGHUP)  # sent on at once, or once its pid is read
    assert sleeper.wait(30) == -signal.SIGHUP
    fake_zygote.answer(f"exit {-signal.SIGHUP}\n")
    assert process.wait(30) == -signal.SIGHUP


@pytest.mark.emulation
def test_commands_run_forked_with_the_callers_files_streams_and_exit_codes(calicoctl, zygote_socket, tmp_path):
    (tmp_path / "pool.yaml").write_text(POOL)
    created = calicoctl("create", "-f", "pool.yaml", zygote_socket=zygote_socket)  # relative: the caller's directory
    assert created.returncode == 0 and "Successfully created 1 'ipPool' resource" in created.stdout, created
    listed = calicoctl("get", "ipPool", zygote_socket=zygote_socket)  # ETCD_ENDPOINTS: the caller's environment
    assert "10.77.0.0/16" in listed.stdout and listed.returncode == 0
    again = calicoctl("create", "-f", "-", input=POOL, zygote_socket=zygote_socket)  # standard input
    assert again.returncode == 1 and "already exists" in again.stdout, again
    applied = calicoctl("apply", "-f", "-", input=POOL.replace("77", "78"), zygote_socket=zygote_socket)
    assert applied.returncode == 0 and "10.78.0.0/16" in calicoctl("get", "ipPool", zygote_socket=zygote_socket).stdout
    usage = calicoctl("bogus", zygote_socket=zygote_socket)
    assert usage.returncode == 2 and "invalid choice: 'bogus'" in usage.stderr and usage.stdout == ""


@pytest.mark.emulation
def test_a_signal_to_calicoctl_reaches_the_forked_command_and_its_death_is_calicoctls(calicoctl, zygote_socket):
    before = zygote_children(zygote_socket)
    waiting = calicoctl("create", "-f", "-", zygote_socket=zygote_socket, popen=True, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # reads standard input until its end
    forked = poll(lambda: [Path(f"/proc/{pid}") for pid in zygote_children(zygote_socket) - before
                           if b"-m\0calisim.calicoctl\0create\0-f\0-" in _read(Path(f"/proc/{pid}/cmdline"))])
    assert len(forked) == 1, "the command was not forked by the zygote"
    command = forked[0]
    waiting.send_signal(signal.SIGTERM)
    assert waiting.wait(30) == -signal.SIGTERM
    assert not command.exists()  # the zygote reaped it before it answered its exit


@pytest.mark.emulation
def test_without_a_zygote_the_installed_calicoctl_runs(calicoctl, tmp_path):
    for socket_path in (None, tmp_path / "no-zygote.sock"):  # none named, or none answering
        done = calicoctl("get", "ipPool", "-o", "yaml", zygote_socket=socket_path)
        assert done.returncode == 0 and done.stdout.strip() == "[]", done


@pytest.mark.emulation
def test_a_client_that_connects_and_sends_nothing_holds_up_no_other(calicoctl, zygote_socket):
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(zygote_socket))
        started = time.monotonic()
        done = calicoctl("version", zygote_socket=zygote_socket)
        elapsed = time.monotonic() - started
    assert done.returncode == 0 and "Client Version" in done.stdout, done
    assert elapsed < zygote.REQUEST_TIMEOUT, f"{elapsed:.1f} s: the zygote waited for the silent client's request"


@pytest.mark.emulation
def test_requests_on_standard_input_are_forked_without_waiting_one_answer_each(zygote_socket, tmp_path):
    """How a server's zygote is asked for its hosts' dockerds over ssh (fork_command there): the
    client runs under -I -S (it cannot import calisim: what runs, the zygote ran), answers each
    request with the forked PID or the zygote's refusal, and leaves without waiting for them."""
    import marshal

    log = tmp_path / "forked.log"
    request = {"module": "calisim.calicoctl", "args": ["version"], "log": str(log), "socket_path": str(zygote_socket),
               "env": {"PATH": os.environ["PATH"]}, "namespaces_of": 0}
    requests = [request, {**request, "module": "calisim.bogus"},
                {**request, "socket_path": str(tmp_path / "none.sock")}]
    done = subprocess.run(client.fork_command(), input=marshal.dumps(requests), capture_output=True, timeout=60)
    answers = done.stdout.decode().splitlines()
    assert done.returncode == 0 and len(answers) == 3, done
    assert answers[0].startswith("pid ") and int(answers[0].split()[1]) > 0
    assert answers[1] == "error the node zygote refused: error cannot start 'calisim.bogus' with 3 descriptors"
    assert answers[2].startswith(f"error the node zygote at {tmp_path / 'none.sock'} did not answer")
    assert poll(lambda: "Client Version" in log.read_text()), log.read_text()  # its output appended to the log
