"""The real servers' underlay: each sandbox's VXLAN made from its machine's namespace straight into
the sandbox's, one all-zeros fdb entry a peer, the MTU left by the uplinks, and the answers of
`ip -j` read."""

import pytest

from calisim.servers.underlay import PORT, Route, UnderlayJoin, link_mtu, new_vni, underlay_mtu

JOIN = UnderlayJoin("eth0", 4242, "198.18.0.2/24", 77, 1450, ("192.0.2.1", "192.0.2.3"))


def test_the_device_is_made_in_the_sandboxs_namespace_from_the_machines():
    assert JOIN.create_command() == ["ip", "link", "add", "eth0", "netns", "4242", "mtu", "1450",
                                     "type", "vxlan", "id", "77", "dstport", "14789"]
    assert PORT != 4789  # not IANA's: often filtered between machines, and the lab's own links use it


def test_every_peer_gets_a_flood_entry_then_the_address_and_the_device_up_all_inside_the_sandbox():
    inside = ["nsenter", "-t", "4242", "-n", "--"]
    assert JOIN.inside_commands() == [
        [*inside, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "eth0", "dst", "192.0.2.1"],
        [*inside, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "eth0", "dst", "192.0.2.3"],
        [*inside, "ip", "addr", "add", "198.18.0.2/24", "dev", "eth0"],
        [*inside, "ip", "link", "set", "eth0", "up"]]


def test_the_underlay_mtu_is_the_smallest_uplinks_less_the_vxlan():
    assert underlay_mtu([1500]) == 1450
    assert underlay_mtu([9000, 1500]) == 1450
    with pytest.raises(ValueError, match="^an uplink's MTU of 1300 leaves the underlay 1250 bytes, below 1280$"):
        underlay_mtu([1500, 1300])


def test_a_runs_vni_is_one_of_vxlans_24_bits_and_never_0():
    assert all(1 <= new_vni() < 2**24 for _ in range(200))
    assert len({new_vni() for _ in range(20)}) > 1


def test_ip_json_answers_are_read_for_the_uplink_and_its_mtu():
    assert Route.parse('[{"dst":"192.0.2.3","dev":"eth0","prefsrc":"192.0.2.1","flags":[],"uid":0,"cache":[]}]') \
        == Route("eth0", "192.0.2.1", local=False)
    assert Route.parse('[{"type":"local","dst":"127.0.0.1","dev":"lo","prefsrc":"127.0.0.1"}]').local
    assert link_mtu('[{"ifindex":2,"ifname":"eth0","mtu":9000}]') == 9000
