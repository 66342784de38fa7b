"""A server's run directory gathered over its ssh connection: what a remote host wrote (not the
server's sshd keys, not its sockets) arrives here; a simulated server's own directory, already
here, is found so and left as it is; a server that does not answer is one line, not an error."""

import pytest

from calisim.servers.gather import Gathered, gather, gather_all

pytestmark = pytest.mark.emulation


def test_a_remote_hosts_files_arrive_here_and_not_the_servers_keys_or_sockets(sim, tmp_path):
    server = sim.servers[1]
    logs = sim.run_dir / "hosts" / "host2" / "log"
    written = sim.ssh(server, f"mkdir -p {logs} && echo 'BGP up' > {logs}/bird.log && python3 -c "
                              f"'import socket; socket.socket(socket.AF_UNIX).bind(\"{logs}/bird.ctl\")'")
    assert written.returncode == 0, written.stderr
    assert not (tmp_path / "copy").exists()
    done = gather(server.name, sim.ssh_command(server), sim.run_dir, tmp_path / "copy")
    assert done == Gathered(server.name, tmp_path / "copy", "copied"), done.line()
    assert (tmp_path / "copy" / "hosts" / "host2" / "log" / "bird.log").read_text() == "BGP up\n"
    assert (tmp_path / "copy" / "sshd.log").is_file()
    assert not (tmp_path / "copy" / "ssh").exists()
    assert not (tmp_path / "copy" / "hosts" / "host2" / "log" / "bird.ctl").exists()


def test_a_simulated_servers_own_directory_is_already_here(sim):
    gathered = gather_all({server.name: sim.ssh_command(server) for server in sim.servers}, sim.run_dir, sim.run_dir)
    assert [(g.server, g.outcome) for g in gathered] == [("server1", "already here"), ("server2", "already here")]
    assert gathered[0].line() == f"server1: run directory already here in {sim.run_dir}/servers/server1"
    assert (sim.directory / "server1" / "ssh" / "sshd_config").stat().st_size > 0  # nothing copied onto itself
    assert not list(sim.directory.glob("server*/.gather-*"))


def test_a_server_that_does_not_answer_is_one_line(tmp_path):
    unreachable = ["sh", "-c", "echo 'ssh: connect to host b port 22: No route to host' >&2; exit 255", "ssh"]
    done = gather("b.example", unreachable, tmp_path / "run", tmp_path / "b.example")
    assert done.line() == "b.example: its run directory was not gathered (ssh: connect to host b port 22: No route to host)"
