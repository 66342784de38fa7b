"""Isolation as a property, on a live cluster: hypothesis draws networks, workloads placed on
random hosts, and extra profile rules or selector policies; the workloads are dual-stack (`--ipv6`
networks, nodes with `--ip6`), and the probes measure every ordered pair over ICMP, TCP 80 and
UDP 69, over IPv4 and over IPv6 (ICMPv6); the result must equal calisim.testing.policy_model's.

One cluster serves every example (workloads, networks and policy are replaced between them).
Sizes follow CALISIM_HYPOTHESIS_PROFILE: ci = 3 hosts, 2 to 12 workloads; scale = 10 hosts,
50 to 100 workloads.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import yaml
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

import topologies
from calisim.felix import policy
from calisim.emulation import Cluster, ClusterError
from calisim.probes import matrix_from
from calisim.datastore.resources import Policy, Profile, parse_documents
from calisim.testing.policy_model import Packet, allowed, explain

pytestmark = pytest.mark.emulation

SIZES = {"ci": {"hosts": 3, "least": 2, "workloads": 12, "examples": 4},
         "scale": {"hosts": 10, "least": 50, "workloads": 100, "examples": 10}}  # hypothesis favours short lists
SIZE = SIZES[os.environ.get("CALISIM_HYPOTHESIS_PROFILE", "ci")]
PROTOCOLS = ("icmp", "tcp", "udp")
VERSIONS = (4, 6)
POOLS = ("10.10.0.0/16", "fd80:24e2:f998:72d6::/64")  # the IPIP pool made below, the default IPv6 pool
CONVERGE_SECONDS = 30


@dataclass(frozen=True)
class Scenario:
    networks: int
    workloads: tuple[tuple[int, int], ...]  # (host index, network index) per workload
    extras: tuple[tuple, ...]  # extra rules, see extra_rules()


def extra_rules(networks: int):
    net = st.integers(0, networks - 1)
    protocol = st.sampled_from(PROTOCOLS)
    return st.one_of(
        st.tuples(st.just("allow-tag"), net, net),              # network a lets network b in
        st.tuples(st.just("allow-port"), net, st.sampled_from([("tcp", 80), ("udp", 69), ("tcp", 81)])),
        st.tuples(st.just("allow-net"), net),                   # a lets the whole pool in
        st.tuples(st.just("deny-first"), net, protocol),        # a denies a protocol before its allows
        st.tuples(st.just("policy"), net, net, protocol),       # a policy: a denies protocol from b's selector
    )


@st.composite
def scenarios(draw):
    networks = draw(st.integers(2, 5))
    workloads = draw(st.lists(st.tuples(st.integers(0, SIZE["hosts"] - 1), st.integers(0, networks - 1)),
                              min_size=SIZE["least"], max_size=SIZE["workloads"]))
    extras = draw(st.lists(extra_rules(networks), max_size=3))
    return Scenario(networks, tuple(workloads), tuple(extras))


def documents(scenario: Scenario) -> list[dict]:
    """The profiles (libnetwork's, labelled, plus the extras) and policies of a scenario."""
    profiles = {i: {"apiVersion": "v1", "kind": "profile",
                    "metadata": {"name": f"n{i}", "tags": [f"n{i}"], "labels": {"net": f"n{i}"}},
                    "spec": {"ingress": [{"action": "allow", "source": {"tag": f"n{i}"}}], "egress": [{"action": "allow"}]}}
                for i in range(scenario.networks)}
    policies = []
    for index, extra in enumerate(scenario.extras):
        kind, target = extra[0], extra[1]
        ingress = profiles[target]["spec"]["ingress"]
        if kind == "allow-tag":
            ingress.append({"action": "allow", "source": {"tag": f"n{extra[2]}"}})
        elif kind == "allow-port":
            ingress.append({"action": "allow", "protocol": extra[2][0], "destination": {"ports": [extra[2][1]]}})
        elif kind == "allow-net":
            ingress.append({"action": "allow", "source": {"net": "10.10.0.0/16"}})
        elif kind == "deny-first":
            ingress.insert(0, {"action": "deny", "protocol": extra[2]})
        else:
            policies.append({"apiVersion": "v1", "kind": "policy", "metadata": {"name": f"p{index}"},
                             "spec": {"order": index, "selector": f"net == 'n{target}'",
                                      "ingress": [{"action": "deny", "protocol": extra[3],
                                                   "source": {"selector": f"net == 'n{extra[2]}'"}},
                                                  {"action": "next-tier"}],
                                      "egress": [{"action": "next-tier"}]}})
    return list(profiles.values()) + policies


def model_of(scenario: Scenario, placed: dict[str, dict]) -> policy.Model:
    """The reference model, built from the scenario's own documents (not read back from etcd)."""
    resources = parse_documents(documents(scenario))
    profiles = {r.profile_name: policy.Profile(r.profile_name, r.tags, r.ingress, r.egress, r.labels)
                for r in resources if isinstance(r, Profile)}
    policies = tuple(policy.Policy(r.policy_name, r.selector, r.order, r.ingress, r.egress)
                     for r in resources if isinstance(r, Policy))
    endpoints = tuple(policy.Endpoint(w["host"], name, (w["ip"], w["ip6"]), (w["network"],)) for name, w in placed.items())
    return policy.Model(endpoints, profiles, (), POOLS, policies)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(topologies.load("flat", SIZE["hosts"])) as live:
        live.start_nodes(options="--ip6 autodetect")
        live.wait_for_mesh(60)
        must(live.run("host1", "echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, "
                               "spec: {ipip: {enabled: true}}}' | calicoctl create -f - && calicoctl delete ipPool 192.168.0.0/16"))
        yield live


def must(result):
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def reset(cluster: Cluster) -> None:
    """No workloads, networks or policies left from the previous example."""
    for result in cluster.run_everywhere("docker ps -aq | xargs -r docker rm -f"):
        must(result)
    must(cluster.run("host1", "docker network ls --format '{{.Name}} {{.Driver}}' | awk '$2 == \"calico\" {print $1}' "
                              "| xargs -r docker network rm && calicoctl get policy | tail -n +2 "
                              "| xargs -r -n 1 calicoctl delete policy"))


def place(cluster: Cluster, scenario: Scenario) -> dict[str, dict]:
    """Networks and workloads of the scenario; name -> host, network, ip, pid."""
    for i in range(scenario.networks):
        must(cluster.run("host1", f"docker network create --ipv6 --driver calico --ipam-driver calico-ipam n{i}"))
    by_host: dict[str, list[str]] = {}
    for index, (host, network) in enumerate(scenario.workloads):
        by_host.setdefault(cluster.hosts[host], []).append(f"docker run --net n{network} --name w{index} -d workload")

    def start(host: str) -> str:
        must(cluster.run(host, " && ".join(by_host[host])))
        return must(cluster.run(host, "docker inspect -f '{{.Name}} {{.State.Pid}} "
                                      "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}} "
                                      "{{$e.GlobalIPv6Address}}{{end}}' "
                                      "$(docker ps -q)"))

    placed = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for host, listing in zip(by_host, pool.map(start, by_host)):
            for line in listing.split("\n"):
                if line.strip():
                    name, pid, network, ip, ip6 = line.split()
                    placed[name.lstrip("/")] = {"host": host, "pid": int(pid), "network": network, "ip": ip, "ip6": ip6}
    return placed


def measure(placed: dict[str, dict], pairs: list[tuple[str, str, str, int]]) -> dict[tuple[str, str, str, int], bool]:
    """These (source, destination, protocol, IP version) probes, each source probing all of its at once."""
    by_source: dict[str, list[tuple[str, str, str, int]]] = {}
    for pair in pairs:
        by_source.setdefault(pair[0], []).append(pair)

    def from_source(source: str) -> dict:
        mine = by_source[source]
        answered = matrix_from(placed[source]["pid"], [(protocol, placed[d]["ip" if version == 4 else "ip6"])
                                                       for _, d, protocol, version in mine])
        return dict(zip(mine, answered))

    measured: dict = {}
    with ThreadPoolExecutor(max_workers=16) as pool:
        for part in pool.map(from_source, by_source):
            measured.update(part)
    return measured


# No shrinking: every step of it would rebuild workloads on the live cluster for minutes; the
# failure message names the pair, the model's reasoning and the hosts' rules instead.
@settings(max_examples=SIZE["examples"], deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(scenario=scenarios())
def test_measured_reachability_equals_the_model(cluster, scenario):
    import time

    reset(cluster)
    placed = place(cluster, scenario)
    example = cluster.run_dir.path / "policy-example.json"  # the hosts share the filesystem
    example.write_text(json.dumps(documents(scenario)))
    must(cluster.run("host1", f"calicoctl apply -f {example}"))
    model = model_of(scenario, placed)
    endpoints = {e.interface: e for e in model.endpoints}
    expected = {(s, d, p, v): allowed(model, Packet(endpoints[s], endpoints[d], p, v))
                for s in placed for d in placed if s != d for p in PROTOCOLS for v in VERSIONS}
    event(f"{sum(expected.values())} of {len(expected)} (pair, protocol, version) allowed")  # --hypothesis-show-statistics
    # Policy reaches every host within a bounded time, and on a busy machine a probe can time out:
    # probe the pairs that differ again until they agree or the time is up (counted from the end of
    # the full measurement, which alone takes longer than that with 100 workloads on 2 cores).
    measured = measure(placed, list(expected))
    deadline = time.monotonic() + CONVERGE_SECONDS
    while (wrong := sorted(p for p in expected if measured[p] != expected[p])) and time.monotonic() < deadline:
        measured.update(measure(placed, wrong))
    if wrong:
        source, destination, protocol, version = wrong[0]
        hosts = {placed[source]["host"], placed[destination]["host"]}
        rules = "\n".join(f"--- {h}: /var/run/calico/policy.nft\n"
                          + (cluster.host(h).state_dir / "run" / "policy.nft").read_text() for h in sorted(hosts))
        packet = Packet(endpoints[source], endpoints[destination], protocol, version)
        pytest.fail(f"{len(wrong)} of {len(expected)} differ from the model, e.g. {source} ({packet.addresses[0]}, "
                    f"{placed[source]['network']}) -> {destination} ({packet.addresses[1]}, "
                    f"{placed[destination]['network']}) over {protocol}/IPv{version}: measured {measured[wrong[0]]}, "
                    f"model {expected[wrong[0]]}\nall: {wrong[:20]}\nmodel: {explain(model, packet)}\n"
                    f"documents: {yaml.safe_dump(documents(scenario))}\n{rules}", pytrace=False)
