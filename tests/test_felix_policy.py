"""Policy in the dataplane, live: the seed's two networks are isolated by address too (ICMP,
TCP, UDP), a profile edited with calicoctl changes reachability on every host and back, and a
selector policy comes before the profiles."""

import pytest

import topologies
from calisim.emulation import Cluster, wait_until

from .conftest import replay

pytestmark = pytest.mark.emulation

# x$ probe DEST PROTO: the scapy/socket probe from inside workload x (exit 0 = reachable).
SEED_NETWORKS = r"""
host1$ calicoctl node run
host2$ calicoctl node run
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}, nat-outgoing: true}}' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker network create --driver calico --ipam-driver calico-ipam net2
host1$ docker run --net net1 --name A -d workload
host1$ docker run --net net2 --name B -d workload
host1$ docker run --net net1 --name C -d workload
host2$ docker run --net net2 --name D -d workload
host2$ docker run --net net1 --name E -d workload
host1$ calicoctl get profile -o wide | grep -E '^net1 +net1 +$'
host1$ calicoctl get workloadEndpoint | grep -c ' libnetwork ' | grep -x 5
host1$ calicoctl get wep -o wide | grep -E '^host2 +libnetwork +libnetwork +[0-9a-f]{64} +10\.10\.[0-9.]+/32 +cali[0-9a-f]{11} +net2 +$'
host1$ calicoctl get wep -o yaml | calicoctl apply -f - 2>&1 | grep -q 'managed by the libnetwork plugin; calicoctl only reads them'
# Bad policy is rejected whole, with what is wrong.
host1$ echo '[{apiVersion: v1, kind: profile, metadata: {name: ok}}, {apiVersion: v1, kind: policy, metadata: {name: bad}, spec: {selector: "role = db"}}]' | calicoctl create -f - 2>&1 | grep -q "item 2: policy spec.selector: unexpected '= db' at position 4 in 'role = db'"
host1$ echo '{apiVersion: v1, kind: profile, metadata: {name: bad}, spec: {ingress: [{action: allow, protocol: tcp, destination: {ports: [70000]}}]}}' | calicoctl create -f - 2>&1 | grep -q "70000 is not a port"
host1$ echo '{apiVersion: v1, kind: profile, metadata: {name: bad}, spec: {ingress: [{action: permit}]}}' | calicoctl create -f - 2>&1 | grep -q "'permit' is not allow, deny, log or next-tier"
host1$ echo '{apiVersion: v1, kind: profile, metadata: {name: bad}, spec: {egress: [{action: allow, destination: {ports: [80]}}]}}' | calicoctl create -f - 2>&1 | grep -q "ports need protocol tcp, udp, sctp or udplite"
host1$ calicoctl get profile | grep -E -c '^(ok|bad) ' | grep -x 0
host1$ calicoctl get policy | grep -c . | grep -x 1
# Round trips: what get prints is what replace and create take back.
host1$ calicoctl get profile -o json | calicoctl replace -f - | grep -x "Successfully replaced 2 'profile' resource(s)"
host1$ calicoctl get profile net2 -o yaml > net2.yaml && calicoctl get profile net2 -o yaml | diff - <(calicoctl replace -f net2.yaml > /dev/null && calicoctl get profile net2 -o yaml)
# A workload may not reach its own host (except DHCP and DNS); the host may reach its workloads.
within 10s host1$ ping -c 1 -W 1 $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' A)
host1! docker exec A ping -c 2 -W 1 192.168.3.229
host1$ docker exec A ping -c 1 -W 1 192.168.3.228
"""

def address(cluster, host, name):
    done = cluster.run(host, f"docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}{{{{end}}}}' {name}")
    assert done.rc == 0, done.stderr
    return done.stdout.strip()


def probe(cluster, host, source, destination, protocol):
    """Exit code of the probe from inside source (its network namespace): 0 reachable, 1 not."""
    return cluster.run(host, f"nsenter -t $(docker inspect -f '{{{{.State.Pid}}}}' {source}) -n "
                       f"python -m calisim.probes {protocol} {destination}"
                       + (" --count 1" if protocol == "icmp" else "")).rc


def reachable_within(cluster, host, source, destination, protocol, expected: bool, seconds: float = 15) -> bool:
    wait_until(lambda: (probe(cluster, host, source, destination, protocol) == 0) == expected, seconds,
               interval=0.2, what=f"{source} -> {destination} {protocol} reachable={expected}")
    return True


def edit(cluster, kind, name, change):
    """calicoctl get -o yaml | change (a Python statement on d, the list) | calicoctl apply -f -"""
    done = cluster.run("host1", f"calicoctl get {kind} {name} -o yaml | python -c \"import sys, yaml; "
                       f"d = yaml.safe_load(sys.stdin); {change}; print(yaml.safe_dump(d))\" | calicoctl apply -f -")
    assert done.rc == 0 and f"Successfully applied 1 '{kind}' resource(s)" in done.stdout, done.stdout + done.stderr


NO_WEB = """- apiVersion: v1
  kind: policy
  metadata: {name: no-web}
  spec:
    order: 10
    selector: "network == 'net1'"
    ingress: [{action: deny, protocol: tcp, destination: {ports: [80]}}, {action: next-tier}]
    egress: [{action: next-tier}]
"""


def test_networks_are_isolated_by_address_and_profiles_and_policies_change_it_everywhere(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, SEED_NETWORKS)
        ip = {name: address(cluster, host, name) for name, host in
              (("A", "host1"), ("B", "host1"), ("C", "host1"), ("D", "host2"), ("E", "host2"))}
        for protocol in ("icmp", "tcp", "udp"):
            assert reachable_within(cluster, "host1", "A", ip["C"], protocol, True)
            assert reachable_within(cluster, "host1", "A", ip["E"], protocol, True)
            assert probe(cluster, "host1", "A", ip["B"], protocol) == 1
            assert probe(cluster, "host1", "A", ip["D"], protocol) == 1
        # A rule no calicoctl would store, written straight to etcd: every host keeps its last good rules.
        rules_key = "/calico/v1/policy/profile/net1/rules"
        good = cluster.run("host1", f'etcdctl --endpoints "$ETCD_ENDPOINTS" get --print-value-only {rules_key}').stdout.strip()
        bad = '{"inbound_rules": [{"action": "bogus"}], "outbound_rules": [{"action": "allow"}]}'
        assert cluster.run("host1", f"etcdctl --endpoints \"$ETCD_ENDPOINTS\" put {rules_key} '{bad}'").rc == 0
        for host in ("host1", "host2"):
            wait_until(lambda: "kept the last good policy: unknown action 'bogus'" in
                       cluster.run(host, "cat /var/log/calico/node.log").stdout, 15, what=f"{host} to refuse the rule")
        assert probe(cluster, "host1", "A", ip["E"], "tcp") == 0 and probe(cluster, "host1", "A", ip["B"], "tcp") == 1
        assert cluster.run("host1", f"etcdctl --endpoints \"$ETCD_ENDPOINTS\" put {rules_key} '{good}'").rc == 0
        # Let net1 in to net2's workloads: B (host1) and D (host2) follow, then go back.
        edit(cluster, "profile", "net2", "d[0]['spec']['ingress'].append({'action': 'allow', 'source': {'tag': 'net1'}})")
        for destination in ("B", "D"):
            assert reachable_within(cluster, "host1", "A", ip[destination], "tcp", True)
        assert probe(cluster, "host2", "D", ip["A"], "tcp") == 1  # net1 did not let net2 in
        edit(cluster, "profile", "net2", "d[0]['spec']['ingress'].pop()")
        for destination in ("B", "D"):
            assert reachable_within(cluster, "host1", "A", ip[destination], "tcp", False)
        # A selector policy comes before the profiles: no TCP 80 into net1, the rest goes on (next-tier).
        edit(cluster, "profile", "net1", "d[0]['metadata']['labels'] = {'network': 'net1'}")
        created = cluster.run("host1", f"calicoctl create -f - <<'EOF'\n{NO_WEB}EOF")
        assert created.rc == 0, created.stdout + created.stderr
        listed = cluster.run("host1", "calicoctl get policy -o wide && calicoctl get policy -o yaml | calicoctl replace -f -")
        assert "no-web   10      network == 'net1'" in listed.stdout and "Successfully replaced 1 'policy'" in listed.stdout
        assert reachable_within(cluster, "host1", "A", ip["E"], "tcp", False)
        assert probe(cluster, "host1", "A", ip["E"], "icmp") == 0 and probe(cluster, "host1", "A", ip["C"], "udp") == 0
        assert cluster.run("host1", "calicoctl delete policy no-web").rc == 0
        assert reachable_within(cluster, "host1", "A", ip["E"], "tcp", True)
