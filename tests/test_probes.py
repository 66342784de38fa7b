"""Probes: the outage arithmetic and the echo-reply reading of the probe stream (no root), and ICMP,
TCP, UDP and streams measured from inside a workload on two dual-stack hosts, over IPv4 and IPv6."""

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.probes import canonical, echo_reply_sequence, echo_request, longest_outage

from tests.conftest import replay


def test_the_longest_outage_runs_from_the_first_lost_probe_to_the_next_answered_one():
    sent = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert longest_outage(sent, {0, 1, 2, 3, 4, 5, 6}, 0.7) == (0.0, None, None)
    assert longest_outage(sent, {0, 3, 4, 5, 6}, 0.7) == (200.0, 0.1, 0.3)
    assert longest_outage(sent, {0, 2, 6}, 0.7) == (300.0, 0.3, 0.6)  # the longer of two
    assert longest_outage(sent, {0, 1}, 0.7) == (500.0, 0.2, None)  # still out when the stream ended



def test_a_stream_counts_echo_replies_of_either_version_and_nothing_else():
    from scapy.layers.inet import IP

    reply_v4 = bytes(IP(src="10.10.0.2", dst="10.10.0.1") / echo_request(7, 42, b"x", 4))
    reply_v4 = reply_v4[:20] + b"\x00" + reply_v4[21:]  # type 8 -> 0: the echo request's reply
    assert echo_reply_sequence(reply_v4, 4, 7) == 42
    assert echo_reply_sequence(reply_v4, 4, 8) is None  # another prober's
    reply_v6 = b"\x81" + echo_request(7, 43, b"x", 6)[1:]  # ICMPv6 arrives without its IPv6 header
    assert echo_reply_sequence(reply_v6, 6, 7) == 43
    assert echo_reply_sequence(echo_request(7, 43, b"x", 6), 6, 7) is None  # our own request, seen on ::1
    assert echo_reply_sequence(b"\x81\x00", 6, 7) is None
    assert canonical("fd00:0:0::0001") == "fd00::1" and canonical("10.10.0.1") == "10.10.0.1"


def test_agreement_dates_a_made_connection_when_made_and_a_refused_one_when_it_was_sent():
    import socket
    import time

    from calisim.probes import agreement

    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen(64)
        closed.bind(("127.0.0.1", 0))  # bound, not listening: a connection to it is refused
        began = time.monotonic()
        (made,) = agreement(["127.0.0.1"], True, port=listening.getsockname()[1])
        (refused,) = agreement(["127.0.0.1"], False, port=closed.getsockname()[1])
        assert began <= made <= refused <= time.monotonic()
        assert agreement(["127.0.0.1"], True, deadline=0.05, port=closed.getsockname()[1]) == [None]
        assert agreement(["127.0.0.1"], False, deadline=0.05, port=listening.getsockname()[1]) == [None]



@pytest.mark.emulation
def test_a_reply_the_kernel_took_in_time_counts_however_late_the_probe_reads_it(monkeypatch):
    """A probe kept off the CPU (a loaded machine) past its replies' deadlines still counts them:
    what decides is the kernel's receive stamp, not when the probe got round to reading."""
    import select
    import time

    from calisim import probes

    real_select = select.select

    def starved(readers, writers, errors, timeout):
        time.sleep(1.2)  # longer than the probe's timeout: every deadline passes while it waits
        return real_select(readers, writers, errors, 0)

    monkeypatch.setattr(probes.select, "select", starved)
    result = probes.icmp("127.0.0.1", count=3, timeout=1.0)
    assert result.received == 3 and result.ttl == 64
    assert result.rtt_max_ms is not None and result.rtt_max_ms < 1000  # the kernel's RTT, not the wait

WORKLOADS = """
host1$ calicoctl node run --ip6 fd00:3::229
host2$ calicoctl node run --ip6 fd00:3::228
host1$ docker network create --ipv6 --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name echo1 -d workload
host2$ docker run --net net1 --name echo2 -d workload
host2$ docker run --net net1 --name plain -tid busybox
"""


def first_answer(source: int, address: str, attempts: int = 40):
    """An ICMP probe of 2 echoes, tried until both are answered (BIRD needs a moment to carry
    host2's block) or attempts run out."""
    from calisim.probes import probe_from

    for _ in range(attempts):
        icmp = probe_from(source, "icmp", address, count=2)
        if icmp.received == 2:
            break
    return icmp


@pytest.mark.emulation
def test_probes_measure_icmp_tcp_and_udp_from_inside_a_workload(untouched, runs):
    """Over IPv4 and IPv6 (dual-stack nodes, an --ipv6 network): the TTL or hop limit, the RTT,
    the TCP and UDP echoes, and a probe stream."""
    from calisim.probes import probe_from, stream_from
    from calisim.scenarios.seed import inspect

    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, WORKLOADS)
        source = inspect(cluster, "host1", "echo1")["State"]["Pid"]
        networks = {name: next(iter(inspect(cluster, "host2", name)["NetworkSettings"]["Networks"].values()))
                    for name in ("echo2", "plain")}
        for key in ("IPAddress", "GlobalIPv6Address"):
            address = {name: network[key] for name, network in networks.items()}
            icmp = first_answer(source, address["echo2"])
            assert icmp.received == 2 and icmp.ttl == 62 and 0 < icmp.rtt_min_ms <= icmp.rtt_avg_ms <= icmp.rtt_max_ms
            assert probe_from(source, "tcp", address["echo2"]).reachable
            assert probe_from(source, "udp", address["echo2"]).reachable
            assert not probe_from(source, "tcp", address["plain"]).reachable  # busybox serves nothing
            assert not probe_from(source, "udp", address["plain"]).reachable
            streamed = stream_from(source, address["echo2"], interval_ms=10, seconds=1)
            assert (streamed.sent, streamed.received, streamed.longest_outage_ms) == (100, 100, 0.0), streamed
        for unreachable in ("10.10.255.254", "fd80:24e2:f998:72d6::fffe"):
            missed = probe_from(source, "icmp", unreachable, count=1)
            assert missed.received == 0 and missed.ttl is None
        lost = stream_from(source, "fd80:24e2:f998:72d6::fffe", interval_ms=10, seconds=0.5)
        assert lost.received == 0 and lost.longest_outage_ms > 400
