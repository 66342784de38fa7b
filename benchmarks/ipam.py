"""IPAM throughput on a real etcd: one client, then 1, 5 and 20 hosts allocating at once, each
host a separate process with its own etcd client (as calico-node agents are).

    python benchmarks/ipam.py [--per-host 200] [--hosts 1 5 20] [--json PATH]

Each allocation is one `auto_assign(host, 1)`: the per-container request of the libnetwork
plugin; the second single-client run names the pool, as the plugin does on a network created
with `--subnet`.  A last run has 20 hosts share a /24 (4 blocks), so most must borrow from blocks that
other hosts are writing: that is where compare-and-swap conflicts happen and are retried.
Reported: allocations per second, compare-and-swap conflicts that were retried, and duplicates
found across every host's addresses afterwards (must be 0), each run with the load average.
A host's allocation is one guarded etcd transaction (a new block: one more request, to list which
blocks exist), so the first row is the floor a sequential client cannot beat: the same client
committing bare guarded transactions of a block's size, one after the other, on the same etcd.
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
from report import output_path  # noqa: E402

POOL = IPPool(ipaddress.ip_network("10.0.0.0/12"))
SMALL_POOL = IPPool(ipaddress.ip_network("10.0.0.0/24"))  # 4 blocks for 20 hosts: most must borrow
RESULTS = Path(__file__).parent / "results" / "ipam.json"


def host_process(endpoint: str, host: str, count: int, named_pool: str | None, start, out) -> None:
    """Connect, wait at the start barrier, allocate count addresses one at a time; report
    (addresses, conflicts, seconds)."""
    async def work():
        ds = Datastore(endpoint)
        ipam = IPAM(ds)
        await ds.get("/calico/v1/Ready")  # connect before the clock starts
        start.wait()
        began = time.monotonic()
        pools = [ipaddress.ip_network(named_pool)] if named_pool else None
        addresses = [str(a) for _ in range(count) for a in await ipam.auto_assign(host, 1, pools)]
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
    return {"label": "etcd floor", "hosts": 1, "allocations": count, "seconds": round(seconds, 3),
            "per_second": round(count / seconds, 1), "conflicts_retried": 0, "duplicates": 0,
            "datastore_matches": True, "loadavg": load_average()}


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_hosts(endpoint: str, hosts: int, per_host: int, pool: IPPool = POOL, named: bool = False) -> dict:
    with Synchronous(Datastore(endpoint)) as ds:
        ds.delete_prefix("/calico/")
        ds.put(pool.primary_key, pool.to_value())
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(hosts + 1), context.Queue()  # everyone connected, then the clock starts
    named_pool = str(pool.cidr) if named else None
    workers = [context.Process(target=host_process, args=(endpoint, f"host{i}", per_host, named_pool, start, out))
               for i in range(hosts)]
    for worker in workers:
        worker.start()
    start.wait(timeout=120)
    began = time.monotonic()
    results = [out.get(timeout=600) for _ in workers]
    wall = time.monotonic() - began
    for worker in workers:
        worker.join()
    addresses = [a for result in results for a in result[0]]
    with Synchronous(Datastore(endpoint)) as ds:
        stored = {str(Block.from_value(e.value).ip(o)) for e in ds.list(BLOCKS)
                  for o, a in enumerate(Block.from_value(e.value).allocations) if a is not None}
    return {"hosts": hosts, "allocations": len(addresses), "seconds": round(wall, 3),
            "per_second": round(len(addresses) / wall, 1), "conflicts_retried": sum(r[1] for r in results),
            "duplicates": len(addresses) - len(set(addresses)), "datastore_matches": stored == set(addresses),
            "loadavg": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-host", type=int, default=200)
    parser.add_argument("--single", type=int, default=1000, help="allocations of the single-client run")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    args = parser.parse_args()
    console = Console(width=150)
    with tempfile.TemporaryDirectory(prefix="cs-ipam-") as directory, local_etcd(Path(directory)) as endpoint:
        rows = [etcd_floor(endpoint, args.single), dict(run_hosts(endpoint, 1, args.single), label="single client"),
                dict(run_hosts(endpoint, 1, args.single, named=True), label="single client, --subnet pool")]
        for hosts in args.hosts:
            with console.status(f"{hosts} concurrent hosts"):
                rows.append(dict(run_hosts(endpoint, hosts, args.per_host), label=f"{hosts} hosts"))
        with console.status("20 hosts contending for a /24"):
            rows.append(dict(run_hosts(endpoint, 20, 12, SMALL_POOL), label="20 hosts, one /24"))
    table = Table(title="IPAM auto_assign(host, 1) on etcd")
    for column in ("run", "allocations", "seconds", "per second", "ratio to 1 host", "conflicts retried",
                   "duplicates", "datastore = clients", "load"):
        table.add_column(column, justify="right")
    one_host = (next(r["per_second"] for r in rows if r["label"] == "1 hosts") if 1 in args.hosts
                else rows[1]["per_second"])
    for row in rows:
        table.add_row(row["label"], str(row["allocations"]), str(row["seconds"]), str(row["per_second"]),
                      f"{row['per_second'] / one_host:.2f}", str(row["conflicts_retried"]), str(row["duplicates"]),
                      str(row["datastore_matches"]), row["loadavg"])
    console.print(table)
    args.json.write_text(json.dumps(rows, indent=2))
    console.print(f"written to {args.json}")
    if any(row["duplicates"] or not row["datastore_matches"] for row in rows):
        sys.exit("duplicate allocations or a datastore that disagrees with the clients")


if __name__ == "__main__":
    main()
