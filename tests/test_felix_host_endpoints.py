"""Host endpoints as Felix 2.0 enforces them: the rendering (no root), and live on two hosts: a
host endpoint on host2's uplink whose profile lets in only TCP 80 closes 8080 and ping, keeps
the failsafes (BGP, etcd) open, leaves workloads alone, and goes away without a trace."""

import subprocess
from dataclasses import replace

import pytest

import topologies
from calisim.datastore import keys
from calisim.datastore.resources import HostEndpoint, parse_documents
from calisim.emulation import Cluster, wait_until
from calisim.felix import policy
from calisim.felix.policy import Endpoint, Model, Policy, Profile

from .conftest import replay
from .test_felix_policy import address, probe

WEB_HOST = Profile("web-host", (), ({"action": "allow", "protocol": "tcp", "dst_ports": [80]},), ({"action": "allow"},))
UPLINK = Endpoint("host2", "host2-eth0", ("192.168.3.228",), ("web-host",), (("role", "web"),), on_host=True)
WORKLOAD = Endpoint("host2", "calieeeeeeeeeee", ("10.10.0.65",), ("web-host",))
MODEL = Model((UPLINK, WORKLOAD), {"web-host": WEB_HOST}, (), ("10.10.0.0/16",), (),
              ("192.168.3.228", "192.168.3.229"))


def test_host_endpoints_are_read_from_their_v1_keys_with_their_labels():
    (endpoint,) = parse_documents({"apiVersion": "v1", "kind": "hostEndpoint",
                                   "metadata": {"name": "uplink", "node": "host2", "labels": {"role": "web"}},
                                   "spec": {"interfaceName": "host2-eth0", "expectedIPs": ["192.168.3.228"],
                                            "profiles": ["web-host"]}})
    entries = {**endpoint.writes(), keys.host_bird_ip("host1"): "192.168.3.229",
               keys.host_bird_ip("host2"): "192.168.3.228"}
    model = policy.load(entries)
    assert model.endpoints == (UPLINK,) and model.host_addresses == ("192.168.3.228", "192.168.3.229")
    assert isinstance(endpoint, HostEndpoint)


def test_a_host_endpoint_gets_input_and_output_chains_with_failsafes_first():
    text = policy.render(MODEL, "host2")
    assert '"host2-eth0" : jump host_in_host2-eth0' in text and '"host2-eth0" : jump host_out_host2-eth0' in text
    inbound = text.split("chain host_in_host2-eth0 {")[1].split("}")[0].split("\n")
    assert inbound[1].strip() == "jump failsafe_in" and inbound[-2].strip() == "drop"
    assert "tcp dport { 22, 179, 2379, 2380, 4001, 7001 } accept" in text.split("chain failsafe_in {")[1]
    assert "udp dport { 53, 67 } accept" in text.split("chain failsafe_out {")[1]
    assert "meta l4proto 4 ip saddr @calico_hosts accept" in text  # tunnelled workload traffic passes
    assert "type filter hook output" in text
    # The workload keeps its own chains; host1 (no host endpoint) gets no output hook at all.
    assert "chain to_calieeeeeeeeeee {" in text and "failsafe" not in text.split("chain to_calieeeeeeeeeee {")[1].split("}")[0]
    assert "hook output" not in policy.render(MODEL, "host1")


def test_policies_select_host_endpoints_by_their_own_labels():
    web_only = Policy("web-only", "role == 'web'", 1, ({"action": "deny", "protocol": "udp"},), ())
    model = Model(MODEL.endpoints, MODEL.profiles, (), MODEL.all_pools, (web_only,), MODEL.host_addresses)
    assert [p.name for p in model.policies_for(UPLINK)] == ["web-only"] and model.policies_for(WORKLOAD) == []
    assert f"jump {policy.policy_chain('web-only', 'to')}" in policy.render(model, "host2")


@pytest.mark.emulation
def test_nft_takes_a_ruleset_with_host_endpoints():
    done = subprocess.run(["unshare", "--net", "nft", "-f", "-"], input=policy.render(MODEL, "host2"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


CLUSTER = r"""
host1$ calicoctl node run
host2$ calicoctl node run
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name A -d workload
host2$ docker run --net net1 --name E -d workload
host2$ (setsid python -m http.server 80 & setsid python -m http.server 8080 &) > /dev/null 2>&1
host1$ calicoctl create -f - <<EOF
- apiVersion: v1
  kind: profile
  metadata: {name: web-host}
  spec:
    ingress: [{action: allow, protocol: tcp, destination: {ports: [80]}}]
    egress: [{action: allow}]
EOF
"""


def tcp_open(cluster, source: str, destination: str, port: int) -> bool:
    return cluster.run(source, f"timeout 2 bash -c 'echo > /dev/tcp/{destination}/{port}'").rc == 0


def pings(cluster, source: str, destination: str) -> bool:
    return cluster.run(source, f"ping -c 1 -W 1 {destination}").rc == 0


def workload_reaches(cluster, host: str, source: str, destination: str, protocol: str) -> bool:
    return probe(cluster, host, source, destination, protocol) == 0


@pytest.mark.emulation
def test_a_host_endpoint_lets_in_only_what_its_profile_allows_and_keeps_the_failsafes(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, CLUSTER)
        host2 = "192.168.3.228"
        uplink = cluster.run("host2", f"ip -o -4 addr show | awk '/{host2}\\//{{print $2}}'").stdout.strip()
        a, e = address(cluster, "host1", "A"), address(cluster, "host2", "E")

        def reachability():
            return {"80": tcp_open(cluster, "host1", host2, 80), "8080": tcp_open(cluster, "host1", host2, 8080),
                    "ping": pings(cluster, "host1", host2),
                    "A->E": all(workload_reaches(cluster, "host1", "A", e, p) for p in ("tcp", "icmp")),
                    "E->A": all(workload_reaches(cluster, "host2", "E", a, p) for p in ("tcp", "icmp"))}

        everything = {"80": True, "8080": True, "ping": True, "A->E": True, "E->A": True}
        wait_until(lambda: reachability() == everything, 30, interval=0.5, what="everything reachable before")

        created = cluster.run("host1", f"calicoctl create -f - <<EOF\n- apiVersion: v1\n  kind: hostEndpoint\n"
                                       f"  metadata: {{name: uplink, node: host2, labels: {{role: web}}}}\n"
                                       f"  spec: {{interfaceName: {uplink}, expectedIPs: [{host2}], profiles: [web-host]}}\n"
                                       f"EOF")
        assert created.stdout == "Successfully created 1 'hostEndpoint' resource(s)\n", created.stdout + created.stderr
        listed = cluster.run("host2", "calicoctl get hostEndpoint -o wide")  # etcd from host2: outbound failsafe
        assert listed.stdout.split("\n")[1].split() == ["host2", "uplink", uplink, host2, "web-host"], listed.stdout
        wait_until(lambda: not tcp_open(cluster, "host1", host2, 8080), 20, interval=0.5, what="8080 closed")
        assert reachability() == {**everything, "8080": False, "ping": False}
        # BGP: sessions restarted across the host endpoint come back (new TCP connections to 179 both ways).
        assert cluster.bgp_established("host2") == 1
        restarted = cluster.run("host2", "birdc -s /var/run/calico/bird.ctl restart Mesh_192_168_3_229")
        assert restarted.rc == 0, restarted.stdout + restarted.stderr
        wait_until(lambda: cluster.bgp_established("host1") == cluster.bgp_established("host2") == 1, 60,
                   interval=0.5, what="the mesh session re-established across the host endpoint")
        assert "Established" in cluster.run("host2", "calicoctl node status").stdout
        assert workload_reaches(cluster, "host1", "A", e, "tcp")

        deleted = cluster.run("host2", "calicoctl delete hostEndpoint uplink --node host2")
        assert deleted.stdout == "Successfully deleted 1 'hostEndpoint' resource(s)\n", deleted.stdout
        wait_until(lambda: reachability() == everything, 30, interval=0.5, what="everything reachable again")
        assert "hook output" not in cluster.run("host2", "nft list table ip calico").stdout


def test_a_host_endpoint_with_only_expected_ips_applies_to_the_interfaces_holding_them():
    by_address = Endpoint("host2", "", ("192.168.3.228",), ("web-host",), on_host=True)
    elsewhere = Endpoint("host1", "", ("192.168.3.229",), ("web-host",), on_host=True)
    model = Model((by_address, elsewhere, WORKLOAD), MODEL.profiles, (), MODEL.all_pools, (), MODEL.host_addresses)
    resolved = policy.with_interfaces(model, "host2", {"lo": {"127.0.0.1"}, "host2-eth0": {"192.168.3.228"}})
    assert resolved.local("host2", on_host=True) == [replace(by_address, interface="host2-eth0")]
    assert elsewhere in resolved.endpoints  # another host's endpoint is that host's business
    assert "host_in_host2-eth0" in policy.render(resolved, "host2")
    assert policy.with_interfaces(model, "host2", {"host2-eth0": {"192.168.3.99"}}).local("host2", on_host=True) == []


@pytest.mark.emulation
def test_this_hosts_interface_addresses_are_read_over_netlink():
    found = policy.host_interface_addresses()  # the test session's private namespace: lo at least
    assert "127.0.0.1" in found.get("lo", set())


def test_failsafe_ports_follow_felix_config_global_then_per_host():
    config = {keys.FELIX_CONFIG + "FailsafeInboundHostPorts": "22,2222",
              keys.host_config("host2", "FailsafeOutboundHostPorts"): "udp:53,tcp:2379"}
    model = replace(MODEL, felix_config=config)
    assert model.failsafes("host2", "in") == (("tcp", 22), ("tcp", 2222))
    assert model.failsafes("host2", "out") == (("udp", 53), ("tcp", 2379))
    assert model.failsafes("host1", "out") == policy.FAILSAFE_OUTBOUND
    text = policy.render(model, "host2")
    assert "tcp dport { 22, 2222 } accept" in text.split("chain failsafe_in {")[1].split("chain failsafe_out")[0]
    assert replace(MODEL, felix_config={keys.FELIX_CONFIG + "FailsafeInboundHostPorts": "none"}).failsafes(
        "host2", "in") == ()
    with pytest.raises(policy.PolicyError, match="'ssh' is not a port"):
        replace(MODEL, felix_config={keys.FELIX_CONFIG + "FailsafeInboundHostPorts": "ssh"}).failsafes("host2", "in")
    loaded = policy.load({**config, keys.host_config("host2", "IpInIpTunnelAddr"): "10.10.0.1"})
    assert loaded.felix_config == config
