"""Pictures of a topology or a lab without building anything (no root needed): sessions are
paired, hosts named and sessions coloured, a fabric drawn spines above ToRs above racks."""

import subprocess
import sys

import topologies
from calisim.emulation import graph, state


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


def test_ipv6_sessions_pair_hosts_by_their_ipv6_addresses_and_are_counted_apart():
    """bird6's sessions (here ipv6 channels of one BIRD) judge the pair with the IPv4 ones, and a
    host's box counts each version as `calicoctl node status` has a table for each."""
    topo = topologies.load("two_host")
    hosts = []
    for host in state.describe_hosts(topo):
        peer = "host2" if host["name"] == "host1" else "host1"
        v6_state = "Established" if host["name"] == "host1" else "Active"
        bgp = [{"peer": topo.host_ip(peer), "version": 4, "state": "Established", "type": "node-to-node mesh"},
               {"peer": {"host1": "fd00:3::229", "host2": "fd00:3::228"}[peer], "version": 6, "state": v6_state,
                "type": "node-to-node mesh"}]
        hosts.append({**host, "calico_node": True, "bgp": bgp, "blocks": ["10.10.0.0/26", "fd80::/122"],
                      "established": sum(s["state"] == "Established" for s in bgp), "workloads": []})
    live = {"hosts": hosts, "segments": state.segments(topo)}
    assert graph.sessions(topo, live) == {("host1", "host2"): False}  # host2's IPv6 end is not up
    assert graph.session_label(graph.paired_sessions(topo, live)[("host1", "host2")]) == "IPv6 BGP not established"
    assert "IPv6 BGP not established" in graph.build(topo, live).source
    up = [{"version": version, "state": "Established"} for version in (4, 6)]
    assert graph.session_label(up) == "BGP Established (IPv4, IPv6)" and graph.session_label(up[:1]) == "BGP Established"
    assert graph.session_label([{**session, "state": "Active"} for session in up]) == "BGP not established"
    texts = {host["name"]: [row.text for row in graph.host_rows(host)] for host in hosts}
    assert "BGP IPv4 1/1 · IPv6 1/1 Established" in texts["host1"] and "fd00:3::229/64" in texts["host1"]
    assert "BGP IPv4 1/1 · IPv6 0/1 Established" in texts["host2"] and "block fd80::/122" in texts["host2"]
    assert state.bgp_summary(hosts[0]["bgp"][:1]) == "BGP 1/1 Established"  # IPv4 only: as before
    assert state.bgp_summary([]) == "BGP 0/0 Established"
    assert graph.segment_subnets(state.links(topo), "s1") == ["192.168.3.0/24", "fd00:3::/64"]


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


def test_a_session_to_a_tor_or_a_reflector_is_paired_with_it_by_the_calico_end():
    topo = topologies.load("fabric")
    hosts = [{**host, "bgp": [{"peer": "172.20.1.1", "state": "Established" if host["name"] == "host1" else "Active",
                               "type": "node specific", "since": ""}] if host["name"] in ("host1", "host2") else []}
             for host in state.describe_hosts(topo)]
    assert graph.sessions(topo, {"hosts": hosts}) == {("host1", "tor1"): True, ("host2", "tor1"): False}
    reflected = topologies.load("flat", hosts=2, route_reflectors=1)
    rr = next(h for h in state.describe_hosts(reflected) if h["name"] == "rr1")["addresses"][0].split("/")[0]
    hosts = [{"name": "host1", "bgp": [{"peer": rr, "state": "Established", "type": "global", "since": ""}]}]
    assert graph.sessions(reflected, {"hosts": hosts}) == {("host1", "rr1"): True}


def test_a_topology_on_servers_shows_each_hosts_server_in_its_colour():
    topo = topologies.load("flat", hosts=3)
    placement = {"host1": "server1", "host2": "server2", "host3": "server10"}
    hosts = state.describe_hosts(topo, placement)
    assert [host["server"] for host in hosts] == ["server1", "server2", "server10"]
    assert "server" not in state.describe_hosts(topo)[0]
    colours = graph.server_colours(hosts)
    assert list(colours) == ["server1", "server2", "server10"]  # natural order, each its own colour
    assert len(set(colours.values())) == 3
    rows = graph.host_rows(hosts[2], colours)
    assert rows[2] == graph.Row("on server10", colours["server10"])
    source = graph.build(topo, placement=placement).source
    assert "on 3 servers:" in source and f"border='3' color='{colours['server2']}'" in source
    assert "servers" not in graph.build(topo).source
