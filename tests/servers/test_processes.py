"""Processes on a simulated server, reached only over its ssh: started with exactly the
environment given, known and stopped by their PID there, waited for by a path there, and a
unix socket there reached through ssh's forwarding."""

import socket
import sys

import pytest

from calisim.servers import processes
from calisim.servers.sim import ServerError

pytestmark = pytest.mark.emulation


def test_a_process_runs_with_its_environment_and_is_stopped_by_its_pid_there(sim):
    server = sim.servers[1]
    ssh = sim.ssh_command(server)
    process = processes.start(ssh, server.name, ["sleep", "600"], {"CALISIM_MARK": "a b'c"}, "/tmp/sleep.log")
    environ = processes.run(ssh, server.name, f"tr '\\0' '\\n' < /proc/{process.pid}/environ")
    assert environ == "CALISIM_MARK=a b'c\n"  # exactly what was given: nothing of this machine's
    assert processes.run(ssh, server.name, f"cat /proc/{process.pid}/comm") == "sleep\n"
    processes.stop([process])
    assert process.poll() is not None
    assert processes.run(ssh, server.name, f"test -e /proc/{process.pid} && echo alive || echo gone") == "gone\n"


def test_a_process_that_exits_before_its_path_appears_is_named(sim):
    server = sim.servers[1]
    process = processes.start(sim.ssh_command(server), server.name, ["false"], {}, "/tmp/false.log")
    with pytest.raises(ServerError, match=f"^{server.name}: the thing exited with code 1 before /tmp/never appeared"):
        processes.wait_for_path(process, "/tmp/never", "the thing", timeout=10)


def test_a_unix_socket_there_is_reached_through_the_servers_connection(sim, tmp_path):
    server = sim.servers[1]
    ssh = sim.ssh_command(server)
    serve = ("import socket; s = socket.socket(socket.AF_UNIX); s.bind('/tmp/there.sock'); s.listen(1); "
             "c, _ = s.accept(); c.sendall(open('/proc/sys/kernel/hostname').read().encode()); c.close()")
    process = processes.start(ssh, server.name, [sys.executable, "-c", serve], {}, "/tmp/serve.log")
    try:
        processes.wait_for_path(process, "/tmp/there.sock", "the socket's server", timeout=20)
        local = processes.forward(ssh, server.name, sim.control_directory / "here.sock", "/tmp/there.sock")
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(local))
            assert client.recv(100) == f"{server.name}\n".encode()
    finally:
        processes.stop([process])
