"""BIRD's config computed from etcd keys, rendered, and accepted by `bird -p` (no root needed).

BGP beyond the mesh: the route reflector's model, global self-peers, cross-subnet IPIP in the
kernel filter.  The BGP settings an emulation may change ($CALISIM_BGP_HOLD_TIME,
$CALISIM_BGP_GRACEFUL_RESTART): unset, the configs are Calico's (no hold time: BIRD's 240 s;
graceful restart on); set, every node's and reflector's config carries them and `bird -p` accepts
it; a value BGP does not allow is refused."""

import pytest

from calisim.datastore import keys
from calisim.node import bird


def entries(mesh=True, hosts=("host1", "host2", "host3"), **extra):
    values = {keys.GLOBAL_AS: "64512", keys.NODE_MESH: {"enabled": mesh}}
    for index, host in enumerate(hosts, start=1):
        values[keys.bgp_host_ip_v4(host)] = f"172.16.0.{index}"
    values.update(extra)
    return values


def test_mesh_peers_are_every_other_node_named_like_calico():
    config = bird.bird_config(entries(), "host1")
    assert config.router_id == "172.16.0.1"
    assert [(p.protocol, p.ip, p.as_number) for p in config.mesh_peers] == [
        ("Mesh_172_16_0_2", "172.16.0.2", 64512), ("Mesh_172_16_0_3", "172.16.0.3", 64512)]


def test_mesh_off_keeps_only_explicit_peers():
    config = bird.bird_config(entries(mesh=False, **{
        keys.GLOBAL_PEERS_V4 + "10.0.0.1": {"ip": "10.0.0.1", "as_num": "65000"},
        keys.bgp_host_peers_v4("host1") + "10.0.0.2": {"ip": "10.0.0.2", "as_num": "65001"},
        keys.bgp_host_peers_v4("host2") + "10.0.0.3": {"ip": "10.0.0.3", "as_num": "65002"}}), "host1")
    assert config.mesh_peers == ()
    assert [p.protocol for p in config.peers] == ["Global_10_0_0_1", "Node_10_0_0_2"]


def test_node_as_overrides_the_global_as_for_itself_and_its_peers():
    config = bird.bird_config(entries(**{keys.bgp_host_as("host2"): "65002", keys.GLOBAL_AS: "64600"}), "host1")
    assert config.local_as == 64600
    assert {p.ip: p.as_number for p in config.mesh_peers} == {"172.16.0.2": 65002, "172.16.0.3": 64600}


def test_missing_node_address_is_an_error():
    with pytest.raises(bird.BirdError, match="no IPv4 address"):
        bird.bird_config(entries(), "host9")


def test_rendered_config_has_pools_blocks_and_ipip_rewrite_and_passes_bird_p(tmp_path):
    config = bird.bird_config(entries(**{
        keys.POOLS_V4 + "10.10.0.0-16": {"cidr": "10.10.0.0/16", "ipip": "tunl0", "masquerade": True},
        keys.POOLS_V4 + "192.168.0.0-16": {"cidr": "192.168.0.0/16", "masquerade": False},
        keys.host_affinity_blocks("host1") + "10.10.86.192-26": {}}), "host1")
    text = bird.render(config)
    assert "if ( net ~ 10.10.0.0/16 ) then { accept; }" in text
    assert "route 10.10.86.192/26 blackhole;" in text
    assert "if ( net = 10.10.86.192/26 ) then { accept; }" in text
    assert 'if ( source = RTS_BGP && net ~ 10.10.0.0/16 ) then {' in text
    assert 'RTS_BGP && net ~ 192.168.0.0/16' not in text  # a plain pool is routed on the uplink
    assert "protocol bgp Mesh_172_16_0_2 from bgp_template" in text
    pools_filter = text[text.index("filter calico_pools"):]
    assert pools_filter.index("source = RTS_DEVICE") < pools_filter.index("calico_aggr();")  # no host subnets
    assert "local 172.16.0.1 as 64512;" in text
    path = tmp_path / "bird.cfg"
    assert bird.write_checked(text, path) is True
    assert bird.write_checked(text, path) is False  # unchanged: no reload needed


def test_a_config_bird_rejects_is_never_written(tmp_path):
    path = tmp_path / "bird.cfg"
    path.write_text("# last good\n")
    with pytest.raises(bird.BirdError, match="bird -p rejected"):
        bird.write_checked("protocol bgp { nonsense }\n", path)
    assert path.read_text() == "# last good\n"
    assert not path.with_suffix(".new").exists()


def test_without_an_ipv6_address_the_node_has_no_ipv6_protocols(tmp_path):
    config = bird.bird_config(entries(**{keys.bgp_host_ip_v6("host2"): "fd00::2"}), "host1")
    assert config.ipv6 is None
    text = bird.render(config)
    assert "# IPv6 disabled on this node." in text and "bgp_template6" not in text


def test_ipv6_mesh_global_and_node_peers_use_calicos_names_and_an_ipv6_channel(tmp_path):
    config = bird.bird_config(entries(**{
        keys.bgp_host_ip_v6("host1"): "fd00:3::229", keys.bgp_host_ip_v6("host2"): "fd80:24e2:f998:72d7::2",
        keys.bgp_host_ip_v6("host3"): "",  # a node without IPv6 is no IPv6 peer
        keys.GLOBAL_PEERS_V6 + "fd00:3::1": {"ip": "fd00:3::1", "as_num": "64513"},
        keys.bgp_host_peers_v6("host1") + "fd00:3::2": {"ip": "fd00:3::2", "as_num": "64514"},
        keys.bgp_host_peers_v6("host2") + "fd00:3::3": {"ip": "fd00:3::3", "as_num": "64515"},
        keys.POOLS_V6 + "fd80:24e2:f998:72d6::-64": {"cidr": "fd80:24e2:f998:72d6::/64"},
        keys.host_affinity_blocks("host1", 6) + "fd80:24e2:f998:72d6::40-122": {}}), "host1")
    assert config.ipv6 is not None
    assert [(p.protocol, p.ip) for p in config.ipv6.peers] == [
        ("Mesh_fd80_24e2_f998_72d7__2", "fd80:24e2:f998:72d7::2"), ("Global_fd00_3__1", "fd00:3::1"),
        ("Node_fd00_3__2", "fd00:3::2")]
    assert [p.protocol for p in config.mesh_peers] == ["Mesh_172_16_0_2", "Mesh_172_16_0_3"]  # IPv4 unchanged
    text = bird.render(config)
    v6 = text[text.index("template bgp bgp_template6"):]
    assert "local fd00:3::229 as 64512;" in v6 and "ipv6 {" in v6 and "export filter calico_pools6;" in v6
    assert "protocol bgp Mesh_fd80_24e2_f998_72d7__2 from bgp_template6 {\n  neighbor fd80:24e2:f998:72d7::2 as 64512;" in v6
    assert "route fd80:24e2:f998:72d6::40/122 blackhole;" in text
    assert "if ( net ~ fd80:24e2:f998:72d6::/64 ) then { accept; }" in text
    path = tmp_path / "bird.cfg"
    assert bird.write_checked(text, path) is True  # bird -p accepts it


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
    assert config.ipv4.cluster_id == "255.0.0.1" and config.ipv6 is None
    assert [(p.protocol, p.as_number) for p in config.ipv4.mesh_peers] == [("Mesh_172_16_254_2", 64512)]
    assert [(c.protocol, c.as_number, c.local_as) for c in config.ipv4.clients] == [
        ("Global_172_16_0_1", 64512, 64512), ("Global_172_16_0_2", 64512, 64512), ("Global_172_16_0_3", 65003, 64512)]
    text = bird.render_reflector(config)
    assert "rr client;" in text and "rr cluster id 255.0.0.1;" in text
    assert "protocol kernel" not in text and "next hop self;" not in text  # no kernel routes, next hops kept
    assert "# IPv6 disabled: the reflector runs without --ip6." in text
    assert "ipv6;" not in text and "ipv6 {" not in text
    bird.write_checked(text, tmp_path / "bird.cfg")


def reflector_entries6(**extra):
    """reflector_entries, dual stack: host1 and host2 have IPv6 addresses (host3 has none), two
    reflectors registered under rr_v6, a global IPv6 peer at rr1's IPv6 address."""
    values = reflector_entries(**{
        keys.bgp_host_ip_v6("host1"): "fd00:172:16::1", keys.bgp_host_ip_v6("host2"): "fd00:172:16::2",
        keys.bgp_host_ip_v6("host3"): "",
        keys.route_reflector("fd00:172:16::254:1"): {"ip": "fd00:172:16::254:1", "cluster_id": "255.0.0.6"},
        keys.route_reflector("fd00:172:16::254:2"): {"ip": "fd00:172:16::254:2", "cluster_id": "255.0.0.6"},
        keys.GLOBAL_PEERS_V6 + "fd00:172:16::254:1": {"ip": "fd00:172:16::254:1", "as_num": "64512"}})
    values.update(extra)
    return values


def test_an_ipv6_reflector_meshes_over_ipv6_and_serves_the_nodes_that_have_ipv6(tmp_path):
    """calico/routereflector's bird6: the mesh of rr_v6 registrations, a client per node with an IPv6
    address peering with the reflector's IPv6 address, its own cluster ID; the IPv4 half unchanged."""
    config = bird.reflector_config(reflector_entries6(), "172.16.254.1", "fd00:172:16::254:1")
    assert config.ipv4 == bird.reflector_config(reflector_entries(), "172.16.254.1").ipv4
    assert config.ipv6.cluster_id == "255.0.0.6"
    assert [(p.protocol, p.ip) for p in config.ipv6.mesh_peers] == [("Mesh_fd00_172_16__254_2", "fd00:172:16::254:2")]
    assert [(c.protocol, c.ip) for c in config.ipv6.clients] == [
        ("Global_fd00_172_16__1", "fd00:172:16::1"), ("Global_fd00_172_16__2", "fd00:172:16::2")]
    text = bird.render_reflector(config)
    ipv6 = text[text.index("template bgp rr_template6"):]
    assert "local fd00:172:16::254:1 as 64512;" in ipv6 and "rr cluster id 255.0.0.6;" in ipv6
    assert "neighbor fd00:172:16::2 as 64512;" in ipv6 and "172.16." not in ipv6.replace("fd00:172:16:", "")
    assert "next hop self;" not in text and "protocol kernel" not in text
    bird.write_checked(text, tmp_path / "bird.cfg")


def test_an_ipv6_reflector_takes_node_specific_ipv6_peers_and_stands_alone_unregistered():
    values = reflector_entries6(**{keys.bgp_host_peers_v6("host2") + "fd00:172:16::254:3":
                                   {"ip": "fd00:172:16::254:3", "as_num": "64512"}})
    config = bird.reflector_config(values, "172.16.254.3", "fd00:172:16::254:3")
    assert config.ipv6.cluster_id is None and config.ipv6.mesh_peers == ()
    assert [c.protocol for c in config.ipv6.clients] == ["Node_fd00_172_16__2"]


def test_a_reflector_takes_node_specific_peers_and_stands_alone_unregistered():
    values = reflector_entries(**{keys.bgp_host_peers_v4("host2") + "172.16.254.3": {"ip": "172.16.254.3", "as_num": "64512"}})
    config = bird.reflector_config(values, "172.16.254.3")
    assert config.ipv4.cluster_id is None and config.ipv4.mesh_peers == ()
    assert [c.protocol for c in config.ipv4.clients] == ["Node_172_16_0_2"]
    assert "rr cluster id" not in bird.render_reflector(config)


ENTRIES = {keys.GLOBAL_AS: "64512", keys.bgp_host_ip_v4("host1"): "172.16.0.1",
           keys.bgp_host_ip_v4("host2"): "172.16.0.2",
           keys.GLOBAL_PEERS_V4 + "172.16.254.1": {"ip": "172.16.254.1", "as_num": "64512"},
           keys.ROUTE_REFLECTORS_V4 + "172.16.254.1": {"ip": "172.16.254.1", "cluster_id": "255.0.0.1"}}


def rendered(tmp_path) -> tuple[str, str]:
    node = bird.render(bird.bird_config(ENTRIES, "host1"))
    reflector = bird.render_reflector(bird.reflector_config(ENTRIES, "172.16.254.1"))
    for name, text in (("node.cfg", node), ("rr.cfg", reflector)):
        (tmp_path / name).write_text(text)
        bird.check(tmp_path / name)
    return node, reflector


def test_calicos_settings_unless_the_emulation_changes_them(tmp_path, monkeypatch):
    for name in (bird.HOLD_TIME_ENV, bird.GRACEFUL_RESTART_ENV):
        monkeypatch.delenv(name, raising=False)
    for text in rendered(tmp_path):
        assert "hold time" not in text and "  graceful restart;\n" in text


def test_settings_travel_through_the_environment(monkeypatch):
    timers = bird.Timers(hold=9, graceful_restart=False)
    assert timers.environment() == {bird.HOLD_TIME_ENV: "9", bird.GRACEFUL_RESTART_ENV: "off"}
    assert bird.Timers().environment() == {}
    for name, value in timers.environment().items():
        monkeypatch.setenv(name, value)
    assert bird.Timers.from_environment() == timers


def test_graceful_restart_off_in_every_bgp_session(tmp_path, monkeypatch):
    monkeypatch.setenv(bird.GRACEFUL_RESTART_ENV, "off")
    node, reflector = rendered(tmp_path)
    assert node.count("graceful restart off;") == 1 and reflector.count("graceful restart off;") == 1
    assert "graceful restart;" in node  # the kernel protocol's (the node's own routes across its BIRD's restart)


def test_the_hold_time_reaches_every_bgp_session(tmp_path, monkeypatch):
    monkeypatch.setenv(bird.HOLD_TIME_ENV, "9")
    node, reflector = rendered(tmp_path)
    assert node.count("hold time 9;") == 1 and reflector.count("hold time 9;") == 1  # in the templates all inherit


@pytest.mark.parametrize("value", ["2", "0", "nine", "-9", "9.5"])
def test_a_hold_time_bgp_does_not_allow_is_refused(monkeypatch, value):
    monkeypatch.setenv(bird.HOLD_TIME_ENV, value)
    with pytest.raises(bird.BirdError, match="at least 3"):
        bird.bird_config(ENTRIES, "host1")
    with pytest.raises(bird.BirdError, match="at least 3"):
        bird.Timers(hold=int(value) if value.isdigit() else value)


def test_graceful_restart_is_on_or_off(monkeypatch):
    monkeypatch.setenv(bird.GRACEFUL_RESTART_ENV, "sometimes")
    with pytest.raises(bird.BirdError, match="must be on or off, not 'sometimes'"):
        bird.Timers.from_environment()


def test_expected_sessions_follow_the_bgp_settings_not_a_full_mesh():
    """What a cluster waits for after `calicoctl node run`: the mesh's N-1 sessions per node, or
    with the mesh off only the global and node-specific peers (a fabric's ToR, the reflectors);
    a global peer at a node's own address never comes up, so it is not waited for."""
    assert bird.expected_sessions(entries()) == {"172.16.0.1": 2, "172.16.0.2": 2, "172.16.0.3": 2}
    reflectors = {keys.GLOBAL_PEERS_V4 + ip: {"ip": ip, "as_num": "64512"} for ip in ("10.0.0.1", "10.0.0.2")}
    assert bird.expected_sessions(entries(mesh=False, **reflectors)) == dict.fromkeys(
        ("172.16.0.1", "172.16.0.2", "172.16.0.3"), 2)
    tors = {keys.bgp_host_peers_v4("host1") + "10.0.1.1": {"ip": "10.0.1.1", "as_num": "65001"},
            keys.bgp_host_peers_v4("host2") + "10.0.1.1": {"ip": "10.0.1.1", "as_num": "65001"}}
    assert bird.expected_sessions(entries(mesh=False, hosts=("host1", "host2"), **tors)) == {
        "172.16.0.1": 1, "172.16.0.2": 1}
    self_peer = {keys.GLOBAL_PEERS_V4 + "172.16.0.1": {"ip": "172.16.0.1", "as_num": "64512"}}
    assert bird.expected_sessions(entries(**self_peer)) == {"172.16.0.1": 2, "172.16.0.2": 3, "172.16.0.3": 3}
