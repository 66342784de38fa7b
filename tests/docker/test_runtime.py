"""The container runtime's wait on descriptors (no root needed)."""

import os
import resource
import socket
import subprocess

import pytest

from calisim.docker.runtime import INIT, init_argv, readable


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200, reason="needs 1200 open files")
def test_the_daemon_watches_descriptors_above_1023():
    """select(2) cannot (a dockerd with 500 containers has more than a thousand descriptors)."""
    ours, theirs = socket.socketpair()
    copies = [os.dup(ours.fileno()) for _ in range(1100)]
    try:
        high = copies[-1]
        assert high > 1023 and readable([high], 0) == []
        theirs.send(b"x")
        assert sorted(readable([copies[0], high], 1)) == [copies[0], high]
        ours.recv(1)
        theirs.close()
        assert readable([high], 1) == [high]  # ended: readable, as select says
    finally:
        for fd in copies:
            os.close(fd)
        ours.close()



def spec_of(**changes) -> dict:
    spec = {"lowerdirs": ["/i/workload", "/i/busybox"], "upper": "/c/upper", "work": "/c/work", "merged": "/c/merged",
            "hostname": "abc", "files": {"hosts": "/c/hosts"}, "env": {"PATH": "/bin", "A": "x=y"},
            "user": [65534, 65534, [50]], "network": "calico", "cmd": ["sh", "-c", "echo hi"], "workdir": "/tmp",
            "console": [24, 80], "mounts": [["/src", "/dst", False]], "runtime": "/c/runtime.json", "exit": "/c/exit"}
    return {**spec, **changes}


def test_the_init_gets_the_whole_spec_on_its_command_line():
    argv = init_argv(spec_of(), tty=False, control=5, held=[7, 8])
    assert argv[0] == str(INIT)
    assert argv[argv.index("--"):] == ["--", "sh", "-c", "echo hi"]  # the command last, whatever it holds
    options = " ".join(argv[1:argv.index("--")])
    for expected in ("--control 5", "--hostname abc", "--root /c/merged /c/upper /c/work", "--workdir /tmp",
                     "--lower /i/workload --lower /i/busybox", "--file hosts /c/hosts", "--mount /src /dst ro",
                     "--env PATH=/bin --env A=x=y", "--user 65534 65534 --group 50", "--held 7 --held 8",
                     "--runtime /c/runtime.json", "--exit /c/exit"):
        assert expected in options
    assert "--tty" not in argv and "--network" not in argv


def test_a_tty_or_the_host_network_is_asked_for():
    argv = init_argv(spec_of(network="host"), tty=True, control=5, held=[])
    assert "--tty --console 24 80" in " ".join(argv) and "--network host" in " ".join(argv)
    assert "--held" not in argv


@pytest.mark.skipif(not os.access(INIT, os.X_OK), reason="make setup builds the init")
def test_the_init_refuses_a_command_line_without_its_essentials():
    result = subprocess.run([str(INIT), "--control", "5", "--", "sh"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("usage: cinit --control FD")
    result = subprocess.run([str(INIT), "--nosuch"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (2, "cinit: unknown option --nosuch\n")
