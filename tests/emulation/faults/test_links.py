"""Faults on links: their input (percentages, rates, durations, in tc's units too), without root; and a ToR-spine link down in
the fabric (issue 12, item 3), which reroutes through the other spine, a probe stream across it
measuring the outage, both spines carrying again once the link is back up."""

import json
import time

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.emulation.faults import FaultError, parse_milliseconds, parse_percent, parse_rate
from calisim.probes import StreamProbe, probe_from

from tests.conftest import replay


@pytest.mark.parametrize("value, expected", [(0, 0.0), ("50", 50.0), (100, 100.0), ("12.5", 12.5), ("5%", 5.0)])
def test_percentages_between_0_and_100_are_accepted(value, expected):
    assert parse_percent(value, "loss") == expected


@pytest.mark.parametrize("value", [-1, 100.1, "101", "half", None, "5%%", "%"])
def test_other_percentages_are_refused_with_one_line(value):
    with pytest.raises(FaultError, match=r"^loss must be a percentage between 0 and 100, not ") as refused:
        parse_percent(value, "loss")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("value, expected", [("10mbit", "10mbit"), ("1.5Gbit", "1.5gbit"), (" 500kbit ", "500kbit"),
                                             ("64kbps", "64kbps"), ("2Mibit", "2mibit"), ("1tbit", "1tbit")])
def test_rates_in_tc_units(value, expected):
    assert parse_rate(value) == expected


@pytest.mark.parametrize("value", ["10", "fast", "10 mbit", "-5mbit", "0kbit", "10mbit/s", ""])
def test_malformed_rates_are_refused(value):
    with pytest.raises(FaultError, match=r"^malformed rate "):
        parse_rate(value)


@pytest.mark.parametrize("value, expected", [("50", 50.0), (20, 20.0), ("50ms", 50.0), ("1s", 1000.0),
                                             ("1.5sec", 1500.0), ("500us", 0.5), (" 10msecs ", 10.0), ("0", 0.0)])
def test_durations_are_milliseconds_or_in_tc_units(value, expected):
    assert parse_milliseconds(value, "delay") == expected


@pytest.mark.parametrize("value", ["-5", "-5ms", "fast", "50 ms", "5m", "1h", "", None])
def test_other_durations_are_refused_with_one_line(value):
    with pytest.raises(FaultError, match=r"^delay must be milliseconds \(50\) or a duration in tc's units"):
        parse_milliseconds(value, "delay")


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


@pytest.mark.emulation
def test_a_tor_spine_link_down_reroutes_through_the_other_spine(untouched, runs):
    with Cluster(topologies.load("fabric")) as cluster:
        cluster.start_nodes()
        assert cluster.expected_sessions() == dict.fromkeys(cluster.hosts, 2)  # its ToR (IPv4, IPv6), not a mesh
        cluster.wait_for_mesh(timeout=60)  # what `up fabric --start-nodes` waits for
        replay(cluster, SETUP)
        w1, _ = workload(cluster, "host1", "w1")
        _, w3_ip = workload(cluster, "host3", "w3")
        before = spine_sessions(cluster, "tor1")
        assert sorted(before) == ["spine1", "spine1_v6", "spine2", "spine2_v6"], before  # a session per IP version
        assert set(before.values()) == {"Established"}, before
        stream = StreamProbe(w1, w3_ip, interval_ms=20, seconds=8)
        time.sleep(1)  # the stream's first second crosses the healthy fabric (a measurement window, not a wait)
        cluster.faults.link("tor1", "spine1", "down")
        outage = stream.result()
        assert outage.received > 0 and outage.longest_outage_ms < 5000, outage  # rerouted, not cut off
        after = spine_sessions(cluster, "tor1")
        assert [name for name, state in after.items() if state == "Established"] == ["spine2", "spine2_v6"], after
        reply = probe_from(w1, "icmp", w3_ip, count=3)
        assert reply.received == 3 and reply.ttl == 59, reply  # still ToR, spine, ToR: through spine2
        cluster.faults.link("tor1", "spine1", "up")
        replay(cluster, "within 60s tor1$ birdc -s /var/run/calico/bird.ctl show protocols "
                        "| grep -i spine | grep -c Established | grep -x 4\n")
        assert cluster.faults.active() == []
        print(f"tor1-spine1 down: longest outage {outage.longest_outage_ms} ms, {outage.sent - outage.received} "
              f"of {outage.sent} probes lost")
