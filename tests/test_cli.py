"""The `calisim` command itself (no root): the console script setup.py installs beside the
interpreter answers --version as `python -m calisim` does, and names itself `calisim`."""

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
