"""The workload dataplane with a plain (non-IPIP) pool: workloads joined through the libnetwork
flow get cali0, a /32 and routes via 169.254.1.1; Felix programs the host side; BIRD carries the
blocks; pings show the seed's TTLs (63 on one host, 62 across hosts)."""

import json
import re

import pytest

import topologies
from calisim.emulation import Cluster

from .conftest import replay


pytestmark = pytest.mark.emulation

NODES = """
host1$ calicoctl node run --name 192.168.3.229
host2$ calicoctl node run --name 192.168.3.228
within 20s host1$ calicoctl node status | grep -q Established
"""

SETUP = NODES + """host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.20.0.0/16}}' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ python -m calisim.docker.cnm network-create net1
host1$ python -m calisim.docker.cnm network-create net1 2>&1 | grep -x 'Error response from daemon: network with name net1 already exists'
"""


def workload(cluster, host, name, network="net1", ip=None):
    extra = f" --ip {ip}" if ip else ""
    done = cluster.run(host, f"python -m calisim.docker.cnm run {name} --network {network}{extra}")
    assert done.rc == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def ping_across(cluster, source, destination):
    """Ping from workload source on host1 until it answers (BIRD carries host2's block a moment
    after it is claimed); fail with every host's state if it never does."""
    for _ in range(40):
        across = inside(cluster, "host1", source, f"ping -c 1 -W 1 {destination}")
        if across.rc == 0:
            return across
    pytest.fail(f"{across.stdout}{across.stderr}\n\n{cluster.diagnose().read_text()}", pytrace=False)


def inside(cluster, host, endpoint, command):
    return cluster.run(host, f"nsenter -t {endpoint['sandbox_pid']} -n -u -- {command}")


def test_workloads_on_one_and_two_hosts(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, SETUP)
        a = workload(cluster, "host1", "workload-A")
        c = workload(cluster, "host1", "workload-C")
        e = workload(cluster, "host2", "workload-E")
        a_ip, c_ip, e_ip = (w["address"].split("/")[0] for w in (a, c, e))

        # Inside the container: exactly Calico's interface and routes.
        assert inside(cluster, "host1", a, "ip -4 -o addr show cali0").stdout.split()[3] == f"{a_ip}/32"
        assert inside(cluster, "host1", a, "ip route").stdout == (
            "default via 169.254.1.1 dev cali0 \n169.254.1.1 dev cali0 scope link \n")
        assert inside(cluster, "host1", a, "hostname").stdout == "workload-A\n"

        # Same host: one hop (TTL 63); other host: two hops (TTL 62), over BIRD's block routes.
        same = inside(cluster, "host1", a, f"ping -c 2 -W 2 {c_ip}")
        assert same.rc == 0 and "ttl=63" in same.stdout, same.stdout
        across = ping_across(cluster, a, e_ip)
        assert "ttl=62" in across.stdout, across.stdout

        # The host side, as Felix leaves it.
        interface = "cali" + [k for k in cluster.datastore().list("/calico/v1/host/192.168.3.229/workload/")
                              if k.value["ipv4_nets"] == [f"{c_ip}/32"]][0].key.rsplit("/", 1)[1][:11]
        routes = cluster.run("host1", "ip route").stdout
        assert f"{c_ip} dev {interface} proto static scope link" in routes
        assert "blackhole 10.20." in routes and "proto bird" in routes
        assert cluster.run("host1", f"cat /proc/sys/net/ipv4/conf/{interface}/proxy_arp").stdout == "1\n"
        assert f"{c_ip} dev {interface} lladdr ee:ee:ee:ee:ee:ee PERMANENT" in cluster.run("host1", "ip neigh").stdout

        # Removing a workload removes its interface, route, endpoint and address.
        assert cluster.run("host1", "python -m calisim.docker.cnm rm workload-C").rc == 0
        assert interface not in cluster.run("host1", "ip link").stdout
        assert f"{c_ip} dev" not in cluster.run("host1", "ip route").stdout
        assert cluster.run("host1", f"calicoctl ipam show --ip {c_ip}").stdout == (
            f"IP {c_ip} is not currently assigned in block\n")
        taken = cluster.run("host1", f"python -m calisim.docker.cnm run workload-X --network net1 --ip {a_ip}")
        assert taken.rc == 1 and "Address already assigned in block" in taken.stderr
        assert cluster.run("host1", "ip -o link | grep -c cali").stdout == "1\n"  # only A's: nothing left behind
        busy = cluster.run("host1", "python -m calisim.docker.cnm network-rm net1")
        assert busy.rc == 1 and "has active endpoints" in busy.stderr


SEED_POOL = NODES + """host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}, nat-outgoing: true}}' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ python -m calisim.docker.cnm network-create net1
within 10s host1$ ip -o -4 addr show tunl0 | grep -E 'inet 10\\.10\\.[0-9.]+/32'
host1$ grep -q 'IPIP backend: ebpf (no ipip module in this kernel)' /var/log/calico/node.log
"""


def test_the_seeds_ipip_pool_carries_workloads_across_hosts(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, SEED_POOL)
        a = workload(cluster, "host1", "workload-A")
        e = workload(cluster, "host2", "workload-E")
        e_ip = e["address"].split("/")[0]
        e_block = ".".join(e_ip.split(".")[:3])
        across = ping_across(cluster, a, e_ip)
        assert "ttl=62" in across.stdout, across.stdout
        route = [line for line in cluster.run("host1", "ip route").stdout.splitlines() if line.startswith(e_block)]
        assert route and re.search(r"via 192\.168\.3\.228 dev tunl0 proto bird (metric \d+ )?onlink", route[0]), route
