"""--servers and --place parsed, and placements that follow the topology."""

import sys

import pytest

import topologies
from calisim.servers.placement import PlacementError, Servers, check_remote, parse_place, parse_servers, place, plan

SIM3 = parse_servers("sim:3")


def test_sim_names_its_servers_in_order():
    assert SIM3 == Servers(("server1", "server2", "server3"), simulated=True)
    assert parse_servers("sim:1").names == ("server1",)


def test_a_list_is_real_servers_the_first_this_machine():
    servers = parse_servers("localhost, b.example ,c")
    assert servers == Servers(("localhost", "b.example", "c"), simulated=False)
    assert servers.first == "localhost"


@pytest.mark.parametrize("text, message", [
    ("sim:0", "--servers sim:0: the number of simulated servers must be between 1 and 99"),
    ("sim:100", "--servers sim:100: the number of simulated servers must be between 1 and 99"),
    ("sim:x", "--servers sim:x: sim: takes a number of servers (sim:3)"),
    ("a,b,a", "--servers a,b,a: a named twice (each server once)"),
    ("a,,b", "--servers a,,b: an empty server name (names are separated by single commas)"),
])
def test_bad_servers_are_refused_in_one_line(text, message):
    with pytest.raises(PlacementError) as error:
        parse_servers(text)
    assert str(error.value) == message


def test_the_seed_puts_host1_and_host2_on_different_servers():
    assert place(topologies.load("two_host"), SIM3) == {"host1": "server1", "host2": "server2"}


def test_a_fabric_rack_and_its_tor_share_a_server_spines_on_the_first():
    placement = place(topologies.load("fabric", racks=3, hosts_per_rack=2), SIM3)
    for rack, server in ((1, "server1"), (2, "server2"), (3, "server3")):
        assert placement[f"tor{rack}"] == server
        assert placement[f"host{2 * rack - 1}"] == placement[f"host{2 * rack}"] == server
    assert placement["spine1"] == placement["spine2"] == "server1"


def test_flat_hosts_go_in_blocks_reflectors_and_etcd_on_the_first():
    placement = place(topologies.load("flat", hosts=30, route_reflectors=2, etcd_members=3), SIM3)
    assert [placement[f"host{i}"] for i in (1, 10, 11, 20, 21, 30)] == ["server1", "server1", "server2",
                                                                         "server2", "server3", "server3"]
    assert {placement[node] for node in ("rr1", "rr2", "etcd1", "etcd2", "etcd3")} == {"server1"}


def test_place_overrides_and_refuses_unknown_nodes_and_servers():
    topo = topologies.load("two_host")
    assert place(topo, SIM3, parse_place(["host2=server3"]))["host2"] == "server3"
    with pytest.raises(PlacementError, match=r"^--place host9=server2: no node host9 in this topology "
                                             r"\(nodes: host1, host2\)$"):
        place(topo, SIM3, parse_place(["host9=server2"]))
    with pytest.raises(PlacementError, match=r"^--place host2=server4: no server server4 in --servers "
                                             r"\(server1, server2, server3\)$"):
        place(topo, SIM3, parse_place(["host2=server4"]))


@pytest.mark.parametrize("items, message", [
    (["host2"], "--place host2: expected NODE=SERVER (e.g. host2=server2)"),
    (["=server2"], "--place =server2: expected NODE=SERVER (e.g. host2=server2)"),
    (["host2=server2", "host2=server3"], "--place host2=server3: host2 is placed twice"),
])
def test_bad_place_items_are_refused(items, message):
    with pytest.raises(PlacementError) as error:
        parse_place(items)
    assert str(error.value) == message


@pytest.mark.emulation
def test_a_real_server_must_answer_ssh_and_have_calisim_at_the_same_path(sim):
    """Simulated servers stand in for real ones (inside the sandbox: no lookup leaves the machine)."""
    address = str(sim.servers[1].address.ip)
    check_remote(address, sys.executable, ssh=sim.ssh_options())
    with pytest.raises(PlacementError, match=rf"^--servers: {address}: no calisim at /nonexistent/python there"):
        check_remote(address, "/nonexistent/python", ssh=sim.ssh_options())
    with pytest.raises(PlacementError, match=r"^--servers: nosuchserver\.invalid: cannot resolve its address"):
        check_remote("nosuchserver.invalid", sys.executable, ssh=sim.ssh_options())
    with pytest.raises(PlacementError, match=r"^--servers: 198\.18\.0\.99: unreachable over ssh as root with keys"):
        check_remote("198.18.0.99", sys.executable, ssh=sim.ssh_options(), timeout=3)


def test_plan_without_servers_places_nothing_and_refuses_a_place():
    assert plan(topologies.load("two_host"), None, None) == (None, {})
    with pytest.raises(PlacementError, match="^--place host2=server2: placing nodes needs --servers"):
        plan(topologies.load("two_host"), None, {"host2": "server2"})


def test_plan_parses_servers_and_places_with_overrides():
    servers, placement = plan(topologies.load("two_host"), "sim:3", {"host2": "server3"})
    assert servers == SIM3
    assert placement == {"host1": "server1", "host2": "server3"}
