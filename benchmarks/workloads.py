"""Workload churn through the real docker CLI on the seed's cluster (IPIP pool 10.10.0.0/16):

* `docker run` on host2 until a workload on host1 can ping the new one (p50/p95): the time for
  IPAM, the plugins, Felix and BIRD (a new block: BGP) to make a workload reachable;
* the ICMP probe's RTT (kernel timestamps) beside busybox `ping -c 20`'s, on the same pair
  (host1's workload to one on host2), measured in one run; target: avg within 1.5x + 0.05 ms;
* `docker run -d` until the container is running (p50/p95, the CLI's wall time, checked
  against `docker inspect`);
* workloads created per second on one host, up to 200, in steps of 50, and the memory each idle
  container costs (PSS of its init and PID 1, summed over host1's containers); with --total 200
  or more, the time of the last 100 over the time of the first 100 (issue 14's target: 1.3x at 500).

    python benchmarks/workloads.py [--remote 20] [--total 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from calisim.probes import probe_from  # noqa: E402
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
    must(cluster.run("host2", f"docker run --net net1 --name {name} -tid busybox"))
    address = next(iter(inspect(cluster, "host2", name)["NetworkSettings"]["Networks"].values()))["IPAddress"]
    while not pings(source_pid, address):
        if time.monotonic() - started > timeout:
            raise ClusterError(f"{name} ({address}) not reachable after {timeout:.0f}s")
    return time.monotonic() - started


def rtt_beside_ping(cluster: Cluster, source_pid: int, address: str, count: int = 20) -> dict:
    """The probe's RTT and busybox ping's (inside the source container) on one pair, one after the other."""
    probe = probe_from(source_pid, "icmp", address, count=count)
    output = must(cluster.run("host1", f"docker exec source ping -c {count} {address}"))
    low, avg, high = map(float, re.search(r"min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms", output).groups())
    return {"probe": {"received": probe.received, "min": probe.rtt_min_ms, "avg": probe.rtt_avg_ms, "max": probe.rtt_max_ms},
            "ping": {"min": low, "avg": avg, "max": high},
            "within_target": avg / 1.5 - 0.05 <= probe.rtt_avg_ms <= 1.5 * avg + 0.05}


def time_to_running(cluster: Cluster, name: str) -> float:
    started = time.monotonic()
    must(cluster.run("host1", f"docker run -d --net net1 --name {name} workload"))
    seconds = time.monotonic() - started
    if not inspect(cluster, "host1", name)["State"]["Running"]:
        raise ClusterError(f"{name} is not running after `docker run -d` returned")
    return seconds


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def memory_per_container_kib(cluster: Cluster, names: list[str]) -> float:
    """PSS of each container's PID 1 and of its init (PID 1's parent, our runtime), averaged."""
    total = 0
    for name in names:
        pid = inspect(cluster, "host1", name)["State"]["Pid"]
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        total += pss_kib(pid) + pss_kib(parent)
    return total / len(names)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def plot(steps: list[dict], path: Path) -> None:
    """Seconds each 50 workloads took against how many the host already had."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [step["workloads"] for step in steps]
    seconds = [step["seconds"] for step in steps]
    per_step = [b - a for a, b in zip([0.0, *seconds], seconds)]
    figure, axis = plt.subplots(figsize=(7, 4.2))
    axis.bar(counts, per_step, width=-40, align="edge", color="tab:blue", label="seconds for these 50 (or fewer)")
    axis.set_xlabel("workloads on host1 after the step")
    axis.set_ylabel("seconds")
    axis.set_title("docker run -tid busybox, one host: creation time as workloads accumulate", fontsize=10)
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def last_over_first(steps: list[dict]) -> float | None:
    """How much slower the last 100 workloads were made than the first 100 (steps every 50)."""
    at = {step["workloads"]: step["seconds"] for step in steps}
    total = steps[-1]["workloads"]
    if total < 200 or 100 not in at or total - 100 not in at:
        return None
    return round((at[total] - at[total - 100]) / at[100], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remote", type=int, default=20, help="workloads timed to remote reachability")
    parser.add_argument("--total", type=int, default=200, help="workloads created on host1")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--png", type=Path, default=RESULTS.with_suffix(".png"))
    args = parser.parse_args()
    console = Console(width=150)
    load = round(os.getloadavg()[0], 2)
    with Cluster(topologies.load("two_host")) as cluster:
        for host in cluster.hosts:
            must(cluster.run(host, "calicoctl node run"))
        cluster.wait_for_mesh(30)
        must(cluster.run("host1", f"echo '{SEED_POOL}' | calicoctl create -f - && calicoctl delete ipPool 192.168.0.0/16"))
        must(cluster.run("host1", "docker network create --driver calico --ipam-driver calico-ipam net1"))
        must(cluster.run("host1", "docker run --net net1 --name source -tid busybox"))
        source = inspect(cluster, "host1", "source")["State"]["Pid"]
        with console.status(f"{args.remote} workloads on host2, each timed until host1 reaches it"):
            reach = [time_to_reachable(cluster, source, f"remote{i}") for i in range(args.remote)]
        remote = next(iter(inspect(cluster, "host2", "remote0")["NetworkSettings"]["Networks"].values()))["IPAddress"]
        with console.status("probe and ping -c 20 on host1's source -> host2's remote0"):
            rtt = rtt_beside_ping(cluster, source, remote)
        with console.status(f"{args.remote} x docker run -d workload on host1"):
            running = [time_to_running(cluster, f"daemon{i}") for i in range(args.remote)]
        steps = []
        started = time.monotonic()
        with console.status(f"creating {args.total} workloads on host1"):
            for index in range(args.total):
                must(cluster.run("host1", f"docker run --net net1 --name local{index} -tid busybox"))
                if (index + 1) % 50 == 0 or index + 1 == args.total:
                    steps.append({"workloads": index + 1, "seconds": round(time.monotonic() - started, 2)})
        interfaces = int(must(cluster.run("host1", "ip -o link | grep -c cali")))
        memory = memory_per_container_kib(cluster, [f"local{index}" for index in range(args.total)])
    result = {"rtt_ms": rtt,
              "run_d_to_running_s": {"count": len(running), "p50": round(statistics.median(running), 3),
                                     "p95": round(percentile(running, 0.95), 3)},
              "idle_container_pss_kib": round(memory),
              "remote_reachability_s": {"count": len(reach), "p50": round(statistics.median(reach), 3),
                                        "p95": round(percentile(reach, 0.95), 3), "max": round(max(reach), 3)},
              "creation": steps, "per_second": round(steps[-1]["workloads"] / steps[-1]["seconds"], 2),
              "last_100_over_first_100": last_over_first(steps),
              "load_average_1min_at_start": load,
              "host1_workload_interfaces": interfaces}
    table = Table(title="docker run through the real CLI, seed cluster (IPIP pool)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    reach_stats = result["remote_reachability_s"]
    table.add_row(f"docker run on host2 -> reachable from host1 ({len(reach)} runs)",
                  f"p50 {reach_stats['p50']} s, p95 {reach_stats['p95']} s, max {reach_stats['max']} s")
    table.add_row("ICMP RTT host1 -> host2, probe (kernel timestamps), ms",
                  "min {min} avg {avg} max {max}".format(**rtt["probe"]))
    table.add_row("ICMP RTT host1 -> host2, busybox ping -c 20, ms", "min {min} avg {avg} max {max}".format(**rtt["ping"]))
    table.add_row("probe avg within 1.5x + 0.05 ms of ping's", "yes" if rtt["within_target"] else "NO")
    table.add_row(f"docker run -d -> running ({len(running)} runs)",
                  "p50 {p50} s, p95 {p95} s".format(**result["run_d_to_running_s"]))
    table.add_row("memory per idle busybox container (PSS: init + PID 1)", f"{result['idle_container_pss_kib']} KiB")
    for step in steps:
        table.add_row(f"{step['workloads']} workloads created on host1", f"{step['seconds']} s")
    table.add_row("workloads created per second (one host)", str(result["per_second"]))
    table.add_row("time of the last 100 / time of the first 100", str(result["last_100_over_first_100"]))
    table.add_row("1-min load average at the start (a shared machine)", str(load))
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    plot(steps, args.png)
    console.print(f"written to {args.json} and {args.png}")
    if interfaces != args.total + args.remote + 1:
        raise SystemExit(f"host1 has {interfaces} workload interfaces, expected {args.total + args.remote + 1}")


if __name__ == "__main__":
    main()
