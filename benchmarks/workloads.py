"""Workload churn through the real docker CLI on the seed's cluster (IPIP pool 10.10.0.0/16):

* `docker run` on host2 until a workload on host1 can ping the new one (p50/p95): the time for
  IPAM, the plugins, Felix and BIRD (a new block: BGP) to make a workload reachable;
* the ICMP probe's RTT (kernel timestamps) beside busybox `ping -c 20`'s, on the same pair
  (host1's workload to one on host2), measured in one run; target: avg within 1.5x + 0.05 ms;
* `docker run -d` until the container is running (p50/p95, the CLI's wall time, checked
  against `docker inspect`), on the Calico network and on a user-defined bridge network;
* workloads created per second on one host, up to 200, in steps of 50, and the memory each idle
  container costs (PSS of its init and PID 1, summed over host1's containers); with --total 200
  or more, the time of the last 100 over the time of the first 100 (issue 14's target: 1.3x at 500).

With --hosts N, a different run (issue 14's "1000 workloads over 10 hosts, each reachable from
another host"): a flat cluster of N hosts (full mesh, the same IPIP pool), --total workloads
spread evenly over them, created through each host's own dockerd, one at a time a host and
--parallel at once in all (benchmarks/creation.py), by the docker SDK (--client sdk) or the CLI;
the creation's CPU a workload by kind of process (benchmarks/cpu.py); then, per host (--parallel
hosts at a time), one `docker exec` in a workload of the next host (hostI+1, the last host's in
host1's) pings every workload of the host at once (busybox ping, one echo each), those that did
not answer again until --reach-timeout; every workload is counted.  Reported: the creation's wall
time and each host's curve, the time from the last `docker run` to every workload answering,
the run's memory (PSS of every process) and each idle container's; JSON and PNG default to
results/workloads-wide.*.

    python benchmarks/workloads.py [--remote 20] [--total 200] [--json PATH]
    python benchmarks/workloads.py --hosts 10 --total 1000 [--reach-timeout 120]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from calisim.emulation import sandbox

if __name__ == "__main__":  # imported (by the unit tests of its pure helpers), it only defines them
    sandbox.enter()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from cpu import cpu_by_kind, per_item_ms  # noqa: E402  (benchmarks/ is this directory)
from creation import cli_run, create_all, sdk_run  # noqa: E402
from calisim.emulation import Cluster, ClusterError  # noqa: E402
from calisim.emulation.state import engine_get  # noqa: E402
from calisim.probes import probe_from  # noqa: E402
from calisim.scenarios.seed import inspect  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "workloads.json"
WIDE_RESULTS = RESULTS.with_name("workloads-wide.json")
SEED_POOL = ('{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, '
             'spec: {ipip: {enabled: true}, nat-outgoing: true}}')


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def seed_pool_and_network(cluster: Cluster) -> None:
    """The seed's IPIP pool in place of the default one, and net1 on it."""
    must(cluster.run("host1", f"echo '{SEED_POOL}' | calicoctl create -f - && calicoctl delete ipPool 192.168.0.0/16"))
    must(cluster.run("host1", "docker network create --driver calico --ipam-driver calico-ipam net1"))


def first_reply(source_pid: int, address: str, timeout: float) -> bool:
    """iputils ping in the source's network namespace, an echo every 2 ms until the first reply (or
    timeout): the moment address becomes reachable, to 2 ms (one echo with a 0.2 s wait, retried,
    added up to 0.2 s to any workload whose first echo went unanswered)."""
    return subprocess.run(["nsenter", "-t", str(source_pid), "-n", "--", "ping", "-c", "1", "-i", "0.002",
                           "-w", str(max(1, round(timeout))), address], capture_output=True).returncode == 0


def address_of(cluster: Cluster, host: str, name: str) -> str:
    """The container's address as its dockerd has it (`GET /containers/NAME/json`, what `docker
    inspect` asks): the benchmark's own lookup, so it is asked directly rather than through the
    host's shell and a docker CLI's start-up, which were 15-40 ms of every figure."""
    container = engine_get(cluster, host, f"/containers/{name}/json")
    if container is None:
        raise ClusterError(f"{host}'s dockerd did not answer GET /containers/{name}/json")
    return next(iter(container["NetworkSettings"]["Networks"].values()))["IPAddress"]


def time_to_reachable(cluster: Cluster, source_pid: int, name: str, timeout: float = 60.0) -> tuple[float, float]:
    """(docker run -> first reply, docker run's own wall time): the rest is the address's lookup
    (one Engine API request) and the wait for routes, rules and BGP."""
    started = time.monotonic()
    must(cluster.run("host2", f"docker run --net net1 --name {name} -tid busybox"))
    ran = time.monotonic() - started
    address = address_of(cluster, "host2", name)
    if not first_reply(source_pid, address, timeout):
        raise ClusterError(f"{name} ({address}) not reachable after {timeout:.0f}s")
    return time.monotonic() - started, ran


def rtt_beside_ping(cluster: Cluster, source_pid: int, address: str, count: int = 20) -> dict:
    """The probe's RTT and busybox ping's (inside the source container) on one pair, one after the other."""
    probe = probe_from(source_pid, "icmp", address, count=count)
    output = must(cluster.run("host1", f"docker exec source ping -c {count} {address}"))
    low, avg, high = map(float, re.search(r"min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms", output).groups())
    return {"probe": {"received": probe.received, "min": probe.rtt_min_ms, "avg": probe.rtt_avg_ms,
                      "max": probe.rtt_max_ms},
            "ping": {"min": low, "avg": avg, "max": high},
            "within_target": avg / 1.5 - 0.05 <= probe.rtt_avg_ms <= 1.5 * avg + 0.05}


def time_to_running(cluster: Cluster, name: str, network: str = "net1") -> float:
    started = time.monotonic()
    must(cluster.run("host1", f"docker run -d --net {network} --name {name} workload"))
    seconds = time.monotonic() - started
    if not inspect(cluster, "host1", name)["State"]["Running"]:
        raise ClusterError(f"{name} is not running after `docker run -d` returned")
    return seconds


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def container_pss_kib(pid: int) -> int:
    """PSS of a container's PID 1 and of its init (PID 1's parent, our runtime)."""
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return pss_kib(pid) + pss_kib(parent)


def memory_per_container_kib(cluster: Cluster, names: list[str]) -> float:
    """container_pss_kib of each of host1's containers names, averaged."""
    return sum(container_pss_kib(inspect(cluster, "host1", name)["State"]["Pid"]) for name in names) / len(names)


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


# -- --hosts N: workloads over many hosts, each reachable from another host ---------------------

@dataclass(frozen=True)
class Placed:
    """A workload of the wide run, as its host's `docker inspect` gives it."""

    host: str
    name: str
    address: str
    pid: int


def spread(total: int, hosts: int) -> list[int]:
    """How many workloads each host gets: as even as can be, the first hosts one more."""
    return [total // hosts + (index < total % hosts) for index in range(hosts)]


def placed_on(cluster: Cluster, host: str, names: list[str]) -> list[Placed]:
    """Every one of names on host, address and PID from one `docker inspect` of them all."""
    listed = must(cluster.run(host, "docker inspect --format '{{.Name}} "
                                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}} {{.State.Pid}}' "
                                    + " ".join(names)))
    found = {}
    for line in listed.splitlines():
        name, address, pid = line.split()
        found[name.lstrip("/")] = Placed(host, name.lstrip("/"), address, int(pid))
    if sorted(found) != sorted(names):
        raise ClusterError(f"{host}: docker inspect listed {len(found)} of {len(names)} workloads")
    return [found[name] for name in names]


ANSWERED = 'for a; do (ping -c 1 -W 1 "$a" >/dev/null 2>&1 && echo "$a") & done; wait'


def answering(cluster: Cluster, prober: Placed, addresses: list[str]) -> set[str]:
    """Which of addresses answer one busybox echo from inside prober (`docker exec`, all at once)."""
    output = must(cluster.run(prober.host, f"docker exec {prober.name} sh -c '{ANSWERED}' sh {' '.join(addresses)}"))
    return set(output.split()) & set(addresses)


@dataclass
class Reach:
    """One host's workloads, pinged from a workload of another host until all answer."""

    host: str
    prober: Placed
    waiting: list[str]
    reached_at: dict[str, float]  # address -> seconds since the check began when it first answered
    round_ends: list[float] = field(default_factory=list)  # seconds since the check began when each round ended

    def summary(self) -> dict:
        return {"host": self.host, "prober": f"{self.prober.host}/{self.prober.name}", "round_ends_s": self.round_ends,
                "reachable": len(self.reached_at), "expected": len(self.reached_at) + len(self.waiting),
                "all_reachable_s": max(self.reached_at.values()) if not self.waiting and self.reached_at else None,
                "unreachable": self.waiting}


def reach_from(cluster: Cluster, reach: Reach, started: float, deadline: float) -> Reach:
    """Ping reach's waiting addresses, those that did not answer again, until none or the deadline."""
    while reach.waiting and time.monotonic() < deadline:
        answered = answering(cluster, reach.prober, reach.waiting)
        now = round(time.monotonic() - started, 3)
        reach.round_ends.append(now)
        reach.reached_at.update((address, now) for address in answered)
        reach.waiting = [address for address in reach.waiting if address not in answered]
    return reach


def probers_for(placed: dict[str, list[Placed]]) -> dict[str, Placed]:
    """host -> the workload that pings its workloads: the first of the next host (the last host's: host1's)."""
    hosts = list(placed)
    return {host: placed[hosts[(index + 1) % len(hosts)]][0] for index, host in enumerate(hosts)}


def durations(finished: list[float]) -> list[float]:
    """How long each of one host's `docker run`s took, from when each returned (one after another, from 0)."""
    return [round(end - begin, 3) for begin, end in zip([0.0, *finished], finished)]


def merged_runs(finished: dict[str, list[float]]) -> list[tuple[float, float]]:
    """Every `docker run` of every host as (when it returned, how long it took), in the order they returned."""
    return sorted(run for times in finished.values() for run in zip(times, durations(times)))


def cluster_steps(finished: dict[str, list[float]], every: int) -> list[dict]:
    """When the cluster as a whole had every, 2 x every, ... workloads (and the last)."""
    ends = [end for end, _ in merged_runs(finished)]
    counts = [*range(every, len(ends) + 1, every), *([len(ends)] if len(ends) % every else [])]
    return [{"workloads": count, "seconds": ends[count - 1]} for count in counts]


def last_tenth_over_first(finished: dict[str, list[float]]) -> float | None:
    """Median `docker run` of the cluster's last tenth over its first tenth (in the order they
    returned): how much the runs slowed down as the cluster's workloads accumulated."""
    runs = [seconds for _, seconds in merged_runs(finished)]
    tenth = len(runs) // 10
    if tenth == 0:
        return None
    return round(statistics.median(runs[-tenth:]) / statistics.median(runs[:tenth]), 2)


def plot_wide(result: dict, path: Path) -> None:
    """Each host's creation curve, and each `docker run`'s time against the cluster's workload count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from report import label_axes

    finished = {row["host"]: row["finished_s"] for row in result["per_host"]}
    figure, (curves, runs) = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = plt.get_cmap("tab10" if len(finished) <= 10 else "viridis")
    for index, (host, times) in enumerate(finished.items()):
        curves.plot(range(1, len(times) + 1), times, label=host,
                    color=colours(index if len(finished) <= 10 else index / len(finished)))
    label_axes(curves, "workloads on the host", "seconds since creation began",
               "one creating thread a host: when each host's n-th `docker run` returned", fontsize=7, ncol=2)
    merged = merged_runs(finished)
    counts = range(1, len(merged) + 1)
    durations = [seconds for _, seconds in merged]
    runs.scatter(counts, durations, s=4, alpha=0.35, color="tab:blue", label="one `docker run` (returned n-th)")
    window = max(1, len(durations) // 20)
    medians = [statistics.median(durations[start:start + window]) for start in range(0, len(durations), window)]
    runs.plot([min(start + window, len(durations)) for start in range(0, len(durations), window)], medians,
              color="tab:red", marker="o", markersize=3, label=f"median of each {window}")
    runs.set_ylim(bottom=0)
    label_axes(runs, "workloads in the cluster when the run returned", "seconds for that `docker run`",
               "does a `docker run` slow down as the cluster's workloads accumulate?")
    reach = result["reachability"]
    figure.suptitle(f"{result['total']} workloads over {result['hosts']} flat hosts: "
                    f"created in {result['creation_s']} s; "
                    f"{reach['reachable']}/{reach['expected']} reachable from the next host, all "
                    f"{reach['all_reachable_s']} s after the last `docker run` (1-min load at start: "
                    f"{result['load_average_1min_at_start']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def wide(args: argparse.Namespace, console: Console) -> None:
    """--hosts N: the run the module's docstring describes."""
    from bringup import total_pss_kib  # the bring-up benchmark's measure of the run's memory (imported in the sandbox)

    load = round(os.getloadavg()[0], 2)
    hosts = [f"host{index}" for index in range(1, args.hosts + 1)]
    plan = {host: [f"h{index}w{number}" for number in range(count)]
            for index, (host, count) in enumerate(zip(hosts, spread(args.total, args.hosts)), start=1)}
    started = time.monotonic()
    with Cluster(topologies.load("flat", args.hosts)) as cluster:
        built = time.monotonic()
        with console.status(f"{args.hosts} hosts: calicoctl node run, full mesh"):
            cluster.start_nodes()
            cluster.wait_for_mesh(120)
        meshed = time.monotonic()
        seed_pool_and_network(cluster)
        runs = {host: sdk_run(cluster, host) if args.client == "sdk" else cli_run(cluster, host, must) for host in plan}
        with console.status(f"creating {args.total} workloads over {args.hosts} hosts, {args.parallel} at once"):
            cpu_before, creating = cpu_by_kind(), time.monotonic()
            finished = create_all(runs, plan, args.parallel, creating)
            created, cpu_after = time.monotonic(), cpu_by_kind()
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            placed = dict(zip(plan, pool.map(lambda host: placed_on(cluster, host, plan[host]), plan)))
            interfaces = dict(zip(plan, pool.map(
                lambda host: int(must(cluster.run(host, "ip -o link | grep -c cali"))), plan)))
        with console.status("pinging every workload from a workload of the next host "
                            f"(up to {args.reach_timeout:.0f} s)"):
            checks = [Reach(host, prober, [workload.address for workload in placed[host]], {})
                      for host, prober in probers_for(placed).items()]
            with ThreadPoolExecutor(max_workers=args.parallel) as pool:  # a host's pings go at once
                reached = list(pool.map(lambda reach: reach_from(cluster, reach, created, created + args.reach_timeout),
                                        checks))
        run_pss = total_pss_kib()
        containers_pss = [container_pss_kib(workload.pid) for workloads in placed.values() for workload in workloads]
        tearing_down = time.monotonic()
    torn_down = time.monotonic()
    per_host = [reach.summary() for reach in reached]
    reachable = sum(summary["reachable"] for summary in per_host)
    result = {"hosts": args.hosts, "total": args.total, "client": args.client, "parallel": args.parallel,
              "build_s": round(built - started, 2),
              "node_run_and_mesh_s": round(meshed - built, 2), "creation_s": round(created - creating, 2),
              "per_second": round(args.total / (created - creating), 2),
              "creation_cpu_ms_per_workload": per_item_ms(cpu_before, cpu_after, args.total),
              "median_docker_run_last_tenth_over_first": last_tenth_over_first(finished),
              "cluster_steps": cluster_steps(finished, max(1, args.total // 10)),
              "per_host": [{"host": host, "workloads": len(times), "created_s": times[-1],
                            "median_docker_run_s": round(statistics.median(durations(times)), 3),
                            "interfaces": interfaces[host], "finished_s": times} for host, times in finished.items()],
              "reachability": {"reachable": reachable, "expected": args.total,
                               "all_reachable_s": (max(summary["all_reachable_s"] for summary in per_host)
                                                   if reachable == args.total else None),
                               "per_host": per_host},
              "memory": {"run_pss_mib": round(run_pss / 1024, 1),
                         "run_pss_per_host_mib": round(run_pss / 1024 / args.hosts, 1),
                         "containers_pss_mib": round(sum(containers_pss) / 1024, 1),
                         "idle_container_pss_kib": round(statistics.mean(containers_pss))},
              "teardown_s": round(torn_down - tearing_down, 2), "load_average_1min_at_start": load}
    print_wide(result, console)
    args.json.write_text(json.dumps(result, indent=2))
    plot_wide(result, args.png)
    console.print(f"written to {args.json} and {args.png}")
    wrong = [row["host"] for row in result["per_host"] if row["interfaces"] != row["workloads"]]
    if wrong or reachable != args.total:
        raise SystemExit(f"{reachable} of {args.total} workloads reachable; hosts whose workload interfaces "
                         f"do not match their workloads: {', '.join(wrong) or 'none'}")


def print_wide(result: dict, console: Console) -> None:
    table = Table(title=f"{result['total']} workloads over {result['hosts']} hosts (flat, full mesh, IPIP pool), "
                        "docker run through each host's dockerd")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("network build / node runs and full mesh",
                  f"{result['build_s']} s / {result['node_run_and_mesh_s']} s")
    client = "the docker SDK" if result["client"] == "sdk" else "the docker CLI"
    table.add_row(f"{result['total']} workloads created ({client}, {result['parallel']} at once)",
                  f"{result['creation_s']} s")
    table.add_row("workloads created per second (cluster)", str(result["per_second"]))
    for kind, ms in result["creation_cpu_ms_per_workload"].items():
        table.add_row(f"  CPU a workload's creation: {kind}", f"{ms} ms")
    table.add_row("median docker run: cluster's last tenth / first tenth",
                  str(result["median_docker_run_last_tenth_over_first"]))
    for row in result["per_host"] if len(result["per_host"]) <= 20 else []:
        table.add_row(f"  {row['host']}: {row['workloads']} workloads",
                      f"last at {row['created_s']} s, median docker run {row['median_docker_run_s']} s")
    if len(result["per_host"]) > 20:
        last, median = ([row[key] for row in result["per_host"]] for key in ("created_s", "median_docker_run_s"))
        table.add_row("  the hosts' last workload / median docker run (min-max)",
                      f"{min(last)}-{max(last)} s / {min(median)}-{max(median)} s")
    reach = result["reachability"]
    table.add_row("reachable from a workload of the next host", f"{reach['reachable']} of {reach['expected']}")
    table.add_row("last docker run -> every workload answering", f"{reach['all_reachable_s']} s")
    rounds = [len(summary["round_ends_s"]) for summary in reach["per_host"]]
    table.add_row("ping rounds a host (each: one exec, every waiting workload at once)",
                  ", ".join(map(str, rounds)) if len(rounds) <= 20 else f"{min(rounds)}-{max(rounds)}")
    first_rounds = [summary["round_ends_s"][0] for summary in reach["per_host"] if summary["round_ends_s"]]
    if first_rounds:
        table.add_row("  the first round (its exec and pings) ended", f"{min(first_rounds)}-{max(first_rounds)} s")
    memory = result["memory"]
    table.add_row("memory: every process of the run (PSS), after the checks",
                  f"{memory['run_pss_mib']} MiB ({memory['run_pss_per_host_mib']} MiB a host), "
                  f"containers {memory['containers_pss_mib']} MiB")
    table.add_row("memory per idle busybox container (PSS: init + PID 1)", f"{memory['idle_container_pss_kib']} KiB")
    table.add_row("teardown", f"{result['teardown_s']} s")
    table.add_row("1-min load average at the start (a shared machine)", str(result["load_average_1min_at_start"]))
    console.print(table)


def single_host(args: argparse.Namespace, console: Console) -> None:
    """Without --hosts: the seed cluster's runs the module's docstring lists first."""
    load = round(os.getloadavg()[0], 2)
    with Cluster(topologies.load("two_host")) as cluster:
        for host in cluster.hosts:
            must(cluster.run(host, "calicoctl node run"))
        cluster.wait_for_mesh(30)
        seed_pool_and_network(cluster)
        must(cluster.run("host1", "docker run --net net1 --name source -tid busybox"))
        source = inspect(cluster, "host1", "source")["State"]["Pid"]
        with console.status(f"{args.remote} workloads on host2, each timed until host1 reaches it"):
            reach, ran = zip(*(time_to_reachable(cluster, source, f"remote{i}") for i in range(args.remote)))
        remote = next(iter(inspect(cluster, "host2", "remote0")["NetworkSettings"]["Networks"].values()))["IPAddress"]
        with console.status("probe and ping -c 20 on host1's source -> host2's remote0"):
            rtt = rtt_beside_ping(cluster, source, remote)
        with console.status(f"{args.remote} x docker run -d workload on host1"):
            running = [time_to_running(cluster, f"daemon{i}") for i in range(args.remote)]
        must(cluster.run("host1", "docker network create br1"))  # Docker's own bridge, beside Calico's
        with console.status(f"{args.remote} x docker run -d workload on host1's bridge network br1"):
            bridged = [time_to_running(cluster, f"bridged{i}", "br1") for i in range(args.remote)]
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
              "bridge_run_d_to_running_s": {"count": len(bridged), "p50": round(statistics.median(bridged), 3),
                                            "p95": round(percentile(bridged, 0.95), 3)},
              "idle_container_pss_kib": round(memory),
              "remote_reachability_s": {"count": len(reach), "p50": round(statistics.median(reach), 3),
                                        "p95": round(percentile(reach, 0.95), 3), "max": round(max(reach), 3),
                                        "docker_run_p50": round(statistics.median(ran), 3)},
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
    table.add_row("  of which docker run itself (the CLI's wall time)", f"p50 {reach_stats['docker_run_p50']} s")
    table.add_row("ICMP RTT host1 -> host2, probe (kernel timestamps), ms",
                  "min {min} avg {avg} max {max}".format(**rtt["probe"]))
    table.add_row("ICMP RTT host1 -> host2, busybox ping -c 20, ms",
                  "min {min} avg {avg} max {max}".format(**rtt["ping"]))
    table.add_row("probe avg within 1.5x + 0.05 ms of ping's", "yes" if rtt["within_target"] else "NO")
    table.add_row(f"docker run -d -> running ({len(running)} runs)",
                  "p50 {p50} s, p95 {p95} s".format(**result["run_d_to_running_s"]))
    table.add_row(f"docker run -d -> running on a user-defined bridge ({len(bridged)} runs)",
                  "p50 {p50} s, p95 {p95} s".format(**result["bridge_run_d_to_running_s"]))
    table.add_row("memory per idle busybox container (PSS: init + PID 1)", f"{result['idle_container_pss_kib']} KiB")
    for step in steps:
        table.add_row(f"{step['workloads']} workloads created on host1", f"{step['seconds']} s")
    table.add_row("workloads created per second (one host)", str(result["per_second"]))
    table.add_row("time of the last 100 / time of the first 100", str(result["last_100_over_first_100"]))
    table.add_row("1-min load average at the start (a shared machine)", str(load))
    console.print(table)
    args.json.write_text(json.dumps(result, indent=2))
    plot(steps, args.png)
    console.print(f"written to {args.json} and {args.png}")
    if interfaces != args.total + args.remote + 1:
        raise SystemExit(f"host1 has {interfaces} workload interfaces, expected {args.total + args.remote + 1}")



def main() -> None:
    from report import output_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remote", type=int, default=None, help="workloads timed to remote reachability (default 20)")
    parser.add_argument("--total", type=int, default=200,
                        help="workloads created on host1 (with --hosts: over all hosts)")
    parser.add_argument("--hosts", type=int, default=None, help="flat hosts to spread --total over (2 or more)")
    parser.add_argument("--reach-timeout", type=float, default=120.0,
                        help="with --hosts: seconds after the last docker run for every workload to answer")
    parser.add_argument("--client", choices=("sdk", "cli"), default="sdk",
                        help="with --hosts: create through the docker SDK's containers.run or the docker CLI")
    parser.add_argument("--parallel", type=int, default=8,
                        help="with --hosts: workloads created (and hosts checked) at once; one at a time a host")
    parser.add_argument("--json", type=output_path, default=None)
    parser.add_argument("--png", type=output_path, default=None)
    args = parser.parse_args()
    if args.hosts is not None and (args.hosts < 2 or args.total < args.hosts or args.remote is not None):
        parser.error("--hosts takes 2 or more hosts (each reached from another), at least one workload a host "
                     "and no --remote")
    results = WIDE_RESULTS if args.hosts is not None else RESULTS
    args.json = args.json or output_path(str(results))
    args.png = args.png or output_path(str(results.with_suffix(".png")))
    args.remote = 20 if args.remote is None else args.remote
    console = Console(width=150)
    if args.hosts is None:
        single_host(args, console)
    else:
        wide(args, console)


if __name__ == "__main__":
    main()
