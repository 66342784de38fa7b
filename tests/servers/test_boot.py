"""A real server's side: its sandbox's sshd files private to root, and a request it cannot serve
answered with one line and nothing left behind."""

import json
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from calisim.servers.boot import write_ssh_files


def test_the_sshd_files_are_written_private_to_root(tmp_path):
    write_ssh_files(tmp_path, {"ssh_host_ed25519_key": "secret\n", "sshd_config": "Port 22\n"})
    assert stat.S_IMODE((tmp_path / "ssh").stat().st_mode) == 0o700
    for name, text in (("ssh_host_ed25519_key", "secret\n"), ("sshd_config", "Port 22\n")):
        assert (tmp_path / "ssh" / name).read_text() == text
        assert stat.S_IMODE((tmp_path / "ssh" / name).stat().st_mode) == 0o600


def boot(request: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "calisim.servers.boot"], input=request, capture_output=True,
                          text=True, timeout=30)


def test_a_request_it_cannot_serve_is_one_line_and_leaves_no_directory():
    before = set(Path(tempfile.gettempdir()).glob("calisim-server-*"))
    missing = boot(json.dumps({"name": "b"}))
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "cannot start its server sandbox: the request has no 'ssh_files'\n"
    garbled = boot("not json")
    assert garbled.returncode == 1 and garbled.stderr.startswith("cannot start its server sandbox: Expecting value")
    assert set(Path(tempfile.gettempdir()).glob("calisim-server-*")) == before
