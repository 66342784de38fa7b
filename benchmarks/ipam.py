"""IPAM throughput on a real etcd: one client, then 1, 5 and 20 hosts allocating at once, each
host a separate process with its own etcd client (as calico-node agents are).

    python benchmarks/ipam.py [--single 1000] [--in-flight 1 4 16] [--per-host 200] [--hosts 1 5 20]
                              [--json PATH] [--png PATH]

One client is one process with one etcd connection and one IPAM, allocating for one host (the
libnetwork plugin of one host); "in flight" is how many callers it serves at once, each asking
for its next address only when it has the last one (the plugin serving that many `docker run`s
at once; 1: one request after another).  Each allocation is one `auto_assign(host, 1)`, the
plugin's per-container request; one single-client run names the pool, as the plugin does on a
network created with `--subnet`.  A last run has 20 hosts share a /24 (4 blocks), so most must
borrow from blocks that other hosts are writing: that is where compare-and-swap conflicts happen
and are retried.  Reported: allocations per second, etcd writes an allocation (revisions the run
added: a host's requests in flight together share one transaction), compare-and-swap conflicts
that were retried, and duplicates found across every host's addresses afterwards (must be 0),
each run with the load average.  One request after another, an allocation is one guarded etcd
transaction (a new block: one more request, to list which blocks exist), so the first row is
the floor a sequential client cannot beat: the same client committing bare guarded transactions
of a block's size, one after the other, on the same etcd.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from calisim.datastore import Datastore, Synchronous, Txn, local_etcd  # noqa: E402
from calisim.datastore.keys import BLOCKS  # noqa: E402
from calisim.ipam import IPAM, Block  # noqa: E402
from calisim.datastore.resources import IPPool  # noqa: E402
from report import label_axes, output_path  # noqa: E402

POOL = IPPool(ipaddress.ip_network("10.0.0.0/12"))
SMALL_POOL = IPPool(ipaddress.ip_network("10.0.0.0/24"))  # 4 blocks for 20 hosts: most must borrow
RESULTS = Path(__file__).parent / "results" / "ipam.json"
ETCD_MEMORY = "/dev/shm"  # etcd's data on a tmpfs, as a lab keeps it (calisim.emulation.etcd_cluster)


def host_process(endpoint: str, host: str, count: int, named_pool: str | None, in_flight: int, start, out) -> None:
    """Connect, wait at the start barrier, allocate count addresses one at a time for each of
    in_flight callers at once (count split between them); report (addresses, conflicts, seconds)."""
    async def work():
        ds = Datastore(endpoint)
        ipam = IPAM(ds)
        await ds.get("/calico/v1/Ready")  # connect before the clock starts
        start.wait()
        began = time.monotonic()
        pools = [ipaddress.ip_network(named_pool)] if named_pool else None

        async def caller(share: int) -> list[str]:
            return [str(a) for _ in range(share) for a in await ipam.auto_assign(host, 1, pools)]
        shares = [count // in_flight + (index < count % in_flight) for index in range(in_flight)]
        addresses = [a for got in await asyncio.gather(*map(caller, shares)) for a in got]
        seconds = time.monotonic() - began
        await ds.close()
        return addresses, ipam.conflicts, seconds
    out.put(asyncio.run(work()))


def etcd_floor(endpoint: str, count: int) -> dict:
    """count guarded transactions, one after another, each writing a block-sized value: what one
    allocation costs at least."""
    value = Block.new(POOL.cidr, "floor").to_value()

    async def commit_all() -> float:
        ds = Datastore(endpoint)
        try:
            revision = await ds.commit_revision(Txn().put("/floor", value))
            began = time.monotonic()
            for _ in range(count):
                revision = await ds.commit_revision(Txn().require_revision("/floor", revision).put("/floor", value))
            return time.monotonic() - began
        finally:
            await ds.close()
    seconds = asyncio.run(commit_all())
    return {"label": "etcd floor: bare transactions", "hosts": 1, "in_flight": 1, "allocations": count,
            "seconds": round(seconds, 3), "per_second": round(count / seconds, 1), "writes_per_allocation": 1.0,
            "conflicts_retried": 0, "duplicates": 0, "datastore_matches": True, "loadavg": load_average()}


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def current_revision(endpoint: str) -> int:
    with Synchronous(Datastore(endpoint)) as ds:
        return ds.read_at([], ["/"])[1]


def run_hosts(endpoint: str, hosts: int, per_host: int, pool: IPPool = POOL, named: bool = False,
              in_flight: int = 1) -> dict:
    with Synchronous(Datastore(endpoint)) as ds:
        ds.delete_prefix("/calico/")
        ds.put(pool.primary_key, pool.to_value())
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(hosts + 1), context.Queue()  # everyone connected, then the clock starts
    named_pool = str(pool.cidr) if named else None
    workers = [context.Process(target=host_process,
                               args=(endpoint, f"host{i}", per_host, named_pool, in_flight, start, out))
               for i in range(hosts)]
    revision = current_revision(endpoint)
    for worker in workers:
        worker.start()
    start.wait(timeout=120)
    began = time.monotonic()
    results = [out.get(timeout=600) for _ in workers]
    wall = time.monotonic() - began
    for worker in workers:
        worker.join()
    writes = current_revision(endpoint) - revision
    addresses = [a for result in results for a in result[0]]
    with Synchronous(Datastore(endpoint)) as ds:
        stored = {str(Block.from_value(e.value).ip(o)) for e in ds.list(BLOCKS)
                  for o, a in enumerate(Block.from_value(e.value).allocations) if a is not None}
    return {"hosts": hosts, "in_flight": in_flight, "allocations": len(addresses), "seconds": round(wall, 3),
            "per_second": round(len(addresses) / wall, 1), "writes_per_allocation": round(writes / len(addresses), 3),
            "conflicts_retried": sum(r[1] for r in results),
            "duplicates": len(addresses) - len(set(addresses)), "datastore_matches": stored == set(addresses),
            "loadavg": load_average()}


def measure(endpoint: str, args: argparse.Namespace, console: Console) -> list[dict]:
    """The floor, one client at each number in flight (and naming the pool), the hosts one request
    after another, the most hosts again with requests in flight, 20 hosts contending for a /24."""
    rows = [etcd_floor(endpoint, args.single)]
    most = max(args.in_flight)
    for in_flight in args.in_flight:
        rows.append(dict(run_hosts(endpoint, 1, args.single, in_flight=in_flight),
                         label=f"one client, {in_flight} in flight"))
    for in_flight in sorted({1, most}):
        rows.append(dict(run_hosts(endpoint, 1, args.single, named=True, in_flight=in_flight),
                         label=f"one client, --subnet pool, {in_flight} in flight"))
    runs = [(hosts, 1) for hosts in args.hosts] + [(max(args.hosts), n) for n in args.in_flight if n > 1]
    for hosts, in_flight in runs:
        with console.status(f"{hosts} concurrent hosts, {in_flight} in flight each"):
            rows.append(dict(run_hosts(endpoint, hosts, args.per_host, in_flight=in_flight),
                             label=f"{hosts} host{'s' * (hosts > 1)}, {in_flight} in flight each"))
    with console.status("20 hosts contending for a /24"):
        rows.append(dict(run_hosts(endpoint, 20, 12, SMALL_POOL), label="20 hosts, one /24, 1 in flight each"))
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Allocations/s a run, beside the etcd floor and the targets (one client 1500/s, 20 hosts 3000/s)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    labels = [f"{row['label']} (load {row['loadavg']})" for row in rows][::-1]
    axis.barh(labels, [row["per_second"] for row in rows][::-1], color="tab:blue")
    axis.axvline(rows[0]["per_second"], color="grey", linestyle=":", label="etcd floor, one request after another")
    axis.axvline(1500, color="tab:orange", linestyle="--", label="target: one client")
    axis.axvline(3000, color="tab:red", linestyle="--", label="target: 20 hosts")
    axis.tick_params(axis="y", labelsize=8)
    label_axes(axis, "allocations per second", None, "IPAM auto_assign(host, 1) on one etcd, 0 duplicates in every run",
               loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-host", type=int, default=200, help="allocations a host in the hosts' runs")
    parser.add_argument("--single", type=int, default=2000, help="allocations of each single-client run")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 4, 16],
                        help="callers a client serves at once, each waiting for its address before the next")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")))
    args = parser.parse_args()
    if min(args.in_flight + args.hosts) < 1:
        parser.error("--in-flight and --hosts must be at least 1")
    console = Console(width=190)
    with tempfile.TemporaryDirectory(prefix="cs-ipam-", dir=ETCD_MEMORY) as directory, \
            local_etcd(Path(directory)) as endpoint:
        rows = measure(endpoint, args, console)
    table = Table(title="IPAM auto_assign(host, 1) on etcd (one client: one process, one etcd connection, one host)")
    for column in ("run", "allocations", "seconds", "per second", "ratio to floor", "etcd writes / allocation",
                   "conflicts retried", "duplicates", "datastore = clients", "load"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["label"], str(row["allocations"]), str(row["seconds"]), str(row["per_second"]),
                      f"{row['per_second'] / rows[0]['per_second']:.2f}", str(row["writes_per_allocation"]),
                      str(row["conflicts_retried"]), str(row["duplicates"]), str(row["datastore_matches"]),
                      row["loadavg"])
    console.print(table)
    args.json.write_text(json.dumps(rows, indent=2))
    plot(rows, args.png)
    console.print(f"written to {args.json} and {args.png}")
    if any(row["duplicates"] or not row["datastore_matches"] for row in rows):
        sys.exit("duplicate allocations or a datastore that disagrees with the clients")


if __name__ == "__main__":
    main()
