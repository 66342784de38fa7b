"""The `calisim` command itself (no root): the console script setup.py installs beside the
interpreter answers --version as `python -m calisim` does, names itself `calisim`, and ends
quietly when the program it is piped into has gone."""

import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import PYTHON

CONSOLE_SCRIPT = Path(PYTHON).parent / "calisim"


@pytest.mark.parametrize("command", [[str(CONSOLE_SCRIPT)], [PYTHON, "-m", "calisim"]], ids=["calisim", "python -m"])
def test_version_is_the_installed_distributions(command):
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"calisim {metadata.version('calisim')}\n"


def test_help_names_the_command_calisim():
    done = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: calisim [-h] [--version] COMMAND ...")


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """`calisim ls | head`: the pipe closes before calisim writes; no traceback, SIGPIPE's status."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "CALISIM_LABS": str(tmp_path)}  # unbuffered: print fails
    process = subprocess.Popen([str(CONSOLE_SCRIPT), "ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=environment)
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert stderr == b"" and process.returncode == 141


# What only the sandboxed run needs: Mininet's network and the cluster, the etcd client, netlink, BIRD's configs.
SANDBOX_ONLY = ("calisim.emulation.cluster", "calisim.emulation.lab", "calisim.chaos.engine", "calisim.node.bird",
                "aetcd", "pyroute2", "scapy")
CHECK_THEN_STOP = f"""
import sys
from calisim.emulation import sandbox

class Reexecuting(Exception):
    pass

def reexecute(*_):
    raise Reexecuting

sandbox.enter_fresh = reexecute
from calisim.cli import dispatch
try:
    dispatch(sys.argv[1:])
except Reexecuting:
    print(" ".join(sorted(name for name in {SANDBOX_ONLY!r} if name in sys.modules)) or "none")
"""


@pytest.mark.parametrize("argv", [["two-host"], ["run", "SCRIPT", "--topology", "flat", "--hosts", "3"]],
                         ids=["two-host", "run flat"])
def test_the_first_process_checks_its_input_without_importing_the_emulation(argv, tmp_path):
    """A run's first process only parses and checks before it re-executes itself in its sandbox,
    where everything is imported again: importing the cluster there too cost the seed demo ~0.3 s."""
    script = tmp_path / "script.txt"
    script.write_text("host1$ calicoctl node status\n")
    argv = [str(script) if arg == "SCRIPT" else arg for arg in argv]
    done = subprocess.run([PYTHON, "-c", CHECK_THEN_STOP, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "none\n"
