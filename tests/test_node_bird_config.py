"""BIRD config computed from etcd keys, rendered, and accepted by `bird -p` (no root needed)."""

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


def test_node_status_rows_come_from_calico_named_bgp_protocols():
    protocols = [bird.Protocol("device1", "Device", "---", "up", "21:00:00", ""),
                 bird.Protocol("Mesh_192_168_3_228", "BGP", "---", "up", "07:21:09", "Established"),
                 bird.Protocol("Global_10_0_0_1", "BGP", "---", "start", "07:21:09", "Active        Socket: Connection refused"),
                 bird.Protocol("Node_10_0_0_2", "BGP", "---", "start", "07:21:09", "Connect")]
    rows = bird.bgp_peer_statuses(protocols)
    assert [(r.peer_ip, r.peer_type, r.state, r.info.split()[0]) for r in rows] == [
        ("192.168.3.228", "node-to-node mesh", "up", "Established"),
        ("10.0.0.1", "global", "start", "Active"), ("10.0.0.2", "node specific", "start", "Connect")]
