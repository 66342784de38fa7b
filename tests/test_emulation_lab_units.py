"""Labs without building anything (no root needed): the registry forgets dead labs, the control
protocol answers unknown operations, topologies are described and drawn, sessions are paired."""

import os
import subprocess
import sys

import pytest

import topologies
from calisim.cli.fault import run_command
from calisim.emulation import graph, lab, state


def record(name: str, pid: int, pidns: int, run_dir) -> lab.LabRecord:
    return lab.LabRecord(name, "two_host", {}, [], 0.0, str(run_dir), pid, pidns)


def test_the_registry_keeps_live_labs_and_forgets_dead_ones(tmp_path):
    registry = lab.Registry(tmp_path / "labs")
    live = record("live", os.getpid(), os.stat("/proc/self/ns/pid").st_ino, tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = record("dead", child.pid, os.stat("/proc/self/ns/pid").st_ino, tmp_path)
    reused = record("reused", os.getpid(), 1, tmp_path)  # a live PID, but not the lab's PID namespace
    for each in (live, dead, reused):
        registry.add(each)
    assert oct(os.stat(registry.path).st_mode & 0o777) == "0o700"
    assert oct(os.stat(registry.path / "live.json").st_mode & 0o777) == "0o600"
    assert [r.name for r in registry.running()] == ["live"]
    assert sorted(p.name for p in registry.path.iterdir()) == ["live.json"]
    assert registry.find(None) == live
    with pytest.raises(lab.LabError, match="no lab named 'dead' is running \\(running: live\\)"):
        registry.find("dead")
    registry.remove("live")
    with pytest.raises(lab.LabError, match="no lab is running"):
        registry.find(None)


def test_the_control_protocol_names_its_operations():
    service = lab.LabService(cluster=None, spec=lab.LabSpec("x", "two_host"), run_fault=run_command)
    answer = service.handle({"op": "reboot"})
    assert answer == {"ok": False, "error": "unknown operation (known: describe, diagnose, enter, fault, inspect, run, stop)"}
    assert service.handle({"op": "stop"}) == {"ok": True, "result": "stopping"} and service.stopping.is_set()
    assert service.handle({"op": "stop", "bogus": 1})["ok"] is False  # a bad argument is an error, not a crash


def test_topologies_are_described_without_building_them():
    routed = topologies.load("routed")
    hosts = {h["name"]: h for h in state.describe_hosts(routed)}
    assert hosts["r1"] == {"name": "r1", "role": "router", "joins": ["s1", "s2", "s3"],
                           "addresses": ["192.168.1.1/24", "192.168.2.1/24", "198.51.100.1/24"]}
    assert hosts["host1"]["role"] == "calico host, etcd" and hosts["ext1"]["role"] == "outside host"
    assert state.segments(routed) == [{"name": "s1", "joins": ["host1", "r1"]}, {"name": "s2", "joins": ["host2", "r1"]},
                                      {"name": "s3", "joins": ["ext1", "r1"]}]


def live_document(states: dict[tuple[str, str], str]) -> dict:
    """An inspect document of flat with 3 hosts whose sessions have the states given."""
    topo = topologies.load("flat", hosts=3)
    hosts = []
    for host in state.describe_hosts(topo):
        bgp = [{"peer": topo.host_ip(peer), "state": session_state, "type": "node-to-node mesh", "since": ""}
               for (name, peer), session_state in states.items() if name == host["name"]]
        hosts.append({**host, "interfaces": {}, "calico_node": True, "bgp": bgp,
                      "established": sum(s["state"] == "Established" for s in bgp), "blocks": [], "workloads": []})
    return {"hosts": hosts, "segments": state.segments(topo)}


def test_a_session_is_established_only_when_both_ends_say_so():
    topo = topologies.load("flat", hosts=3)
    live = live_document({("host1", "host2"): "Established", ("host2", "host1"): "Established",
                          ("host1", "host3"): "Established", ("host3", "host1"): "Active"})
    assert graph.sessions(topo, live) == {("host1", "host2"): True, ("host1", "host3"): False}


def test_pictures_name_every_host_and_colour_sessions(tmp_path):
    topo = topologies.load("flat", hosts=3)
    live = live_document({("host1", "host2"): "Established", ("host2", "host1"): "Established",
                          ("host1", "host3"): "Connect", ("host3", "host1"): "Connect"})
    source = graph.build(topo, live, title="lab x").source
    assert all(name in source for name in ("host1", "host2", "host3", "s1"))
    assert graph.ESTABLISHED in source and graph.NOT_ESTABLISHED in source
    written = graph.write(topologies.load("routed"), tmp_path / "routed.svg")
    assert written == tmp_path / "routed.svg" and ">ext1<" in written.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["routed.svg"]


def test_graph_refuses_other_file_types(tmp_path):
    done = subprocess.run([sys.executable, "-m", "calisim", "graph", "--topology", "routed", "-o", str(tmp_path / "x.jpg")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "must end in .svg or .png" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_fabric_is_drawn_spines_above_tors_above_racks():
    """Point-to-point router links (ToR to spine) are links, not segments: the fabric draws with
    its spines on top, every ToR-spine pair joined once."""
    topo = topologies.load("fabric")
    assert [s["name"] for s in state.segments(topo)] == ["rack1", "rack2"]
    source = graph.build(topo).source
    for spine in ("spine1", "spine2"):
        for tor in ("tor1", "tor2"):
            assert source.count(f"{spine} -- {tor} ") == 1, (spine, tor)
