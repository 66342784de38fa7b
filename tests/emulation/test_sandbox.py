"""calisim.emulation.sandbox's init (root): the fresh namespace's loopback is up before the command
runs, the command's exit status is the run's, bringing the loopback up imports no netlink library,
and the machine's network namespace is handed to the run alone (for real servers)."""

import os
import subprocess

import pytest

from calisim.emulation import sandbox
from tests.conftest import PYTHON

pytestmark = pytest.mark.emulation

INIT = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child",
        PYTHON, "-m", "calisim.emulation.sandbox", "--"]


def test_the_init_brings_up_the_loopback_and_passes_the_commands_exit_status():
    done = subprocess.run([*INIT, "sh", "-c", "ip -o link show lo; exit 3"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3, done.stderr
    assert "<LOOPBACK,UP," in done.stdout, done.stdout


def test_bringing_up_the_loopback_imports_no_netlink_library():
    """The init does it before every run starts: pyroute2's import there (~0.1-0.2 s) delayed each one."""
    script = ("import sys; from calisim.emulation import sandbox; sandbox._bring_up_loopback(); "
              "print('pyroute2' in sys.modules)")
    done = subprocess.run(["unshare", "--net", PYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\n"


def test_the_run_alone_keeps_a_handle_on_the_machines_network_namespace():
    """Handed to the init as an open descriptor, passed to its command, taken there: the path it
    gives is this namespace, the number is gone from the environment and no child inherits it."""
    environment = {}
    machine = sandbox.hand_over_machine_netns(environment)
    script = ("import os; from calisim.emulation import sandbox; sandbox.take_machine_netns(); path = "
              "sandbox.machine_netns(); print(os.stat(path).st_ino, sandbox.MACHINE_NETNS_ENV in os.environ, "
              "os.get_inheritable(int(path.rsplit('/', 1)[1])), os.stat('/proc/self/ns/net').st_ino != "
              "os.stat(path).st_ino)")
    try:
        done = subprocess.run([*INIT, PYTHON, "-c", script], capture_output=True, text=True, timeout=60,
                              pass_fds=(machine,), env={**os.environ, **environment})
    finally:
        os.close(machine)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(os.stat("/proc/self/ns/net").st_ino), "False", "False", "True"]


def test_without_a_handle_real_servers_are_refused_with_one_line(monkeypatch):
    monkeypatch.setattr(sandbox, "_machine_netns", None)
    with pytest.raises(sandbox.SandboxError, match="^this process holds no handle on the machine's network namespace"):
        sandbox.machine_netns()
