"""The bundled scenarios, each runnable as `calisim NAME`: a topology, a transcript from
transcripts/, and a check of the outcome measured after it ran (BGP sessions from every host's
BIRD, workload pings by address with scapy and their TTLs), like the seed's two-host check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable

from ..probes import probe_from
from . import seed

if TYPE_CHECKING:  # the command line imports the scenarios before its sandbox, Mininet only inside
    from ..emulation.cluster import Cluster


@dataclass(frozen=True)
class Reach:
    """A workload pair whose replies must arrive with this TTL (64 minus the routers on the way;
    over IPv6 the replies' hop limit, to the destination's IPv6 address)."""

    source: str
    source_host: str
    destination: str
    destination_host: str
    ttl: int
    ipv6: bool = False

    def address(self, settings: dict) -> str:
        """The destination's address of this pair's IP version, from `docker inspect`'s first network."""
        network = next(iter(settings["NetworkSettings"]["Networks"].values()))
        return network["GlobalIPv6Address" if self.ipv6 else "IPAddress"]


@dataclass(frozen=True)
class Outcome:
    """What a scenario must end with: Established sessions per Calico host, and pairs that reach."""

    sessions: int
    pairs: tuple[Reach, ...]

    def measure(self, cluster: Cluster) -> tuple[Any, dict]:
        established = {host: cluster.bgp_established(host) for host in cluster.hosts}
        problems = [f"{host}: {count} BGP sessions Established, expected {self.sessions}"
                    for host, count in established.items() if count != self.sessions]
        measured = []
        for pair in self.pairs:
            source = seed.inspect(cluster, pair.source_host, pair.source)
            ip = pair.address(seed.inspect(cluster, pair.destination_host, pair.destination))
            probe = probe_from(source["State"]["Pid"], "icmp", ip, run=cluster.run_in(pair.source_host))
            measured.append({"pair": asdict(pair), "destination_ip": ip, "probe": asdict(probe)})
            if not probe.reachable or probe.ttl != pair.ttl:
                problems.append(f"{pair.source} -> {pair.destination}: expected replies with ttl {pair.ttl}, "
                                f"got {probe.received}/{probe.sent} with ttl {probe.ttl}")
        return self.table(established, measured), {"sessions": established, "pairs": measured, "mismatches": problems}

    def table(self, established: dict[str, int], measured: list[dict]):
        from rich.table import Table

        view = Table(title=f"outcome: BGP sessions Established per host (expected {self.sessions}) "
                           "and pings by address")
        for column in ("what", "expected", "measured"):
            view.add_column(column)
        for host, count in established.items():
            view.add_row(f"{host} sessions", str(self.sessions), str(count))
        for item in measured:
            pair, probe = item["pair"], item["probe"]
            view.add_row(f"{pair['source']} ({pair['source_host']}) -> "
                         f"{pair['destination']} ({pair['destination_host']}, {item['destination_ip']})",
                         f"ttl {pair['ttl']}",
                         f"{probe['received']}/{probe['sent']}, ttl {probe['ttl'] or '-'}")
        return view


def seed_outcome(cluster: Cluster) -> tuple[Any, dict]:
    addresses, pairs = seed.measure(cluster)
    return seed.table(pairs), seed.as_data(addresses, pairs)


@dataclass(frozen=True)
class Scenario:
    name: str  # the command: calisim NAME
    help: str
    topology: str
    transcript: str  # a file in transcripts/
    check: Callable[[Cluster], tuple[Any, dict]]
    options: dict[str, Any] = field(default_factory=dict)
    # The command of the step after which nothing the check measures changes (the steps after it
    # only read): the check runs alongside them, not after them.  None: after the last step.
    measure_from: str | None = None

    def text(self) -> str:
        return resources.files("calisim.scenarios").joinpath(f"transcripts/{self.transcript}").read_text()

    def load_topology(self):
        import topologies

        return topologies.load(self.topology, **self.options)


def dual_stack(pairs: tuple[Reach, ...]) -> tuple[Reach, ...]:
    """Each pair over IPv4, then each again over IPv6 with the same TTL (the same routers on the way)."""
    return pairs + tuple(replace(pair, ipv6=True) for pair in pairs)


def fabric_outcome(in_rack_ttl: int) -> Callable[[Cluster], tuple[Any, dict]]:
    """2x2 fabric, dual stack: two sessions per host (to its ToR, over IPv4 and over IPv6); across racks
    through ToR, spine, ToR (ttl 59), over IPv4 and over IPv6 alike."""
    pairs = (Reach("w1", "host1", "w2", "host2", in_rack_ttl), Reach("w1", "host1", "w3", "host3", 59),
             Reach("w3", "host3", "w1", "host1", 59))
    return Outcome(2, dual_stack(pairs)).measure


SCENARIOS = {scenario.name: scenario for scenario in (
    Scenario("two-host", "the seed walk-through on the seed's two hosts", "two_host", "two_host.txt", seed_outcome,
             measure_from="docker exec workload-A ping -c 1 -W 1 workload-E | grep -q 'ttl=62'"),
    Scenario("route-reflectors", "4 hosts, the mesh off, 2 route reflectors over IPv4 and IPv6 "
             "(flat --route-reflectors 2)", "flat", "route_reflectors.txt",
             Outcome(4, dual_stack((Reach("w1", "host1", "w2", "host2", 62), Reach("w1", "host1", "w4", "host4", 62),
                                    Reach("w3", "host3", "w4", "host4", 62)))).measure,
             {"hosts": 4, "route_reflectors": 2}),
    Scenario("fabric-as-per-rack", "a 2x2 leaf-spine fabric, one AS per rack (BIRD ToRs and spines)", "fabric",
             "fabric_as_per_rack.txt", fabric_outcome(62), {"model": "as-per-rack"}),
    Scenario("fabric-as-per-host", "a 2x2 leaf-spine fabric, one AS per host", "fabric",
             "fabric_as_per_host.txt", fabric_outcome(61), {"model": "as-per-host"}),
    Scenario("fabric-downward-default", "a 2x2 leaf-spine fabric, only a default route down", "fabric",
             "fabric_downward_default.txt", fabric_outcome(61), {"model": "downward-default"}),
    Scenario("cross-subnet", "IPIP cross-subnet: encapsulated only across the router (routed --hosts-per-subnet 2)",
             "routed", "cross_subnet.txt",
             Outcome(6, (Reach("w1", "host1", "w2", "host2", 62), Reach("w1", "host1", "w3", "host3", 62))).measure,
             {"hosts_per_subnet": 2}),
)}
