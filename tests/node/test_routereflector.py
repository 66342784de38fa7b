"""Route reflectors (calico/routereflector's counterpart) on `flat --hosts 6 --route-reflectors 2`,
dual stack (the nodes run with --ip6, the reflectors with --ip6 as `--start-nodes` starts them):
nodes peer only with the reflectors, over IPv4 and over IPv6, every pair of hosts' workloads reach
each other over both, the reflectors' kernels hold no workload routes, and one reflector down
changes nothing.  Without root: a bad --ip or --ip6 is refused with calicoctl's words before anything runs."""

import ipaddress

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.node import routereflector, startup

from tests.conftest import replay

HOSTS = [f"host{i}" for i in range(1, 7)]


def every_pair_reaches(hosts=HOSTS) -> str:
    """One step per host: its workload pings every other host's workload (by name), over IPv4 and IPv6."""
    targets = " ".join(f"w{h.removeprefix('host')}" for h in hosts)
    return "\n".join(
        f"within 60s {h}$ for t in {targets}; do [ $t = w{h.removeprefix('host')} ] || for v in 4 6; do "
        f"docker exec w{h.removeprefix('host')} ping -$v -c 1 -W 1 $t > /dev/null || exit 1; done; done"
        for h in hosts)


REFLECTED = "\n".join(
    [f"within 60s {h}$ calicoctl node status | grep -E '^\\| 172\\.16\\.254\\.[12] +\\| global +\\| up +\\| .*Established' | grep -c . | grep -x 2"
     for h in HOSTS]
    + [f"{h}$ calicoctl node status | grep -c '^| [0-9]' | grep -x 2" for h in HOSTS]  # exactly 2 sessions
    + [f"within 30s {h}$ calicoctl node status | grep -E '^\\| fd00:172:16::254:[12] +\\| global +\\| up +\\| .*Established' | grep -c . | grep -x 2"
       for h in HOSTS]
    + [f"{h}$ calicoctl node status | grep -c '^| fd00' | grep -x 2" for h in HOSTS]  # and 2 over IPv6
    + [r"rr1$ etcdctl --endpoints $ETCD_ENDPOINTS get --print-value-only /calico/bgp/v1/rr_v4/172.16.254.1 | grep -E 'cluster_id.: ?.255\.0\.0\.1.'",
       r"rr1$ birdc -s /var/run/calico/bird.ctl show protocols | grep -E '^Mesh_172_16_254_2 +BGP .* Established'",
       r"within 30s rr2$ birdc -s /var/run/calico/bird.ctl show protocols | grep -E '^Global_172_16_0_[1-6] +BGP .* Established' | grep -c . | grep -x 6",
       r"rr1$ etcdctl --endpoints $ETCD_ENDPOINTS get --print-value-only /calico/bgp/v1/rr_v6/fd00:172:16::254:1 | grep -E 'cluster_id.: ?.255\.0\.0\.1.'",
       r"within 30s rr1$ birdc -s /var/run/calico/bird.ctl show protocols | grep -E '^Mesh_fd00_172_16__254_2 +BGP .* Established'",
       r"within 30s rr2$ birdc -s /var/run/calico/bird.ctl show protocols | grep -E '^Global_fd00_172_16__[1-6] +BGP .* Established' | grep -c . | grep -x 6",
       "host1$ docker network create --ipv6 --driver calico --ipam-driver calico-ipam net1"]
    + [f"{h}$ docker run --net net1 --name w{h.removeprefix('host')} -tid busybox" for h in HOSTS]
    + [every_pair_reaches(),
       # Next hops pass through the reflector: host1 reaches host6's block directly.
       r"host1$ ip route show proto bird | grep -E '^192\.168\.[0-9.]+/26 via 172\.16\.0\.6 dev host1-eth0'",
       r"host1$ ip -6 route show proto bird | grep -E '^fd80:24e2:f998:72d6:[0-9a-f:]+/122 via fd00:172:16::6 dev host1-eth0'",
       r"rr1$ ip route | grep -c '^192\.168\.' | grep -x 0",
       r"rr2$ ip route | grep -c '^192\.168\.' | grep -x 0",
       r"rr1$ ip -6 route | grep -c '^fd80:' | grep -x 0",
       "rr1$ kill $(cat /var/run/calico/routereflector.pid)",
       r"within 30s host1$ calicoctl node status | grep -E '^\| 172\.16\.254\.1 +\| global +\| start'",
       r"within 30s host1$ calicoctl node status | grep -E '^\| fd00:172:16::254:1 +\| global +\| start'",
       every_pair_reaches(),
       # Started again (by hand, as Calico's docs register a reflector), it serves every node again.
       "rr1$ routereflector run --ip 172.16.254.1 --ip6 fd00:172:16::254:1",
       r"within 60s host3$ calicoctl node status | grep -E '^\| 172\.16\.254\.1 +\| global +\| up +\| .*Established'",
       r"within 60s host3$ calicoctl node status | grep -E '^\| fd00:172:16::254:1 +\| global +\| up +\| .*Established'"])


@pytest.mark.emulation
def test_two_route_reflectors_serve_six_hosts(untouched, runs):
    with Cluster(topologies.load("flat", 6, route_reflectors=2)) as cluster:
        setup = cluster.start_nodes(options="--ip6 autodetect")
        assert [r.host for r in setup[-4:]] == ["rr1", "rr2", "host1", "host1"]
        results = replay(cluster, REFLECTED)
    assert all(r.passed for r in results)


@pytest.mark.parametrize("ip, ip6, message", [
    ("172.16.254.1", "172.16.254.9", "Error executing command: --ip6 is wrong IP version"),
    ("172.16.254.1", "fd00:172:16::254:9", "Error executing command: Unable to confirm IPv6 address "
                                           "fd00:172:16::254:9 is assigned to this host"),
    ("172.16.254.1", "not-an-address",
     "Error executing command: 'not-an-address' does not appear to be an IPv4 or IPv6 interface"),
    ("fd00:172:16::254:1", "fd00:172:16::254:1", "Error executing command: --ip is wrong IP version"),
])
def test_a_bad_address_is_refused_before_the_reflector_starts(monkeypatch, capsys, ip, ip6, message):
    monkeypatch.setenv("ETCD_ENDPOINTS", "http://172.16.0.1:2379")
    monkeypatch.setattr(startup, "host_addresses", lambda version: [ipaddress.ip_interface("fd00:172:16::254:1/64")])
    monkeypatch.setattr(routereflector, "NodeDaemon", None)  # reaching the daemon would fail loudly
    with pytest.raises(SystemExit) as exited:
        routereflector.main(["run", "--ip", ip, "--ip6", ip6])
    assert exited.value.code == 1 and capsys.readouterr().out.strip() == message


def test_ip6_autodetect_takes_the_hosts_first_ipv6_address(monkeypatch):
    monkeypatch.setattr(startup, "host_addresses", lambda version: [ipaddress.ip_interface("fd00:172:16::254:2/64")])
    assert routereflector.reflector_ipv6("autodetect") == "fd00:172:16::254:2"
    assert routereflector.reflector_ipv6("fd00:172:16::254:2") == "fd00:172:16::254:2"
    assert routereflector.reflector_ipv6(None) is None
