"""A fault in the fabric (issue 12, item 3): a ToR-spine link down reroutes through the other
spine; a probe stream across it measures the outage; the link back up, both spines carry again."""

import json
import time

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.probes import StreamProbe, probe_from

from .conftest import replay

pytestmark = pytest.mark.emulation

SETUP = r"""
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name w1 -tid busybox
host3$ docker run --net net1 --name w3 -tid busybox
within 60s host1$ docker exec w1 ping -c 1 -W 1 w3 | grep 'ttl=59'
"""


def workload(cluster, host: str, name: str) -> tuple[int, str]:
    state = json.loads(cluster.run(host, f"docker inspect {name}").stdout)[0]
    return state["State"]["Pid"], next(iter(state["NetworkSettings"]["Networks"].values()))["IPAddress"]


def spine_sessions(cluster, tor: str) -> dict[str, str]:
    """tor's BGP sessions to the spines: name -> BIRD's BGP state (the Info column: Established, Active...)."""
    shown = cluster.run(tor, "birdc -s /var/run/calico/bird.ctl show protocols").stdout
    rows = [line.split() for line in shown.splitlines()]
    return {row[0]: (row[5:6] or ["-"])[0] for row in rows if row and row[0].startswith("spine")}


def test_a_tor_spine_link_down_reroutes_through_the_other_spine(untouched, runs):
    with Cluster(topologies.load("fabric")) as cluster:
        cluster.start_nodes()
        replay(cluster, SETUP)
        w1, _ = workload(cluster, "host1", "w1")
        _, w3_ip = workload(cluster, "host3", "w3")
        before = spine_sessions(cluster, "tor1")
        assert len(before) == 2 and set(before.values()) == {"Established"}, before
        stream = StreamProbe(w1, w3_ip, interval_ms=20, seconds=8)
        time.sleep(1)  # the stream's first second crosses the healthy fabric (a measurement window, not a wait)
        cluster.faults.link("tor1", "spine1", "down")
        outage = stream.result()
        assert outage.received > 0 and outage.longest_outage_ms < 5000, outage  # rerouted, not cut off
        after = spine_sessions(cluster, "tor1")
        assert list(after.values()).count("Established") == 1, after
        reply = probe_from(w1, "icmp", w3_ip, count=3)
        assert reply.received == 3 and reply.ttl == 59, reply  # still ToR, spine, ToR: through spine2
        cluster.faults.link("tor1", "spine1", "up")
        replay(cluster, "within 60s tor1$ birdc -s /var/run/calico/bird.ctl show protocols "
                        "| grep -i spine | grep -c Established | grep -x 2\n")
        assert cluster.faults.active() == []
        print(f"tor1-spine1 down: longest outage {outage.longest_outage_ms} ms, {outage.sent - outage.received} "
              f"of {outage.sent} probes lost")
