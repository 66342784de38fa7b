"""BIRD's control socket as calicoctl node status reads it: rows from Calico-named BGP protocols,
IPv6 addresses read back from protocol names (no root needed)."""

from calisim.node import bird


def test_node_status_rows_come_from_calico_named_bgp_protocols():
    protocols = [bird.Protocol("device1", "Device", "---", "up", "21:00:00", ""),
                 bird.Protocol("Mesh_192_168_3_228", "BGP", "---", "up", "07:21:09", "Established"),
                 bird.Protocol("Global_10_0_0_1", "BGP", "---", "start", "07:21:09", "Active        Socket: Connection refused"),
                 bird.Protocol("Node_10_0_0_2", "BGP", "---", "start", "07:21:09", "Connect")]
    rows = bird.bgp_peer_statuses(protocols)
    assert [(r.peer_ip, r.peer_type, r.state, r.info.split()[0]) for r in rows] == [
        ("192.168.3.228", "node-to-node mesh", "up", "Established"),
        ("10.0.0.1", "global", "start", "Active"), ("10.0.0.2", "node specific", "start", "Connect")]


def test_node_status_reads_ipv6_addresses_back_from_protocol_names():
    rows = bird.bgp_peer_statuses([bird.Protocol("Mesh_fd80_24e2_f998_72d7__2", "BGP", "---", "up", "07:21:09", "Established"),
                                   bird.Protocol("Global_1_2__3", "BGP", "---", "start", "07:21:09", "Active")])
    assert [r.peer_ip for r in rows] == ["fd80:24e2:f998:72d7::2", "1:2::3"]

