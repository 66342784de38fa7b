"""A thousand Calico hosts on one machine (issue 25): N hosts on the flat topology with 2 route
reflectors, every host running its emulated dockerd, from nothing to every host's kernel routing to
every other host's block; where the time goes, and what it holds in memory.

    python benchmarks/large.py [--hosts 1000] [--route-reflectors 2] [--sample 5] [--json PATH] [--png PATH]

One run per host count.  The clock starts before the cluster is built: the stages are the network
(Mininet's namespaces, links and shells), etcd and every dockerd (the cluster's own start), one
address claimed per host through IPAM (so that each host has a /26 to advertise, as its first
workload would give it), the reflectors set up as Calico's docs say before any node starts (mesh
off, a global bgpPeer a reflector, `routereflector run`: a node started with the mesh still on
would peer with every other node first), `calicoctl node run` on every host (as many at a time as
`Cluster.start_nodes`), and BGP until every host's kernel routes to every other host's block (read
from /proc/PID/net/route: bgp.py's poll).  Memory: the peak of the summed PSS of every process of
the run, sampled every --sample seconds (reading 4000 processes' smaps costs ~1 s of CPU), and at
convergence each kind of process's share; CPU: each kind's CPU seconds at convergence (from
/proc/PID/stat), and the whole run's (every process, reaped by the end of the teardown).  With
--profile, py-spy samples the first 10 calico-nodes from their start to convergence.
Writes a table, JSON and a PNG (results/large.*).  The 10,000-workload half of `make bench-large`
is benchmarks/workloads.py's --hosts run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

from calisim.emulation import sandbox

if __name__ == "__main__":  # imported (by the unit tests of its pure helpers), it only defines them
    sandbox.enter()

import topologies  # noqa: E402
from bgp import claim_blocks, configure_reflectors, everyone_routes  # noqa: E402  (benchmarks/ is this directory)
from bringup import PeakMemory, cpu_seconds  # noqa: E402
from report import label_axes, output_path, write_runs  # noqa: E402
from calisim.emulation import Cluster, ClusterError, wait_until  # noqa: E402
from calisim.emulation.cluster import NODE_RUN_PARALLEL  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "large.json"
TARGET_S = 150.0  # issue 25: 1000 hosts + 2 reflectors, start to routes everywhere
TARGET_GIB = 24.0  # ... on one 24 GiB machine
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAGES = ("network", "etcd and dockerds", "blocks claimed", "reflectors", "node runs", "routes everywhere")
HEADINGS = {"start_to_routes_s": "total s", "one_node_run_s_median": "one node run s (median)",
            "run_cpu_s": "CPU s", "peak_pss_gib": "peak GiB", "peak_pss_per_host_mib": "MiB a host",
            "load_average_1min_at_start": "load"}
KINDS = ("calico-node", "dockerd", "BIRD", "etcd", "zygote", "host shells", "benchmark", "other")


def kind_of(comm: str, cmdline: str, own_pid: int, pid: int) -> str:
    """Which part of a Calico host (or of the run) a process is, from its name and command line."""
    if pid == own_pid:
        return "benchmark"
    if comm == "bird":
        return "BIRD"
    if comm == "etcd":
        return "etcd"
    if "calisim.node.zygote" in cmdline:
        return "zygote"
    if "calisim.node" in cmdline:  # calico-node, and the reflectors' calico-node-less agent
        return "calico-node"
    if "calisim.docker" in cmdline:
        return "dockerd"
    if comm in ("bash", "mnexec", "sh"):
        return "host shells"
    return "other"


def process_shares() -> tuple[Counter, Counter, Counter]:
    """Per kind: processes, PSS in KiB and CPU seconds, of every process visible here (the run's
    PID namespace holds only the run)."""
    count, pss, cpu = Counter(), Counter(), Counter()
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = stat.rsplit(")", 1)[1].split()
            rollup = (entry / "smaps_rollup").read_text()
        except (OSError, ValueError):
            continue  # gone meanwhile
        kind = kind_of(comm, cmdline, own, int(entry.name))
        count[kind] += 1
        cpu[kind] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        pss[kind] += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return count, pss, cpu


class Stages:
    """When each stage of the run ended, in seconds since the run began; the cluster's own progress
    (stage, done, total) marks the end of its stages as it reports them."""

    def __init__(self):
        self.started = time.monotonic()
        self.ends: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        self.ends[stage] = round(time.monotonic() - self.started, 2)

    def progress(self, stage: str, done: int, total: int) -> None:
        if done == total and stage == "hosts built":
            self.mark("network")

    def durations(self) -> dict[str, float]:
        """Each stage's own seconds, in STAGES' order."""
        previous, spans = 0.0, {}
        for stage in STAGES:
            spans[stage] = round(self.ends[stage] - previous, 2)
            previous = self.ends[stage]
        return spans


class NodeSpies:
    """py-spy on calico-nodes as they start: a thread looks for new ones every 20 ms and samples the
    first `limit` it finds, without pausing them (--nonblocking), until stopped; their collapsed
    stacks go to one file.  (py-spy's own --subprocesses on the zygote misses children forked after
    it starts.)  A sample of the nodes, not all: a thousand samplers would take the cores they measure."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit = path, limit
        self.spies: dict[int, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        spy = str(Path(sys.executable).parent / "py-spy")
        while not self._stop.wait(0.02) and len(self.spies) < self.limit:
            for pid in set(calico_nodes()) - set(self.spies):
                if len(self.spies) < self.limit:
                    self.spies[pid] = subprocess.Popen(
                        [spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "100", "--format", "raw",
                         "--output", f"{self.path}.{pid}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> "NodeSpies":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for spy in self.spies.values():
            spy.send_signal(signal.SIGINT)
        for spy in self.spies.values():
            spy.wait(120)
        parts = [Path(f"{self.path}.{pid}") for pid in self.spies]
        self.path.write_text("".join(part.read_text() for part in parts if part.exists()))
        for part in parts:
            part.unlink(missing_ok=True)


def calico_nodes() -> list[int]:
    """The PIDs of the calico-nodes running now (forked by the zygote with calico-node's command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"calisim.node\0--name" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def hottest(collapsed: str, top: int = 15) -> list[tuple[str, float]]:
    """The functions present in the most samples of a py-spy collapsed-stack file ("frame;frame;... count"
    a line, frames "function (file:line)"), each with its share of every sample: where the time goes."""
    inclusive: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        frames = {frame.split(":")[0].replace(str(Path(__file__).parents[1]) + "/", "") + ")"
                  for frame in stack.split(";")[1:]}  # the first frame names the process
        for frame in frames:
            inclusive[frame] += int(count)
    ranked = sorted(inclusive.items(), key=lambda item: (-item[1], item[0]))[:top]  # ties by name: stable output
    return [(frame, round(samples / total, 3)) for frame, samples in ranked] if total else []


def start_nodes(cluster: Cluster) -> list[float]:
    """`calicoctl node run` on every host, NODE_RUN_PARALLEL at a time; each one's seconds."""
    results = cluster.run_everywhere("calicoctl node run", timeout=900, parallel=NODE_RUN_PARALLEL)
    failed = [r for r in results if r.rc != 0]
    if failed:
        raise ClusterError(f"node run failed on {len(failed)} hosts, {failed[0].host}: "
                           f"{failed[0].stdout}{failed[0].stderr}")
    return [r.seconds for r in results]


def measure(hosts: int, reflectors: int, sample: float, profile: Path | None = None) -> dict:
    load = os.getloadavg()[0]
    cpu_before = cpu_seconds()
    stages = Stages()
    with PeakMemory(sample) as memory:
        cluster = Cluster(topologies.load("flat", hosts, route_reflectors=reflectors))
        cluster.progress = stages.progress
        with cluster:
            stages.mark("etcd and dockerds")
            blocks = claim_blocks(cluster, cluster.hosts, ipv6=False)
            stages.mark("blocks claimed")
            configure_reflectors(cluster, reflectors, ipv6=False)
            stages.mark("reflectors")
            with NodeSpies(profile, 10) if profile is not None else contextlib.nullcontext():
                node_runs = start_nodes(cluster)
                stages.mark("node runs")
                pending = deque(cluster.hosts)
                wait_until(lambda: everyone_routes(cluster, blocks, pending, ipv6=False), 1800, interval=0.5,
                           what=f"every host routing to every block ({len(pending)} hosts left)")
                stages.mark("routes everywhere")
            count, pss, cpu = process_shares()
            reflector_sessions = [cluster.bgp_established(f"rr{i}") for i in range(1, reflectors + 1)]
            dockerds = len(cluster.dockerds)
            tearing_down = time.monotonic()
        torn_down = time.monotonic()
    peak = max(memory.peak, sum(pss.values()))  # after the sampler stopped: it may have been mid-sample then
    return {"hosts": hosts, "route_reflectors": reflectors, "dockerds": dockerds,
            "reflector_sessions": reflector_sessions, "start_to_routes_s": stages.ends["routes everywhere"],
            "stages_s": stages.durations(),
            "one_node_run_s_median": round(statistics.median(node_runs), 2),
            "one_node_run_s_max": round(max(node_runs), 2),
            "peak_pss_gib": round(peak / 2**20, 2), "peak_pss_per_host_mib": round(peak / 1024 / hosts, 1),
            "processes": dict(count), "pss_mib": {kind: round(pss[kind] / 1024, 1) for kind in KINDS if kind in pss},
            "cpu_s": {kind: round(cpu[kind], 1) for kind in KINDS if kind in cpu},
            "run_cpu_s": round(cpu_seconds() - cpu_before, 1),
            "teardown_s": round(torn_down - tearing_down, 2), "load_average_1min_at_start": round(load, 2),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "profile_hottest": hottest(profile.read_text()) if profile is not None else []}


def plot(rows: list[dict], path: Path) -> None:
    """Per host count: the stages' seconds stacked (the target beside), and memory by kind of process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, memory) = plt.subplots(1, 2, figsize=(13, 4.8))
    labels = [str(row["hosts"]) for row in rows]
    bottom = [0.0] * len(rows)
    for stage, colour in zip(STAGES, plt.get_cmap("tab10").colors):
        heights = [row["stages_s"][stage] for row in rows]
        times.bar(labels, heights, bottom=bottom, color=colour, label=stage)
        bottom = [b + h for b, h in zip(bottom, heights)]
    at_scale = max(row["hosts"] for row in rows) >= 500  # below, the targets' lines would flatten the bars
    if at_scale:
        times.axhline(TARGET_S, color="g", linestyle=":", label=f"target at 1000 hosts: {TARGET_S:.0f} s")
    label_axes(times, "Calico hosts (+ 2 route reflectors), each with its dockerd", "seconds",
               "start to routes everywhere, by stage", fontsize=7)
    bottom = [0.0] * len(rows)
    for kind, colour in zip(KINDS, plt.get_cmap("tab10").colors):
        heights = [row["pss_mib"].get(kind, 0) / 1024 for row in rows]
        memory.bar(labels, heights, bottom=bottom, color=colour, label=kind)
        bottom = [b + h for b, h in zip(bottom, heights)]
    memory.plot(labels, [row["peak_pss_gib"] for row in rows], "k_", markersize=30, label="peak (sampled)")
    if at_scale:
        memory.axhline(TARGET_GIB, color="g", linestyle=":", label=f"target: fits in {TARGET_GIB:.0f} GiB")
    label_axes(memory, "Calico hosts", "GiB (PSS)", "memory at convergence, by kind of process", fontsize=7)
    loads = ", ".join(f"{row['hosts']}: {row['load_average_1min_at_start']}" for row in rows)
    targets = "" if at_scale else f"; targets at 1000 hosts: {TARGET_S:.0f} s, {TARGET_GIB:.0f} GiB"
    figure.suptitle(f"calisim, flat topology with route reflectors, one run each on a shared 2-core machine "
                    f"(1-min load at start: {loads}{targets})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def flat_row(row: dict) -> dict:
    """The run with its stages as the table's columns."""
    return {**row, **{f"{stage} s": seconds for stage, seconds in row["stages_s"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1000], help="host counts, one run each (1000)")
    parser.add_argument("--route-reflectors", type=int, default=2, help="reflector hosts rr1..rrK (2)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between memory samples (5)")
    parser.add_argument("--profile", type=output_path, default=None, metavar="PATH",
                        help="py-spy's collapsed stacks of the first 10 calico-nodes to start, from their start to "
                             "convergence, to PATH (with several --hosts: the last run's)")
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")))
    args = parser.parse_args()
    if args.route_reflectors < 1 or min(args.hosts) < 2:
        parser.error("the run needs at least 2 hosts and 1 route reflector")
    from rich.console import Console

    console = Console(width=160)
    rows = []
    for count in args.hosts:
        with console.status(f"{count} hosts + {args.route_reflectors} reflectors, each host with a dockerd"):
            rows.append(measure(count, args.route_reflectors, args.sample, args.profile))
        console.print(rows[-1])
    columns = ("hosts", *(f"{stage} s" for stage in STAGES), "start_to_routes_s", "one_node_run_s_median",
               "run_cpu_s", "peak_pss_gib", "peak_pss_per_host_mib", "load_average_1min_at_start")
    write_runs(console, "N hosts + route reflectors, every host with its dockerd: start to routes everywhere",
               columns, [flat_row(row) for row in rows], args.json, args.png, plot,
               heading=lambda column: HEADINGS.get(column, column.replace("_", " ")))


if __name__ == "__main__":
    main()
