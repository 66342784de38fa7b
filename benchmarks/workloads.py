"""Workload churn through the real docker CLI on the seed's cluster (IPIP pool 10.10.0.0/16):

* `docker run` on host2 until a workload on host1 can ping the new one (p50/p95): the time for
  IPAM, the plugins, Felix and BIRD (a new block: BGP) to make a workload reachable;
* workloads created per second on one host, up to 200, in steps of 50.

    python benchmarks/workloads.py [--remote 20] [--total 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from calisim.emulation import Cluster, ClusterError  # noqa: E402
from calisim.scenarios.seed import inspect  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "workloads.json"
SEED_POOL = ('{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, '
             'spec: {ipip: {enabled: true}, nat-outgoing: true}}')


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def pings(source_pid: int, address: str) -> bool:
    return subprocess.run(["nsenter", "-t", str(source_pid), "-n", "--", "ping", "-c", "1", "-W", "0.2", address],
                          capture_output=True).returncode == 0


def time_to_reachable(cluster: Cluster, source_pid: int, name: str, timeout: float = 60.0) -> float:
    started = time.monotonic()
    must(cluster.run("host2", f"docker run --net net1 --name {name} -d busybox"))
    address = next(iter(inspect(cluster, "host2", name)["NetworkSettings"]["Networks"].values()))["IPAddress"]
    while not pings(source_pid, address):
        if time.monotonic() - started > timeout:
            raise ClusterError(f"{name} ({address}) not reachable after {timeout:.0f}s")
    return time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remote", type=int, default=20, help="workloads timed to remote reachability")
    parser.add_argument("--total", type=int, default=200, help="workloads created on host1")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console(width=150)
    with Cluster(topologies.load("two_host")) as cluster:
        for host in cluster.hosts:
            must(cluster.run(host, "calicoctl node run"))
        cluster.wait_for_mesh(30)
        must(cluster.run("host1", f"echo '{SEED_POOL}' | calicoctl create -f - && calicoctl delete ipPool 192.168.0.0/16"))
        must(cluster.run("host1", "docker network create --driver calico --ipam-driver calico-ipam net1"))
        must(cluster.run("host1", "docker run --net net1 --name source -d busybox"))
        source = inspect(cluster, "host1", "source")["State"]["Pid"]
        with console.status(f"{args.remote} workloads on host2, each timed until host1 reaches it"):
            reach = [time_to_reachable(cluster, source, f"remote{i}") for i in range(args.remote)]
        steps = []
        started = time.monotonic()
        with console.status(f"creating {args.total} workloads on host1"):
            for index in range(args.total):
                must(cluster.run("host1", f"docker run --net net1 --name local{index} -d busybox"))
                if (index + 1) % 50 == 0 or index + 1 == args.total:
                    steps.append({"workloads": index + 1, "seconds": round(time.monotonic() - started, 2)})
        interfaces = int(must(cluster.run("host1", "ip -o link | grep -c cali")))
    result = {"remote_reachability_s": {"count": len(reach), "p50": round(statistics.median(reach), 3),
                                        "p95": round(percentile(reach, 0.95), 3), "max": round(max(reach), 3)},
              "creation": steps, "per_second": round(steps[-1]["workloads"] / steps[-1]["seconds"], 2),
              "host1_workload_interfaces": interfaces}
    table = Table(title="docker run through the real CLI, seed cluster (IPIP pool)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    reach_stats = result["remote_reachability_s"]
    table.add_row(f"docker run on host2 -> reachable from host1 ({len(reach)} runs)",
                  f"p50 {reach_stats['p50']} s, p95 {reach_stats['p95']} s, max {reach_stats['max']} s")
    for step in steps:
        table.add_row(f"{step['workloads']} workloads created on host1", f"{step['seconds']} s")
    table.add_row("workloads created per second (one host)", str(result["per_second"]))
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    console.print(f"written to {args.json}")
    if interfaces != args.total + 1:
        raise SystemExit(f"host1 has {interfaces} workload interfaces, expected {args.total + 1}")


if __name__ == "__main__":
    main()
