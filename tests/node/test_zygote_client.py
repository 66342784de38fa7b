"""The `calicoctl` a cluster's hosts run (calisim.node.zygote_client under `python -I -S`): commands
forked by a real node zygote with the caller's arguments, environment, working directory, standard
streams, exit code and signals; the installed calicoctl when there is no zygote."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from calisim.node import zygote_client as client
from calisim.node import zygote

pytestmark = pytest.mark.emulation

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
    bin_dir.mkdir()
    script = client.install(str(bin_dir))
    assert Path(script).read_text().startswith("#!") and " -IS\n" in Path(script).read_text().splitlines(True)[0]

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


def test_commands_run_forked_with_the_callers_files_streams_and_exit_codes(calicoctl, zygote_socket, tmp_path):
    (tmp_path / "pool.yaml").write_text(POOL)
    created = calicoctl("create", "-f", "pool.yaml", zygote_socket=zygote_socket)  # relative: the caller's directory
    assert created.returncode == 0 and "Successfully created 1 'ipPool' resource" in created.stdout, created
    listed = calicoctl("get", "ipPool", zygote_socket=zygote_socket)  # ETCD_ENDPOINTS: the caller's environment
    assert "10.77.0.0/16" in listed.stdout and listed.returncode == 0
    again = calicoctl("create", "-f", "-", input=POOL, zygote_socket=zygote_socket)  # standard input
    assert again.returncode == 1 and "already exists" in again.stdout, again
    usage = calicoctl("bogus", zygote_socket=zygote_socket)
    assert usage.returncode == 2 and "invalid choice: 'bogus'" in usage.stderr and usage.stdout == ""


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


def test_without_a_zygote_the_installed_calicoctl_runs(calicoctl, tmp_path):
    for socket_path in (None, tmp_path / "no-zygote.sock"):  # none named, or none answering
        done = calicoctl("get", "ipPool", "-o", "yaml", zygote_socket=socket_path)
        assert done.returncode == 0 and done.stdout.strip() == "[]", done


def test_a_client_that_connects_and_sends_nothing_holds_up_no_other(calicoctl, zygote_socket):
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(zygote_socket))
        started = time.monotonic()
        done = calicoctl("version", zygote_socket=zygote_socket)
        elapsed = time.monotonic() - started
    assert done.returncode == 0 and "Client Version" in done.stdout, done
    assert elapsed < zygote.REQUEST_TIMEOUT, f"{elapsed:.1f} s: the zygote waited for the silent client's request"


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
