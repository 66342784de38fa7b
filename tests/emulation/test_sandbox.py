"""calisim.emulation.sandbox's init (root): the fresh namespace's loopback is up before the command
runs, the command's exit status is the run's, and bringing the loopback up imports no netlink library."""

import subprocess

import pytest

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
