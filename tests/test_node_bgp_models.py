"""BGP beyond the mesh, without root: the route reflector's model, global self-peers, cross-subnet
IPIP in the kernel filter, the fabric routers' configs (all checked with `bird -p`), and the
topologies' option checks."""

import pytest

import topologies
from calisim.datastore import keys
from calisim.node import bird

from .test_node_bird_config import entries


def test_a_global_peer_equal_to_the_nodes_own_address_is_rendered():
    config = bird.bird_config(entries(mesh=False, **{
        keys.GLOBAL_PEERS_V4 + "172.16.0.1": {"ip": "172.16.0.1", "as_num": "64512"},
        keys.GLOBAL_PEERS_V4 + "172.16.0.2": {"ip": "172.16.0.2", "as_num": "64512"}}), "host1")
    assert [p.protocol for p in config.global_peers] == ["Global_172_16_0_1", "Global_172_16_0_2"]
    assert "protocol bgp Global_172_16_0_1 from bgp_template" in bird.render(config)


def test_cross_subnet_pools_tunnel_only_next_hops_off_the_nodes_subnet(tmp_path):
    values = entries(**{
        keys.bgp_host_network_v4("host1"): "172.16.0.0/24",
        keys.POOLS_V4 + "10.10.0.0-16": {"cidr": "10.10.0.0/16", "ipip": "tunl0", "ipip_mode": "cross-subnet"},
        keys.POOLS_V4 + "10.20.0.0-16": {"cidr": "10.20.0.0/16", "ipip": "tunl0", "ipip_mode": "always"}})
    text = bird.render(bird.bird_config(values, "host1"))
    kernel = text[text.index("filter calico_kernel"):text.index("protocol kernel")]
    cross, always = kernel.index("net ~ 10.10.0.0/16"), kernel.index("net ~ 10.20.0.0/16")
    assert "if ( bgp_next_hop ~ 172.16.0.0/24 ) then accept;" in kernel[cross:always]
    assert "bgp_next_hop ~" not in kernel[always:]
    path = tmp_path / "bird.cfg"
    bird.write_checked(text, path)


def reflector_entries(**extra):
    values = entries(mesh=False, hosts=("host1", "host2", "host3"))
    values.update({
        keys.ROUTE_REFLECTORS_V4 + "172.16.254.1": {"ip": "172.16.254.1", "cluster_id": "255.0.0.1"},
        keys.ROUTE_REFLECTORS_V4 + "172.16.254.2": {"ip": "172.16.254.2", "cluster_id": "255.0.0.1"},
        keys.GLOBAL_PEERS_V4 + "172.16.254.1": {"ip": "172.16.254.1", "as_num": "64512"},
        keys.bgp_host_as("host3"): "65003"})
    values.update(extra)
    return values


def test_a_reflector_meshes_with_the_others_and_serves_every_node_peering_with_it(tmp_path):
    config = bird.reflector_config(reflector_entries(), "172.16.254.1")
    assert config.cluster_id == "255.0.0.1"
    assert [(p.protocol, p.as_number) for p in config.mesh_peers] == [("Mesh_172_16_254_2", 64512)]
    assert [(c.protocol, c.as_number, c.local_as) for c in config.clients] == [
        ("Global_172_16_0_1", 64512, 64512), ("Global_172_16_0_2", 64512, 64512), ("Global_172_16_0_3", 65003, 64512)]
    text = bird.render_reflector(config)
    assert "rr client;" in text and "rr cluster id 255.0.0.1;" in text
    assert "protocol kernel" not in text and "next hop self;" not in text  # no kernel routes, next hops kept
    bird.write_checked(text, tmp_path / "bird.cfg")


def test_a_reflector_takes_node_specific_peers_and_stands_alone_unregistered():
    values = reflector_entries(**{keys.bgp_host_peers_v4("host2") + "172.16.254.3": {"ip": "172.16.254.3", "as_num": "64512"}})
    config = bird.reflector_config(values, "172.16.254.3")
    assert config.cluster_id is None and config.mesh_peers == ()
    assert [c.protocol for c in config.clients] == ["Node_172_16_0_2"]
    assert "rr cluster id" not in bird.render_reflector(config)


@pytest.mark.parametrize("model", ["as-per-rack", "as-per-host", "downward-default"])
def test_every_fabric_router_config_passes_bird_p(model, tmp_path):
    topo = topologies.load("fabric", racks=3, hosts_per_rack=2, spines=2, model=model)
    assert topo.calico_hosts() == [f"host{i}" for i in range(1, 7)]
    assert topo.bgp_routers() == ["spine1", "spine2", "tor1", "tor2", "tor3"]
    for router in topo.bgp_routers():
        path = tmp_path / f"{router}.cfg"
        path.write_text(topo.nodeInfo(router)["bird"])
        bird.check(path)
    tor2 = topo.nodeInfo("tor2")["bird"]
    assert "neighbor 172.20.2.11 as" in tor2 and "neighbor 172.21.2.3 as 65100;" in tor2
    assert ("rr client;" in tor2) == (model == "as-per-rack")


def test_fabric_as_plan_and_calico_steps():
    topo = topologies.load("fabric", model="as-per-host")
    assert topo.node_run_command("host3") == "calicoctl node run --as 4200000003"
    rack = topologies.load("fabric")
    assert [rack.node_run_command(h) for h in rack.calico_hosts()] == [
        "calicoctl node run --as 65001", "calicoctl node run --as 65001",
        "calicoctl node run --as 65002", "calicoctl node run --as 65002"]
    steps = rack.after_node_run()
    assert steps[0] == ("host1", "calicoctl config set nodeToNodeMesh off")
    assert "{scope: node, node: host3, peerIP: 172.20.2.1}" in steps[1][1]


@pytest.mark.parametrize("options, message", [
    ({"racks": 0}, "1 to 99 racks, not 0"),
    ({"racks": 100}, "1 to 99 racks, not 100"),
    ({"hosts_per_rack": 245}, "1 to 244 hosts per rack"),
    ({"spines": 0}, "1 to 254 spines"),
    ({"model": "as-per-planet"}, "unknown fabric model"),
])
def test_a_fabric_beyond_its_address_plan_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        topologies.load("fabric", **options)


def test_topology_options_stay_with_their_topology():
    with pytest.raises(ValueError, match="does not take --racks"):
        topologies.load("flat", racks=2)


def test_every_bundled_scenario_parses_and_names_hosts_its_topology_has():
    from calisim.cli import build_parser
    from calisim.scenarios import transcript
    from calisim.scenarios.bundled import SCENARIOS

    assert {"two-host", "route-reflectors", "fabric-as-per-rack", "fabric-as-per-host", "fabric-downward-default",
            "cross-subnet"} <= set(SCENARIOS)
    help_text = build_parser().format_help()
    for name, scenario in SCENARIOS.items():
        assert name in help_text
        topo = scenario.load_topology()
        transcript.check_hosts(transcript.parse(scenario.text()), topo.hosts(sort=True))


def test_hosts_per_subnet_puts_both_kinds_of_neighbour_side_by_side():
    wide = topologies.load("routed", hosts_per_subnet=2)
    assert [wide.host_ip(h) for h in wide.calico_hosts()] == ["192.168.1.10", "192.168.1.11", "192.168.2.10", "192.168.2.11"]
    seed = topologies.load("routed")
    assert [seed.host_ip(h) for h in seed.calico_hosts()] == ["192.168.1.10", "192.168.2.10"]
    with pytest.raises(ValueError, match="1 to 245 hosts per subnet, not 0"):
        topologies.load("routed", hosts_per_subnet=0)


def test_flat_route_reflectors_sit_at_172_16_254_k():
    topo = topologies.load("flat", 2, route_reflectors=2)
    assert topo.reflector_hosts() == ["rr1", "rr2"] and topo.calico_hosts() == ["host1", "host2"]
    assert [topo.host_ip(h) for h in topo.reflector_hosts()] == ["172.16.254.1", "172.16.254.2"]
    assert [command for _, command in topo.after_node_run()][:2] == [
        "routereflector run --ip 172.16.254.1", "routereflector run --ip 172.16.254.2"]
    with pytest.raises(ValueError, match="0 to 10 route reflectors"):
        topologies.load("flat", 2, route_reflectors=11)
