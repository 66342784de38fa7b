"""BGP designs compared on the flat topology: the full node-to-node mesh against 2 route
reflectors, IPv4 only and dual stack, at several host counts in one run.

    python benchmarks/bgp.py [--hosts 25 50 100] [--designs mesh rr rr6] [--json PATH] [--png PATH]

For each design and host count: one pool, one block claimed per host through IPAM before any
node starts (so every host has a block to advertise), for the reflectors the mesh off, a global
bgpPeer per reflector and `routereflector run` on rr1/rr2 first; then `calicoctl node run` on
every host (as many at a time as `Cluster.start_nodes`).  Dual stack (rr6): an IPv6 pool and an
IPv6 block per host too, the reflectors run with --ip6 and a global bgpPeer at each one's IPv6
address, the nodes with --ip6 (every session twice).  Measured: BGP sessions Established (total,
and per host), the time from the end of the last `node run` until every host's kernel has a route
to every other host's blocks (read from /proc/PID/net/route and ipv6_route), and, at that moment,
the PSS of every BIRD and of every process of the run (etcd, calico-node agents, BIRDs, shells; no
dockerd).  Writes a table, JSON and a PNG.
"""

from __future__ import annotations

import ipaddress
import os
import statistics
import time
from collections import deque
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402

import topologies  # noqa: E402
from bringup import total_pss_kib  # noqa: E402  (benchmarks/ is this script's directory)
from report import designs_parser, write_runs  # noqa: E402
from calisim.datastore import keys  # noqa: E402
from calisim.datastore.resources import BGPPeer, IPPool  # noqa: E402
from calisim.emulation import Cluster, wait_until  # noqa: E402
from calisim.emulation.cluster import NODE_RUN_PARALLEL  # noqa: E402
from calisim.ipam import IPAM  # noqa: E402
from topologies.flat import reflector_ip, reflector_ip6  # noqa: E402

RESULTS = Path(__file__).parent / "results"
POOL = ipaddress.ip_network("10.64.0.0/12")  # room for 16384 /26 blocks, outside the hosts' 172.16.0.0/16
POOL6 = ipaddress.ip_network("fd00:10:64::/64")  # outside the hosts' fd00:172:16::/64
DESIGNS = ("mesh", "2 route reflectors", "2 route reflectors, dual stack")
DESIGN_NAMES = {"mesh": DESIGNS[0], "rr": DESIGNS[1], "rr6": DESIGNS[2]}  # --designs
BLOCK_MASK = "C0FFFFFF"  # a /26 as /proc/net/route writes it (hex, the kernel's byte order: little-endian here)
BLOCK6_PREFIX = "7a"  # a /122 as /proc/net/ipv6_route writes it


def claim_blocks(cluster: Cluster, hosts: list[str], ipv6: bool) -> dict[str, set[str]]:
    """One address (hence one affine /26, and with ipv6 one /122) per host, before its node starts;
    returns host -> its blocks."""
    pools = [POOL, POOL6] if ipv6 else [POOL]
    blocks: dict[str, set[str]] = {host: set() for host in hosts}
    with cluster.datastore() as ds:
        ipam = ds.wrap(IPAM(ds.target))
        for cidr in pools:
            pool = IPPool(cidr)
            ds.put(pool.primary_key, pool.to_value())
            for host in hosts:
                ip = ipam.auto_assign(host, 1, version=cidr.version)[0]
                blocks[host].add(str(ipaddress.ip_network(f"{ip}/{26 if cidr.version == 4 else 122}", strict=False)))
    return blocks


def configure_reflectors(cluster: Cluster, count: int, ipv6: bool) -> None:
    """Calico's route reflector set-up, before the nodes start: mesh off, global peers, reflectors running."""
    addresses = [(reflector_ip(i), reflector_ip6(i) if ipv6 else None) for i in range(1, count + 1)]
    with cluster.datastore() as ds:
        ds.put(keys.NODE_MESH, {"enabled": False})
        for ip in (ip for pair in addresses for ip in pair if ip):
            for key, value in BGPPeer("global", ipaddress.ip_address(ip), keys.DEFAULT_AS).writes().items():
                ds.put(key, value)
    for index, (ip, ip6) in enumerate(addresses, start=1):
        result = cluster.run(f"rr{index}", f"routereflector run --ip {ip}" + (f" --ip6 {ip6}" if ip6 else ""))
        if result.rc != 0:
            raise RuntimeError(f"routereflector run on rr{index}: {result.stdout}{result.stderr}")


def kernel_blocks(cluster: Cluster, host: str, ipv6: bool) -> set[str]:
    """The /26 (and with ipv6 the /122) routes in host's main table, from /proc/PID/net/route and
    ipv6_route (the tables of that process's network namespace): no netlink socket to open in the
    host, which pyroute2 does by forking this process (~30 ms a host: the last poll, reading every
    host once routes are everywhere, took ~10 s at 300 hosts).  Here only BIRD installs such routes
    (no workloads, no VXLAN)."""
    net = Path(f"/proc/{cluster.host(host).pid}/net")
    blocks = set()
    for line in (net / "route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[7] == BLOCK_MASK:
            blocks.add(f"{ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])}/26")
    for line in (net / "ipv6_route").read_text().splitlines() if ipv6 else []:
        fields = line.split()  # destination, its prefix length (hex), source, ..., device
        if fields[1] == BLOCK6_PREFIX:
            blocks.add(f"{ipaddress.IPv6Address(bytes.fromhex(fields[0]))}/122")
    return blocks


def everyone_routes(cluster: Cluster, blocks: dict[str, set[str]], pending: deque[str], ipv6: bool) -> bool:
    """Drop from the front of pending the hosts whose kernel routes to every other host's block,
    up to the first that does not yet; True when none is left.  While BGP converges routes only
    come, so a host that routes everywhere stays so: a poll reads one host's routes while the
    others catch up, where reading every pending host's (300 netlink dumps of 300 routes every
    0.5 s) took a core from the convergence it measured."""
    wanted = set().union(*blocks.values())
    while pending and wanted - blocks[pending[0]] <= kernel_blocks(cluster, pending[0], ipv6):
        pending.popleft()
    return not pending


def measure(design: str, hosts: int) -> dict:
    reflectors = 2 if design != "mesh" else 0
    ipv6 = design == DESIGN_NAMES["rr6"]
    with Cluster(topologies.load("flat", hosts, route_reflectors=reflectors), docker=False) as cluster:
        names = cluster.hosts
        blocks = claim_blocks(cluster, names, ipv6)
        if reflectors:
            configure_reflectors(cluster, reflectors, ipv6)
        load = os.getloadavg()[0]
        started = time.monotonic()
        results = cluster.run_everywhere("calicoctl node run" + (" --ip6 autodetect" if ipv6 else ""), timeout=600,
                                         parallel=NODE_RUN_PARALLEL)
        failed = [r for r in results if r.rc != 0]
        if failed:
            raise RuntimeError(f"node run failed on {failed[0].host}: {failed[0].stdout}{failed[0].stderr}")
        last_node_run = time.monotonic()
        pending = deque(names)
        wait_until(lambda: everyone_routes(cluster, blocks, pending, ipv6), 900, interval=0.5,
                   what=f"every host routing to every block ({len(pending)} hosts left)")
        converged = time.monotonic()
        bird_kib, total_kib = total_pss_kib(frozenset({"bird"})), total_pss_kib()
        per_host = [cluster.bgp_established(host) for host in names]
        on_reflectors = sum(cluster.bgp_established(f"rr{i}") for i in range(1, reflectors + 1))
    return {"design": design, "hosts": hosts, "sessions_total": (sum(per_host) + on_reflectors) // 2,
            "sessions_per_host_min": min(per_host), "sessions_per_host_max": max(per_host),
            "node_run_s": round(last_node_run - started, 2),
            "one_node_run_s_median": round(statistics.median(r.seconds for r in results), 2),
            "one_node_run_s_max": round(max(r.seconds for r in results), 2),
            "routes_everywhere_s": round(converged - last_node_run, 2),
            "start_to_routes_s": round(converged - started, 2), "load_average_1min_at_start": round(load, 2),
            "bird_pss_mib": round(bird_kib / 1024, 1), "total_pss_mib": round(total_kib / 1024, 1)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from report import label_axes

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (("start_to_routes_s", "seconds from the first node run\nuntil every host routes to every block"),
              ("sessions_total", "BGP sessions in total"), ("total_pss_mib", "memory at convergence, MiB (PSS)"))
    for axis, (key, title) in zip(axes, panels):
        for design, marker, color in zip(DESIGNS, ("o", "s", "^"), ("tab:blue", "tab:orange", "tab:green")):
            mine = [row for row in rows if row["design"] == design]
            if not mine:
                continue  # a design not measured (--designs) has no line and no legend entry
            axis.plot([row["hosts"] for row in mine], [row[key] for row in mine], marker=marker, color=color,
                      label=design)
            if key == "total_pss_mib":
                axis.plot([row["hosts"] for row in mine], [row["bird_pss_mib"] for row in mine], marker=marker,
                          color=color, linestyle="--", label=f"{design}: BIRDs only")
        label_axes(axis, "Calico hosts", None, title)
    figure.suptitle("calisim, flat topology: node-to-node mesh vs 2 route reflectors, IPv4 and dual stack "
                    "(one run, shared 2-core machine)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    args = designs_parser(__doc__, list(DESIGN_NAMES), RESULTS / "bgp").parse_args()
    console = Console(width=160)
    rows = []
    for count in args.hosts:
        for design in (DESIGN_NAMES[name] for name in args.designs):
            with console.status(f"{design}, {count} hosts"):
                rows.append(measure(design, count))
            console.print(rows[-1])
    columns = ("design", "hosts", "sessions_total", "sessions_per_host_min", "sessions_per_host_max",
               "node_run_s", "routes_everywhere_s", "start_to_routes_s", "bird_pss_mib", "total_pss_mib",
               "load_average_1min_at_start")
    write_runs(console, "flat topology: node-to-node mesh vs 2 route reflectors (IPv4, dual stack)", columns, rows,
               args.json, args.png, plot)


if __name__ == "__main__":
    main()
