"""What chaos knows of a lab without reaching it: its Calico hosts, each one's uplink (the link
a link or loss fault breaks) and its etcd; which member an etcd fault killed, as the lab said."""

import pytest

from calisim.chaos.target import LabTarget
from calisim.emulation.lab import LabError, LabRecord


def target(topology, **options):
    return LabTarget(LabRecord("lab", topology, options, [], 0.0, "/nonexistent", 1, 1))


def test_each_host_is_broken_on_its_first_link_whatever_the_topology():
    assert target("two_host").uplinks == {"host1": "s1", "host2": "s1"}
    assert target("routed").uplinks == {"host1": "s1", "host2": "s2"}
    assert target("fabric").uplinks == {"host1": "rack1", "host2": "rack1", "host3": "rack2", "host4": "rack2"}
    flat = target("flat", hosts=3, etcd_members=3)
    assert flat.hosts == ["host1", "host2", "host3"] and flat.etcd_members == ["etcd1", "etcd2", "etcd3"]


def test_the_killed_etcd_member_is_the_one_the_lab_names():
    cluster = target("two_host", etcd_members=3)
    cluster.fault = lambda argv: "fault kill --leader etcd: done (etcd3 led the etcd cluster)"
    assert cluster.kill_etcd() == "etcd3"
    cluster.fault = lambda argv: "fault kill --leader etcd: done"
    with pytest.raises(LabError, match="cannot tell which etcd member was killed"):
        cluster.kill_etcd()
    alone, asked = target("two_host"), []
    alone.fault = asked.append
    assert alone.kill_etcd() == "host1" and asked == [["kill", "host1", "etcd"]]
