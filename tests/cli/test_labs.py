"""The lab commands' bad input (no root needed): `up --from` a missing, truncated or foreign file,
`up --from` with a topology, `save` into a directory that does not exist.  Each is one line on
standard error and exit 2, with nothing registered and no run directory made; `inspect`'s text from
the state a lab's control socket answers."""

import argparse
import time
from types import SimpleNamespace


from calisim.cli import labs
from calisim.emulation import lab


def test_up_from_a_missing_truncated_or_foreign_file_is_one_line(nowhere, refused):
    assert refused("up", "--from", str(nowhere / "lab.calisim")) == f"calisim: {nowhere}/lab.calisim: no such file\n"
    (nowhere / "cut.calisim").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)
    assert "is not a saved lab, or it is truncated or corrupt" in refused("up", "--from", str(nowhere / "cut.calisim"))
    (nowhere / "notes.txt").write_text("not a lab\n")
    assert "is not a saved lab" in refused("up", "--from", str(nowhere / "notes.txt"))


def test_up_needs_a_topology_or_a_file_and_not_both(nowhere, refused):
    assert "give no TOPOLOGY, topology options or --start-nodes with it" in refused(
        "up", "two_host", "--from", str(nowhere / "lab.calisim"))
    assert "give no TOPOLOGY" in refused("up", "--hosts", "3", "--from", str(nowhere / "lab.calisim"))
    assert refused("up") == "calisim: up needs a TOPOLOGY (two_host, flat, routed, fabric) or --from FILE\n"


def test_save_into_a_missing_directory_is_one_line(nowhere, refused):
    assert refused("save", "-o", str(nowhere / "no" / "lab.calisim")) == \
        f"calisim: cannot write {nowhere}/no/lab.calisim: no directory {nowhere}/no\n"


def test_inspect_says_why_a_hosts_dockerd_is_not_running(monkeypatch, capsys):
    host = {"name": "host2", "role": "calico", "interfaces": {"host2-eth0": ["192.168.3.228/24"]}, "bgp": [],
            "calico_node": False, "established": 0, "blocks": [], "workloads": [], "dockerd": False,
            "dockerd_error": "unable to configure the Docker daemon with file /etc/docker/daemon.json: "
                             "unexpected end of JSON input"}
    state = {"hosts": [host, {**host, "name": "host1", "dockerd": True, "dockerd_error": ""}],
             "segments": [{"name": "s1", "joins": ["host1", "host2"]}]}
    record = SimpleNamespace(name="two_host", topology="two_host", started=time.time(), run_dir="/tmp/run",
                             client=lambda: SimpleNamespace(call=lambda op: state))
    monkeypatch.setattr(lab, "Registry", lambda: SimpleNamespace(find=lambda name: record))
    assert labs.lab_inspect(argparse.Namespace(name=None, json=False)) == 0
    shown = capsys.readouterr().out
    assert ("dockerd not running:\n  host2: unable to configure the Docker daemon with file "
            "/etc/docker/daemon.json: unexpected end of JSON input") in shown
    assert "host1: " not in shown


def test_inspect_and_ls_show_where_each_node_runs_when_a_lab_has_servers(monkeypatch, capsys):
    hosts = [{"name": name, "role": "calico host", "server": server, "interfaces": {}, "bgp": [], "calico_node": True,
              "established": 0, "blocks": [], "workloads": [], "dockerd": True, "dockerd_error": ""}
             for name, server in (("host1", "server1"), ("host2", "server2"), ("host3", "server2"))]
    state = {"hosts": hosts, "segments": []}
    record = SimpleNamespace(name="flat", topology="flat", started=time.time(), run_dir="/tmp/run", hosts=hosts,
                             client=lambda: SimpleNamespace(call=lambda op: state))
    monkeypatch.setattr(lab, "Registry", lambda: SimpleNamespace(find=lambda name: record, running=lambda: [record]))
    assert labs.lab_inspect(argparse.Namespace(name=None, json=False)) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("HOST "))
    assert header.split()[:3] == ["HOST", "ROLE", "SERVER"]
    assert next(line for line in table if line.startswith("host3 ")).split()[3] == "server2"
    assert labs.lab_ls(argparse.Namespace()) == 0
    listed = capsys.readouterr().out
    assert "SERVERS" in listed and "server1: 1, server2: 2" in listed
    for host in hosts:
        del host["server"]
    labs.lab_ls(argparse.Namespace())
    assert "SERVERS" not in capsys.readouterr().out
