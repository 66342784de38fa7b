"""IPv6 on the seed's two hosts, end to end, on one cluster (the tests run in order):

* calico/node: `calicoctl node run --ip6` (a wrong one, a bad autodetection method or IPv6 pool CIDR
  refused with Calico's words, nothing stored; host2's address found by `can-reach`),
  the default IPv6 pool, the IPv6 mesh in BIRD (an ipv6 channel, Calico's names) and the IPv6
  table of `node status`;
* dual-stack workloads as libnetwork-plugin v1.1.1 made them: `--ipv6` networks, IPv4 and IPv6
  addresses per container, names for both families, the hop limits of the seed's pings (63 on one
  host, 62 across), isolation between networks over ICMPv6, TCP and UDP, workload to its own host
  dropped, nat-outgoing for an IPv6 pool;
* last, host2's node restarted with FELIX_IPV6SUPPORT=false: no IPv6 programmed there, IPv4 carries on.
"""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

import topologies
from calisim.emulation import Cluster, wait_until
from calisim.probes import probe_from

from tests.conftest import replay

pytestmark = pytest.mark.emulation

WORKLOADS = {"workload-A": ("host1", "my_net"), "workload-C": ("host1", "my_net"), "workload-E": ("host1", "other_net"),
             "workload-B": ("host2", "my_net"), "workload-D": ("host2", "other_net")}


@pytest.fixture(scope="module")
def cluster():
    """The two hosts, no node started yet."""
    base = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALISIM_RUNS", str(base / "runs"))
        with Cluster(topologies.load("two_host")) as running:
            yield running
    shutil.rmtree(base)


@pytest.fixture(scope="module")
def workloads(cluster):
    """The cluster once both nodes route IPv6 (the mesh tests start them), with the workloads."""
    cluster.wait_for_mesh(timeout=90)
    for network in ("my_net", "other_net"):
        assert cluster.run("host1", f"docker network create --ipv6 -d calico --ipam-driver calico-ipam {network}").rc == 0
    for name, (host, network) in WORKLOADS.items():
        done = cluster.run(host, f"docker run --net {network} --name {name} -d workload")
        assert done.rc == 0, done.stdout + done.stderr
    return cluster


BAD_IP6 = """\
host1$ ip -6 -o addr show scope global | grep -q 'inet6 fd00:3::229/64'
host2$ ping -6 -c 1 -W 5 fd00:3::229 | grep -q '1 received'
host1! calicoctl node run --name 192.168.3.229 --ip6 192.168.3.229
host1$ calicoctl node run --name 192.168.3.229 --ip6 192.168.3.229 | grep -x 'Error executing command: --ip6 is wrong IP version'
host1$ calicoctl node run --name 192.168.3.229 --ip6 fd00:3::99 | grep -x "Calico node failed to start: Unable to confirm IPv6 address fd00:3::99 is assigned to this host"
host1$ calicoctl node run --name 192.168.3.229 --ip6 autodetect --ip6-autodetection-method best-found | grep -x 'Error executing command: invalid IP autodetection method: best-found'
host1$ calicoctl node run --name 192.168.3.229 --ip6 autodetect --ip6-autodetection-method interface=wlan0 | grep -q "Calico node failed to start: Couldn't autodetect a management IPv6 address: Unable to auto-detect an IPv6 address using interface regexes \\['wlan0'\\]"
host1$ CALICO_IPV6POOL_CIDR=10.10.0.0/16 calicoctl node run --name 192.168.3.229 | grep -x "Calico node failed to start: Invalid CIDR specified in CALICO_IPV6POOL_CIDR '10.10.0.0/16'"
host1$ NO_DEFAULT_POOLS=true CALICO_IPV6POOL_CIDR=fd00:20::/64 calicoctl node run --name 192.168.3.229 | grep -q 'Calico node failed to start: Invalid configuration with NO_DEFAULT_POOLS defined'
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix /calico --keys-only | grep -c . | grep -x 0
"""


def test_a_wrong_ip6_is_refused_with_calicos_words_and_stores_nothing(cluster):
    replay(cluster, BAD_IP6)


MESH = """\
host1$ calicoctl node run --name 192.168.3.229 --ip6 fd00:3::229 | grep -x 'Using IPv6 address fd00:3::229/128'
host2$ calicoctl node run --name 192.168.3.228 --ip6 autodetect --ip6-autodetection-method can-reach=fd00:3::229 | grep -x 'Using autodetected IPv6 address fd00:3::228/64, detected by connecting to fd00:3::229'
host1$ calicoctl get ipPool | grep -x 'fd80:24e2:f998:72d6::/64 *'
host1$ calicoctl get node -o wide | grep -E '^192\\.168\\.3\\.228 +\\(64512\\) +192\\.168\\.3\\.228/24 +fd00:3::228/64 +$'
within 40s host1$ calicoctl node status | grep -E '^\\| fd00:3::228 +\\| node-to-node mesh \\| up +\\| [0-9:]+ +\\| Established +\\|$'
within 40s host2$ calicoctl node status | grep -E '^\\| fd00:3::229 +\\| node-to-node mesh \\| up +\\| [0-9:]+ +\\| Established +\\|$'
within 40s host1$ calicoctl node status | grep -E '^\\| 192\\.168\\.3\\.228 +\\| node-to-node mesh \\| up +\\|'
host1$ calicoctl node status
host1$ birdc -s /var/run/calico/bird.ctl show protocols Mesh_fd00_3__228 | grep -E 'Mesh_fd00_3__228 +BGP +--- +up'
host1$ sysctl -n net.ipv6.conf.all.forwarding | grep -x 1
"""


def test_ipv6_mesh_comes_up_beside_the_ipv4_one(cluster):
    results = replay(cluster, MESH)
    status = next(r.stdout for r in results if r.step.command == "calicoctl node status")
    v4, v6 = status.split("IPv6 BGP status\n")
    assert "| 192.168.3.228 | node-to-node mesh | up    |" in v4 and "fd00" not in v4
    header = "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |"
    assert v6.splitlines()[1] == header and v6.splitlines()[3].startswith("| fd00:3::228  | node-to-node mesh | up    |")


def inspect(cluster, name: str) -> dict:
    return json.loads(cluster.run(WORKLOADS[name][0], f"docker inspect {name}").stdout)[0]


def test_dual_stack_workloads_reach_each_other_by_name_with_the_seeds_hop_limits(workloads):
    replay(workloads, """\
host1$ docker network inspect my_net | grep -q '"EnableIPv6": true'
within 30s host1$ docker exec workload-A ping -6 -c 2 workload-C | grep -q 'ttl=63'
within 30s host1$ docker exec workload-A ping -6 -c 2 workload-B.my_net | grep -q 'ttl=62'
within 30s host1$ docker exec workload-A ping -4 -c 2 workload-B | grep -q 'ttl=62'
host1! docker exec workload-A ping -6 -c 1 workload-D
host1$ docker exec workload-A ip -6 route | grep -E '^default via fe80::[0-9a-f:]+ dev cali0'
host1$ ip -6 route | grep -E "^$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}' workload-A) dev cali[0-9a-f]+ proto static"
""")
    settings = next(iter(inspect(workloads, "workload-B")["NetworkSettings"]["Networks"].values()))
    assert settings["GlobalIPv6PrefixLen"] == 128 and settings["GlobalIPv6Address"].startswith("fd80:24e2:f998:72d6:")
    assert settings["IPAddress"].startswith("192.168.")


def test_scapy_probes_over_ipv6_measure_hop_limit_rtt_and_isolation(workloads):
    source = inspect(workloads, "workload-A")["State"]["Pid"]
    address = {name: next(iter(inspect(workloads, name)["NetworkSettings"]["Networks"].values()))["GlobalIPv6Address"]
               for name in WORKLOADS}
    for name, hop_limit in (("workload-C", 63), ("workload-B", 62)):
        probe = wait_until(lambda: (r := probe_from(source, "icmp", address[name])).reachable and r, 30, 0.5,
                           f"ICMPv6 echo to {name}")
        assert probe.ttl == hop_limit and probe.received == 4 and 0 < probe.rtt_min_ms <= probe.rtt_max_ms
        assert probe_from(source, "tcp", address[name]).reachable and probe_from(source, "udp", address[name]).reachable
    for name in ("workload-D", "workload-E"):  # other network: on the other host, on the same one
        for protocol in ("icmp", "tcp", "udp"):
            assert not probe_from(source, protocol, address[name], count=2).reachable, (name, protocol)
    assert not probe_from(source, "icmp", "fd00:3::229", count=2).reachable  # workload to its own host: dropped
    assert probe_from(source, "icmp", "fd00:3::228", count=2).reachable  # another host is not its own


def test_nat_outgoing_on_the_ipv6_pool_reaches_felixs_ip6_table(workloads):
    replay(workloads, """\
host1$ echo "{apiVersion: v1, kind: ipPool, metadata: {cidr: 'fd80:24e2:f998:72d6::/64'}, spec: {nat-outgoing: true}}" | calicoctl apply -f -
within 20s host1$ nft list set ip6 calico nat_pools | grep -q 'fd80:24e2:f998:72d6::/64'
host1$ nft list chain ip6 calico postrouting | grep -q 'ip6 saddr @nat_pools ip6 daddr != @all_pools masquerade'
""")


def test_without_ipv6_support_felix_programs_no_ipv6_and_ipv4_carries_on(workloads):
    replay(workloads, """\
host2$ FELIX_IPV6SUPPORT=false calicoctl node run --name 192.168.3.228 --ip6 autodetect | grep -x 'IPv6 support disabled through environment'
within 30s host2! nft list table ip6 calico
within 30s host2$ ip -6 route show proto static | grep -c 'dev cali' | grep -x 0
host2$ ip -4 route show proto static | grep -q 'dev cali'
within 30s host1$ docker exec workload-A ping -4 -c 2 workload-B | grep -q 'ttl=62'
host1! docker exec workload-A ping -6 -c 1 -W 2 workload-B.my_net
""")
