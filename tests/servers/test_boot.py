"""A real server's side: its sandbox's sshd files private to root, a request it cannot serve
answered with one line and nothing left behind, and a sandbox that lasts as long as the session
that asked for it."""

import json
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from calisim.process import pids
from calisim.servers.boot import write_ssh_files
from calisim.servers.sim import SSHD_CONFIG


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


@pytest.mark.emulation
def test_the_sandbox_lasts_as_long_as_its_session_and_leaves_nothing(tmp_path, untouched):
    """boot run here (this test's namespace playing the server's own): the answer names the
    sandbox's PID 1, whose namespace holds the underlay's VXLAN and this one does not; once its
    standard input ends (the controller's session gone) the sandbox and its directory are gone."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    request = {"name": "b", "run_dir": str(tmp_path / "run"), "address": "198.18.0.2/24", "vni": 4242, "mtu": 1450,
               "peers": ["192.0.2.1"], "ssh_files": {
                   "ssh_host_ed25519_key": (tmp_path / "key").read_text(),
                   "sshd_config": SSHD_CONFIG.format(name="b", ssh=tmp_path / "run" / "ssh"),
                   "authorized_keys": (tmp_path / "key.pub").read_text()}}
    before = set(Path(tempfile.gettempdir()).glob("calisim-server-*"))
    holder = subprocess.Popen([sys.executable, "-m", "calisim.servers.boot"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holder.stdin.write(json.dumps(request) + "\n")
        holder.stdin.flush()
        init_pid = json.loads(holder.stdout.readline())["pid"]
        inside = subprocess.run(["nsenter", "-t", str(init_pid), "-n", "ip", "-d", "-o", "addr", "show", "eth0"],
                                capture_output=True, text=True, check=True).stdout
        assert "198.18.0.2/24" in inside
        link = subprocess.run(["nsenter", "-t", str(init_pid), "-n", "ip", "-d", "-o", "link", "show", "eth0"],
                              capture_output=True, text=True, check=True).stdout
        assert "vxlan id 4242 " in link and "dstport 14789" in link and "mtu 1450" in link, link
        assert subprocess.run(["ip", "link", "show", "eth0"], capture_output=True).returncode != 0  # not here
        assert len(set(Path(tempfile.gettempdir()).glob("calisim-server-*")) - before) == 1
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0, holder.stderr.read()
    assert not pids.alive(init_pid)
    assert set(Path(tempfile.gettempdir()).glob("calisim-server-*")) == before
