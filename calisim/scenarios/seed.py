"""The seed walk-through's outcome, measured: after the bundled transcript has run, probe the
seed's pairs from inside workload-A with scapy and check everything the seed shows."""

from __future__ import annotations

import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..probes import ProbeResult, batch_from

if TYPE_CHECKING:
    from ..emulation.cluster import Cluster

POOL = ipaddress.ip_network("10.10.0.0/16")
WORKLOADS = {"workload-A": ("host1", "net1"), "workload-B": ("host1", "net2"), "workload-C": ("host1", "net1"),
             "workload-D": ("host2", "net2"), "workload-E": ("host2", "net1")}
PAIRS = [("workload-A", "workload-C"), ("workload-A", "workload-E"),
         ("workload-A", "workload-B"), ("workload-A", "workload-D")]


@dataclass(frozen=True)
class PairResult:
    source: str
    destination: str
    destination_ip: str
    same_host: bool
    same_network: bool
    probe: ProbeResult


def inspect(cluster: Cluster, host: str, name: str) -> dict:
    done = cluster.run(host, f"docker inspect {name}")
    if done.rc != 0:
        raise RuntimeError(f"docker inspect {name} on {host}: {done.stderr.strip()}")
    return json.loads(done.stdout)[0]


def measure(cluster: Cluster) -> tuple[dict[str, str], list[PairResult]]:
    """The workloads' addresses and an ICMP probe (by address) for each of the seed's pairs: the
    inspections at once, then the probes at once, one process in each source workload for all
    of its pairs (each probe waits mostly for echoes, or their timeouts)."""
    with ThreadPoolExecutor(max_workers=len(WORKLOADS)) as pool:
        details = dict(zip(WORKLOADS, pool.map(lambda name: inspect(cluster, WORKLOADS[name][0], name), WORKLOADS)))
        addresses = {name: next(iter(d["NetworkSettings"]["Networks"].values()))["IPAddress"]
                     for name, d in details.items()}
        sources = sorted({source for source, _ in PAIRS})
        measured = pool.map(lambda source: batch_from(details[source]["State"]["Pid"],
                                                      [("icmp", addresses[d]) for s, d in PAIRS if s == source]),
                            sources)
        probes = {source: iter(results) for source, results in zip(sources, measured)}
        results = [PairResult(source, destination, addresses[destination],
                              WORKLOADS[source][0] == WORKLOADS[destination][0],
                              WORKLOADS[source][1] == WORKLOADS[destination][1], next(probes[source]))
                   for source, destination in PAIRS]
    return addresses, results


def mismatches(addresses: dict[str, str], pairs: list[PairResult]) -> list[str]:
    """What differs from the seed (empty when everything matches)."""
    problems = []
    blocks = {name: ipaddress.ip_network(f"{ip}/26", strict=False) for name, ip in addresses.items()}
    if not all(ipaddress.ip_address(ip) in POOL for ip in addresses.values()):
        problems.append(f"not every workload is in {POOL}: {addresses}")
    if not blocks["workload-A"] == blocks["workload-B"] == blocks["workload-C"]:
        problems.append("workloads A, B, C are not in one /26 of host1")
    if not blocks["workload-D"] == blocks["workload-E"] != blocks["workload-A"]:
        problems.append("workloads D, E are not in one /26 of host2")
    expected_ttl = {("workload-A", "workload-C"): 63, ("workload-A", "workload-E"): 62}
    for pair in pairs:
        ttl = expected_ttl.get((pair.source, pair.destination))
        if ttl is not None and (not pair.probe.reachable or pair.probe.ttl != ttl):
            problems.append(f"{pair.source} -> {pair.destination}: expected replies with ttl {ttl}, "
                            f"got {pair.probe.received}/{pair.probe.sent} with ttl {pair.probe.ttl}")
        if not pair.same_network and pair.probe.reachable:  # the networks' profiles isolate them by address too
            problems.append(f"{pair.source} -> {pair.destination}: another network answered by address "
                            f"({pair.probe.received}/{pair.probe.sent})")
    return problems


def as_data(addresses: dict[str, str], pairs: list[PairResult]) -> dict:
    return {"addresses": addresses, "pairs": [asdict(p) for p in pairs], "mismatches": mismatches(addresses, pairs)}


def table(pairs: list[PairResult]):
    from rich.table import Table

    view = Table(title="the seed's pings, measured with scapy from inside workload-A (by address)")
    for column in ("pair", "same host?", "same network?", "received", "TTL", "RTT ms min/avg/max"):
        view.add_column(column)
    for pair in pairs:
        p = pair.probe
        rtt = f"{p.rtt_min_ms}/{p.rtt_avg_ms}/{p.rtt_max_ms}" if p.reachable else "-"
        view.add_row(f"{pair.source} -> {pair.destination} ({pair.destination_ip})", "yes" if pair.same_host else "no",
                     "yes" if pair.same_network else "no", f"{p.received}/{p.sent}", str(p.ttl or "-"), rtt)
    return view
