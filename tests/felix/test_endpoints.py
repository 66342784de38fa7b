"""Felix's desired state for workload endpoints, computed from etcd keys (no root), and how it
is applied (root, in a namespace of its own).  Then the workload dataplane with a plain
(non-IPIP) pool: workloads joined through the libnetwork flow get cali0, a /32 and routes via
169.254.1.1; Felix programs the host side; BIRD carries the blocks; pings show the seed's TTLs
(63 on one host, 62 across hosts)."""

import ipaddress
import json
import re

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.felix import endpoints

from tests.conftest import in_a_throwaway_netns, replay


PREFIX = "/calico/v1/host/host1/workload/libnetwork/libnetwork/endpoint/"


def endpoint(name, *nets, state="active"):
    return {"state": state, "name": name, "mac": "ee:ee:ee:ee:ee:ee", "profile_ids": ["net1"],
            "ipv4_nets": list(nets), "ipv6_nets": []}


def test_the_kernels_conntrack_text_says_whether_an_address_has_connections(tmp_path, monkeypatch):
    table = tmp_path / "nf_conntrack"
    table.write_text(
        "ipv4     2 icmp     1 29 src=10.10.0.2 dst=10.10.0.9 type=8 code=0 id=7 src=10.10.0.9 dst=10.10.0.2 type=0 "
        "code=0 id=7 mark=0 zone=0 use=2\n"
        "ipv6     10 udp      17 30 src=fd80:0000:0000:0000:0000:0000:0000:0001 dst=fd80:0000:0000:0000:0000:0000:0000:"
        "0002 sport=4 dport=53 [UNREPLIED] src=fd80:0000:0000:0000:0000:0000:0000:0002 dst=fd80:0000:0000:0000:0000:"
        "0000:0000:0001 sport=53 dport=4 mark=0 zone=0 use=2\n")
    monkeypatch.setattr(endpoints, "CONNTRACK_TABLE", table)
    assert endpoints.any_connection_of({ipaddress.ip_address("10.10.0.9")})
    assert endpoints.any_connection_of({ipaddress.ip_address("10.10.0.3"), ipaddress.ip_address("fd80::2")})
    assert not endpoints.any_connection_of({ipaddress.ip_address("10.10.0.3"), ipaddress.ip_address("10.10.0.20")})
    assert not endpoints.any_connection_of({ipaddress.ip_address("10.10.0.29")})  # 10.10.0.2 and .9 are not it
    monkeypatch.setattr(endpoints, "CONNTRACK_TABLE", tmp_path / "absent")  # a kernel without the file: look
    assert endpoints.any_connection_of({ipaddress.ip_address("10.10.0.3")})


def test_only_this_hosts_active_endpoints_are_programmed():
    entries = {
        PREFIX + "a": endpoint("calia", "10.10.0.1/32"),
        PREFIX + "b": endpoint("calib", "10.10.0.2/32", "10.10.0.3/32"),
        PREFIX + "c": endpoint("calic", "10.10.0.4/32", state="inactive"),
        "/calico/v1/host/host2/workload/libnetwork/libnetwork/endpoint/d": endpoint("calid", "10.10.1.1/32"),
        "/calico/v1/host/host1/metadata": {},
    }
    wanted = endpoints.desired_interfaces(entries, "host1")
    assert sorted(wanted) == ["calia", "calib"]
    assert wanted["calib"] == endpoints.WorkloadInterface(
        "calib", "ee:ee:ee:ee:ee:ee", (ipaddress.ip_address("10.10.0.2"), ipaddress.ip_address("10.10.0.3")))


def test_without_ipv6_support_only_the_ipv4_addresses_are_programmed():
    dual = {**endpoint("calia", "10.10.0.1/32"), "ipv6_nets": ["fd80::1/128"]}
    v4, v6 = ipaddress.ip_address("10.10.0.1"), ipaddress.ip_address("fd80::1")
    assert endpoints.desired_interfaces({PREFIX + "a": dual}, "host1")["calia"].addresses == (v4, v6)
    assert endpoints.desired_interfaces({PREFIX + "a": dual}, "host1", ipv6=False)["calia"].addresses == (v4,)


def test_proxy_arp_and_friends_are_set_per_interface():
    assert {pattern.format("calia"): value for pattern, value in endpoints.INTERFACE_SYSCTLS.items()} == {
        "ipv4/conf/calia/proxy_arp": "1", "ipv4/conf/calia/rp_filter": "1",
        "ipv4/conf/calia/route_localnet": "1", "ipv4/neigh/calia/proxy_delay": "0"}


DOWN_THEN_UP = """
import json, subprocess
from calisim.felix import endpoints
subprocess.run("ip link add calitest00001 type veth peer name temptest00001", shell=True, check=True)
wanted = {"calitest00001": endpoints.WorkloadInterface("calitest00001", "ee:ee:ee:ee:ee:ee", (__import__("ipaddress").ip_address("10.10.0.7"),))}
first = endpoints.apply(wanted)  # Join made it, but it is not up yet: a route through it would be refused
routes_before = subprocess.run("ip -4 route show 10.10.0.7", shell=True, capture_output=True, text=True).stdout
subprocess.run("ip link set calitest00001 up", shell=True, check=True)
second = endpoints.apply(wanted)
routes_after = subprocess.run("ip -4 route show 10.10.0.7", shell=True, capture_output=True, text=True).stdout
print(json.dumps([sorted(first), routes_before, sorted(second), routes_after]))
"""


@pytest.mark.emulation
def test_an_interface_that_is_not_up_yet_is_retried_not_fatal():
    """The CI flake of session 1: Felix met a workload's veth between its creation and `up`, the
    kernel refused the /32 route (ENETDOWN) and the whole workload loop stopped for good."""
    first, before, second, after = json.loads(in_a_throwaway_netns(DOWN_THEN_UP))
    assert first == ["calitest00001"] and before == ""
    assert second == [] and after.startswith("10.10.0.7 dev calitest00001 proto static scope link")


CHANGES = """
import ipaddress, json, subprocess
from calisim.felix import endpoints
def sh(command):
    return subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout
def interface(name, *addresses):
    return endpoints.WorkloadInterface(name, "ee:ee:ee:ee:ee:ee", tuple(map(ipaddress.ip_address, addresses)))
for n in (1, 2):
    sh(f"ip link add cali0000{n} type veth peer name temp0000{n} && ip link set cali0000{n} up && ip link set temp0000{n} up")
dataplane = endpoints.Dataplane()
seen = {}
seen["first"] = sorted(dataplane.apply({"cali00001": interface("cali00001", "10.10.0.1")}))
seen["one"] = sh("ip -4 route show proto static")
sh("ip route del 10.10.0.1/32")  # by hand: an incremental pass leaves unchanged endpoints alone
both = {"cali00001": interface("cali00001", "10.10.0.1"), "cali00002": interface("cali00002", "10.10.0.2")}
seen["second"] = sorted(dataplane.apply(both))
seen["two"] = sh("ip -4 route show proto static")
seen["third"] = sorted(dataplane.apply({"cali00002": interface("cali00002", "10.10.0.3")}))
seen["moved"] = sh("ip -4 route show proto static")
dataplane.full_at -= dataplane.FULL_RESYNC  # the timer's full pass puts back what was deleted by hand
seen["fourth"] = sorted(dataplane.apply(both))
seen["resynced"] = sh("ip -4 route show proto static")
print(json.dumps(seen))
"""


@pytest.mark.emulation
def test_passes_apply_only_changes_and_the_timer_pass_resyncs_everything():
    """Felix's workload passes touch only new, changed and gone endpoints (their cost does not grow
    with the endpoints already there); the periodic full pass repairs what changed behind its back."""
    seen = json.loads(in_a_throwaway_netns(CHANGES))
    assert seen["first"] == seen["second"] == seen["third"] == seen["fourth"] == []
    assert seen["one"].split() == "10.10.0.1 dev cali00001 scope link".split()
    assert seen["two"].split() == "10.10.0.2 dev cali00002 scope link".split()
    assert seen["moved"].split() == "10.10.0.3 dev cali00002 scope link".split()
    assert sorted(seen["resynced"].splitlines()) == ["10.10.0.1 dev cali00001 scope link ",
                                                     "10.10.0.2 dev cali00002 scope link "]


CONNECTIONS = """
import ipaddress, json, subprocess
from pyroute2 import Conntrack
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
from calisim.felix import endpoints
def flow(source, destination, port):
    with Conntrack() as conntrack:
        conntrack.entry("add", timeout=60, tuple_orig=NFCTAttrTuple(saddr=source, daddr=destination, proto=17, sport=port, dport=53),
                        tuple_reply=NFCTAttrTuple(saddr=destination, daddr=source, proto=17, sport=53, dport=port))
def flows():
    conntrack = Conntrack()
    found = sorted(f"{e.tuple_orig.saddr}>{e.tuple_orig.daddr}" for e in conntrack.dump_entries())
    conntrack.close()
    return found
def interface(*addresses):
    return {"cali00001": endpoints.WorkloadInterface("cali00001", "ee:ee:ee:ee:ee:ee", tuple(map(ipaddress.ip_address, addresses)))}
subprocess.run("ip link add cali00001 type veth peer name temp00001 && ip link set cali00001 up", shell=True, check=True)
dataplane = endpoints.Dataplane()
seen = {}
dataplane.apply(interface("10.10.0.1"))  # the first, full pass
flow("10.10.0.2", "198.51.100.10", 1000)  # an earlier holder of 10.10.0.2, un-NATed
flow("10.10.0.1", "198.51.100.10", 1001)  # the live workload's own
flow("198.51.100.10", "10.10.0.3", 1002)
seen["before"] = flows()
dataplane.apply(interface("10.10.0.1", "10.10.0.2"))  # 10.10.0.2 comes
seen["came"] = flows()
flow("10.10.0.2", "198.51.100.10", 1003)
dataplane.apply(interface("10.10.0.2"))  # 10.10.0.1 goes
seen["went"] = flows()
dataplane.apply({})  # the host's last workload goes
flow("10.10.0.4", "198.51.100.10", 1004)
dataplane.apply(interface("10.10.0.4"))  # and the next comes to a host with none
seen["came to none"] = flows()
flow("10.10.0.4", "198.51.100.10", 1005)
flow("10.10.0.5", "198.51.100.10", 1006)
dataplane.full_at -= dataplane.FULL_RESYNC
dataplane.apply(interface("10.10.0.5"))  # 10.10.0.4 goes, 10.10.0.5 comes, in the timer's full pass
seen["full"] = flows()
flow("10.10.0.6", "198.51.100.10", 1007)
both = {**interface("10.10.0.5"), "cali00002": endpoints.WorkloadInterface("cali00002", "ee:ee:ee:ee:ee:ee",
                                                                           (ipaddress.ip_address("10.10.0.6"),))}
seen["missing"] = sorted(dataplane.apply(both))  # its Join has not made the interface yet
seen["not yet"] = flows()
subprocess.run("ip link add cali00002 type veth peer name temp00002 && ip link set cali00002 up", shell=True, check=True)
dataplane.apply(both)
seen["made"] = flows()
print(json.dumps(seen))
"""


@pytest.mark.emulation
def test_the_connections_of_an_address_that_comes_or_goes_are_forgotten():
    """An address's next holder must not take up its predecessor's flows and their NAT decision
    (un-NATed if the pool had no nat-outgoing then); a workload that stays keeps its own.  Also
    when the address comes to a host that had no workload left, or in the timer's full pass; and
    for an endpoint whose interface comes after its key, in the pass that programs it."""
    seen = json.loads(in_a_throwaway_netns(CONNECTIONS))
    assert seen["before"] == ["10.10.0.1>198.51.100.10", "10.10.0.2>198.51.100.10", "198.51.100.10>10.10.0.3"]
    assert seen["came"] == ["10.10.0.1>198.51.100.10", "198.51.100.10>10.10.0.3"]
    assert seen["went"] == ["10.10.0.2>198.51.100.10", "198.51.100.10>10.10.0.3"]
    assert seen["came to none"] == ["198.51.100.10>10.10.0.3"]
    assert seen["full"] == ["198.51.100.10>10.10.0.3"]
    assert seen["missing"] == ["cali00002"]  # an interface not made yet: its address's flows go when it is
    assert seen["not yet"] == ["10.10.0.6>198.51.100.10", "198.51.100.10>10.10.0.3"]
    assert seen["made"] == ["198.51.100.10>10.10.0.3"]


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


@pytest.mark.emulation
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


@pytest.mark.emulation
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
