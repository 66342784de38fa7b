"""calisim.emulation.sandbox's init (root): the fresh namespace's loopback is up before the command
runs, the command's exit status is the run's, bringing the loopback up imports no netlink library,
and the machine's network namespace is handed to the run alone (for real servers); and the same of
a run that forks into its sandbox (enter_fresh), which leaves the caller's mounts as they were."""

import os
import subprocess
from pathlib import Path

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


FORKED = """
import os, subprocess, sys
from calisim.emulation import sandbox
sandbox.enter_fresh()
path = sandbox.machine_netns()
loopback = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True).stdout
print(os.getpid(), "<LOOPBACK,UP," in loopback, os.environ[sandbox.SANDBOX_ENV] == sandbox.netns_id(),
      os.stat(path).st_ino, os.get_inheritable(int(path.rsplit("/", 1)[1])), sorted(os.listdir("/proc"))[0])
sys.exit(3)
"""


def test_a_run_forks_into_fresh_namespaces_and_exits_with_its_code():
    """enter_fresh: the run goes on as PID 2 of a fresh PID namespace (its /proc is that one's), with
    the loopback up, the sandbox's mark, and the one handle on the caller's network namespace; the
    process left behind exits with the run's code; the caller's mount table is unchanged (the
    sandbox's /proc mounted in its own mount namespace)."""
    mounts = Path("/proc/self/mountinfo").read_text()
    done = subprocess.run([PYTHON, "-c", FORKED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout.split() == ["2", "True", "True", str(os.stat("/proc/self/ns/net").st_ino), "False", "1"]
    assert Path("/proc/self/mountinfo").read_text() == mounts


MEMORY = """
import os, sys
from pathlib import Path
from calisim.emulation import sandbox
path = Path(sys.argv[1])
sandbox.enter_fresh()
sandbox.mount_memory(path)
(path / "kept").write_text("x")
sandbox.mount_memory(path)  # already mounted: kept, not mounted over
types = [line.split()[2] for line in open("/proc/self/mounts") if line.split()[1] == str(path)]
print(types, (path / "kept").read_text())
sandbox.unmount_memory(path)
print(os.path.ismount(path), (path / "kept").exists())
"""


def test_a_memory_directory_is_one_tmpfs_of_the_sandbox_alone_and_is_given_back(tmp_path):
    """mount_memory (a lab's etcd data): a tmpfs mounted once, in the sandbox's mount table only,
    its files gone once unmounted; outside the sandbox it is refused."""
    mounts = Path("/proc/self/mountinfo").read_text()
    done = subprocess.run([PYTHON, "-c", MEMORY, str(tmp_path / "memory")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['tmpfs'] x", "False False"]
    assert Path("/proc/self/mountinfo").read_text() == mounts
    outside = {name: value for name, value in os.environ.items() if name != sandbox.SANDBOX_ENV}
    script = "import sys; from pathlib import Path; from calisim.emulation import sandbox; sandbox.mount_memory(Path(sys.argv[1]))"
    refused = subprocess.run([PYTHON, "-c", script, str(tmp_path / "outside")], env=outside, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0 and "not mounting" in refused.stderr, refused.stderr
    assert not (tmp_path / "outside").exists()
