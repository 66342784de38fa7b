"""Bring-up of a full BGP mesh on the flat topology: time from nothing to every session
Established, and the run's peak memory, for several host counts in one run.

    python benchmarks/bringup.py [--hosts 2 10 25 50] [--docker] [--json PATH] [--png PATH]

Memory is the peak, sampled every second and once more at the end, of the summed PSS of every process in the run's
PID namespace (the benchmark's own interpreter included): etcd, the BIRDs, the calico-node
agents, the Mininet shells, and with --docker every host's emulated dockerd (a mesh needs none,
a Calico host has one).  Once the mesh is up, that PSS is also split by part (shell, BIRD,
calico-node, dockerd, the node zygote that forks the last two, etcd and the rest) and given a
host, and the CPU seconds each part used from the start.  Also
measured: the teardown (leaving the ``with Cluster`` block until every process and namespace is
gone), the CPU seconds the whole run used (the machine is shared: CPU time says what wall time
cannot), and the load average at the start.  Targets (issue 14, the project's 2-core machine):
100 hosts (4950 sessions) in 45 s, 50 in 15 s, at most 20 MiB of PSS a host, teardown of 100
hosts in 10 s.

With --ksm the machine's ksmd (the kernel's same-page merging, which the node zygote's forks
are open to: calisim/node/zygote_pages.py) runs for the measurement, --ksm-pages-to-scan pages
every 20 ms, and is put back as it was after (it is the machine's setting: root only, and it
stays off unless asked).  Once the mesh is up the run waits for ksmd to settle (at least two full
scans, until one merges less than 2 % more) and splits the PSS by part again: beside the parts
at mesh up, merged.  The run's CPU seconds then include what the nodes used while ksmd settled.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402  (imports after the re-exec into the sandbox)
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from calisim.emulation import Cluster  # noqa: E402
from report import label_axes, output_path, write_runs  # noqa: E402  (benchmarks/ is this script's directory)

RESULTS = Path(__file__).parent / "results" / "bringup.json"
DOCKER_RESULTS = RESULTS.with_name("bringup-docker.json")
TODAY = {50: 53, 100: 186}  # seconds, issue 14's "today" (before the node zygote), for the plot
REFERENCES_MIB = {  # with a dockerd in every host or not: (before, MiB a host), the target
    False: (("issue 14's today", 37.6), 20),
    True: (("100 hosts, a dockerd as its own interpreter", 54.3), 12)}


def total_pss_kib(commands: frozenset[str] | None = None) -> int:
    """Summed PSS of every process visible here (of those whose name is in commands, if given: a
    daemon's share); the run's PID namespace holds only the run."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if commands is not None and (entry / "comm").read_text().strip() not in commands:
                    continue
                total += pss_kib(entry)
            except (OSError, ValueError):
                continue
    return total


class PeakMemory:
    """Samples total PSS in a thread until stopped; keeps the maximum."""

    # Reading smaps_rollup costs the reader ~0.2 ms of CPU a process (the kernel walks its page
    # tables): at 100 hosts (~400 processes) a 0.2 s interval took 40 % of a core from the run.
    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, total_pss_kib())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, total_pss_kib())


PARTS = ("shell", "bird", "calico_node", "dockerd", "zygote", "etcd", "rest")


def part_of(pid: Path) -> str:
    """Which part of the run a process is, by its name and command line (those the zygote forks
    carry the command line of `python -m calisim.node` or `-m calisim.docker`)."""
    name = (pid / "comm").read_text().strip()
    argv = (pid / "cmdline").read_bytes().split(b"\0")
    module = argv[2].decode() if len(argv) > 2 and argv[1] == b"-m" else ""
    if name in ("bird", "etcd"):
        return name
    if name in ("bash", "mnexec"):
        return "shell"  # Mininet's shell of each host (and of the routers, if any)
    return {"calisim.docker": "dockerd", "calisim.node.zygote": "zygote", "calisim.node": "calico_node"}.get(
        module, "rest")


def pss_by_part() -> dict[str, int]:
    """Summed PSS (KiB) of every process visible here, by part_of."""
    parts = dict.fromkeys(PARTS, 0)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parts[part_of(entry)] += pss_kib(entry)
            except (OSError, ValueError):
                continue
    return parts


def cpu_by_part() -> dict[str, float]:
    """CPU seconds by part_of of every process visible here: its own and its reaped children's
    (a process that exited is counted in whoever reaped it: `calicoctl`, `bird -p`, nsenter and
    bash in the benchmark's own interpreter, the calicoctl commands the zygote forked in the zygote)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parts = dict.fromkeys(PARTS, 0.0)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parts[part_of(entry)] += sum(int(field) for field in fields[11:15]) / ticks  # utime..cstime
            except (OSError, ValueError):
                continue
    return parts


def pss_kib(pid: Path) -> int:
    for line in (pid / "smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


KSM = Path("/sys/kernel/mm/ksm")
KSM_SETTINGS = ("run", "pages_to_scan", "sleep_millisecs")
KSM_SETTLE_TIMEOUT = 1200.0  # full scans of 100 hosts' pages by a ksmd at nice 5 on a loaded machine
SETTLED = 0.02  # of the pages merged: what a full scan may still add once merging has settled


class MachineKsm:
    """The machine's ksmd running (pages_to_scan every 20 ms) for a with block, then put back."""

    def __init__(self, pages_to_scan: int):
        self.pages_to_scan = pages_to_scan
        self.saved: dict[str, str] = {}

    def __enter__(self) -> "MachineKsm":
        self.saved = {name: (KSM / name).read_text() for name in KSM_SETTINGS}
        for name, value in (("pages_to_scan", self.pages_to_scan), ("sleep_millisecs", 20), ("run", 1)):
            (KSM / name).write_text(str(value))
        return self

    def __exit__(self, *exc: object) -> None:
        for name in reversed(KSM_SETTINGS):  # run first: stopped before its rate goes back
            (KSM / name).write_text(self.saved[name])

    @staticmethod
    def counter(name: str) -> int:
        return int((KSM / name).read_text())

    def settle(self) -> float:
        """Wait until a full scan merges less than SETTLED more (at least two scans from now: a
        page is merged once it was unchanged across two); the seconds that took.  The nodes'
        passes write pages that were merged, so one fixed count of scans can end mid-pass."""
        started = time.monotonic()
        scans, sharing = self.counter("full_scans"), self.counter("pages_sharing")
        for count in itertools.count(1):
            while self.counter("full_scans") == scans:
                if time.monotonic() - started > KSM_SETTLE_TIMEOUT:
                    raise SystemExit(f"ksmd did not settle in {KSM_SETTLE_TIMEOUT:.0f} s")
                time.sleep(1)
            scans, before, sharing = self.counter("full_scans"), sharing, self.counter("pages_sharing")
            if count >= 2 and sharing - before < SETTLED * sharing:
                return round(time.monotonic() - started, 1)


def cpu_seconds() -> float:
    """CPU time of this process and of every child it (or they) reaped: the run's own work."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure(hosts: int, docker: bool = False, ksm: MachineKsm | None = None) -> dict:
    load = os.getloadavg()[0]
    merged: dict[str, float] = {}
    cpu_before = cpu_seconds()
    started = time.monotonic()
    with PeakMemory() as memory:
        with Cluster(topologies.load("flat", hosts), docker=docker) as cluster:
            built = time.monotonic()
            cluster.start_nodes()
            nodes_started = time.monotonic()
            cluster.wait_for_mesh(timeout=600)
            converged = time.monotonic()
            cpu = cpu_by_part()
            sessions = sum(cluster.bgp_established(host) for host in cluster.hosts) // 2
            parts = pss_by_part()
            memory.peak = max(memory.peak, sum(parts.values()))
            if ksm is not None:
                merged = merged_parts(ksm, hosts)
            tearing_down = time.monotonic()
        torn_down = time.monotonic()
    return {"hosts": hosts, "docker": docker, "sessions": sessions, "expected_sessions": hosts * (hosts - 1) // 2,
            "build_s": round(built - started, 2), "node_run_s": round(nodes_started - built, 2),
            "converge_s": round(converged - nodes_started, 2), "total_s": round(converged - started, 2),
            "teardown_s": round(torn_down - tearing_down, 2), "peak_pss_mib": round(memory.peak / 1024, 1),
            "pss_per_host_mib": round(memory.peak / 1024 / hosts, 1), "cpu_s": round(cpu_seconds() - cpu_before, 1),
            "load_average_1min_at_start": round(load, 2),
            **{f"{part}_mib_a_host": round(kib / 1024 / hosts, 2) for part, kib in parts.items()},
            **{f"{part}_cpu_s": round(seconds, 1) for part, seconds in cpu.items()}, **merged}


def merged_parts(ksm: MachineKsm, hosts: int) -> dict[str, float]:
    """Once ksmd has settled: the PSS a host by part again, and how long settling took."""
    settle_s = ksm.settle()
    parts = pss_by_part()
    return {"ksm_settle_s": settle_s, "ksm_pages_sharing": ksm.counter("pages_sharing"),
            **{f"merged_{part}_mib_a_host": round(kib / 1024 / hosts, 2) for part, kib in parts.items()}}


def stack_parts(axis, rows: list[dict]) -> None:
    """Each run's PSS a host by part (mesh up) as stacked bars beside its peak."""
    hosts = sorted(row["hosts"] for row in rows)
    width = 0.4 * min((b - a for a, b in zip(hosts, hosts[1:])), default=hosts[0] * 0.25)
    bottoms = [0.0] * len(rows)
    for part in PARTS:
        values = [row[f"{part}_mib_a_host"] for row in rows]
        axis.bar([row["hosts"] for row in rows], values, width=width, bottom=bottoms, alpha=0.6,
                 label=part.replace("_", "-"))
        bottoms = [bottom + value for bottom, value in zip(bottoms, values)]


def plot(rows: list[dict], path: Path) -> None:
    """Time (with its parts) and memory a host against host count, today's figures and the targets beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hosts = [row["hosts"] for row in rows]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in (("total_s", "start to every session Established"), ("node_run_s", "`calicoctl node run` x N"),
                       ("teardown_s", "teardown"), ("cpu_s", "CPU seconds used (2 cores)")):
        times.plot(hosts, [row[key] for row in rows], marker="o", label=label,
                   linestyle=":" if key == "cpu_s" else "-")
    times.plot(list(TODAY), list(TODAY.values()), "kx", markersize=9, label="before (issue 14's today)")
    times.plot([50, 100], [15, 45], "g^", markersize=8, label="targets (50: 15 s, 100: 45 s)")
    label_axes(times, "Calico hosts (flat, full mesh)", "seconds", "bring-up and teardown")
    memory.plot(hosts, [row["pss_per_host_mib"] for row in rows], marker="o", label="peak PSS of the run / hosts")
    stack_parts(memory, rows)
    if "merged_shell_mib_a_host" in rows[0]:
        memory.plot(hosts, [sum(row[f"merged_{part}_mib_a_host"] for part in PARTS) for row in rows], "mD",
                    label="every part, after ksmd merged identical pages")
    before, target = REFERENCES_MIB[rows[0]["docker"]]
    memory.axhline(before[1], color="k", linestyle="--", label=f"before: {before[1]} MiB ({before[0]})")
    memory.axhline(target, color="g", linestyle=":", label=f"target: {target} MiB")
    memory.set_ylim(0, 1.8 * max(before[1], *(row["pss_per_host_mib"] for row in rows)))  # room for the legend
    label_axes(memory, "Calico hosts", "MiB a host", "memory a host (every process of the run; bars: by part)",
               fontsize=7, ncol=2, loc="upper left")
    loads = ", ".join(f"{row['hosts']}: {row['load_average_1min_at_start']}" for row in rows)
    figure.suptitle(f"calisim bring-up, one run on a shared 2-core machine (1-min load at start: {loads})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def print_by_part(console: Console, rows: list[dict], title: str, column: str, digits: int) -> None:
    """One figure by part (rows' column, with {part} in its name), a row a run, and their sum.
    The PSS a host, mesh up: the shared zygote, etcd and the rest spread over the hosts.  The CPU
    seconds from the start: where a bring-up's time goes on the two cores it keeps busy (rest: the
    benchmark with every command it ran in a host)."""
    table = Table(title=title)
    for heading in ("hosts", *PARTS, "all"):
        table.add_column(heading.replace("_", "-"), justify="right")
    for row in rows:
        values = [row[column.format(part=part)] for part in PARTS]
        table.add_row(str(row["hosts"]), *map(str, values), f"{sum(values):.{digits}f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 10, 25, 50])
    parser.add_argument("--docker", action="store_true", help="every host runs its dockerd, as a Calico host does")
    parser.add_argument("--ksm", action="store_true",
                        help="run the machine's ksmd for the measurement (root; put back after): PSS merged too")
    parser.add_argument("--ksm-pages-to-scan", type=int, default=5000, metavar="PAGES",
                        help="ksmd's pages every 20 ms with --ksm (default 5000; the kernel's own default is 100)")
    parser.add_argument("--json", type=output_path, default=None,
                        help=f"default {RESULTS} ({DOCKER_RESULTS} with --docker)")
    parser.add_argument("--png", type=output_path, default=None, help="default: the JSON's path with .png")
    args = parser.parse_args()
    args.json = args.json or output_path(str(DOCKER_RESULTS if args.docker else RESULTS))
    args.png = args.png or args.json.with_suffix(".png")
    console = Console()
    rows = []
    for count in args.hosts:
        with console.status(f"{count} hosts: building, starting nodes, waiting for the mesh"):
            if args.ksm:
                with MachineKsm(args.ksm_pages_to_scan) as ksm:
                    rows.append(measure(count, args.docker, ksm))
            else:
                rows.append(measure(count, args.docker))
        console.print(rows[-1])
    columns = ("hosts", "sessions", "build_s", "node_run_s", "converge_s", "total_s", "teardown_s", "peak_pss_mib",
               "pss_per_host_mib", "cpu_s", "load_average_1min_at_start")
    write_runs(console, "flat topology, full node-to-node mesh" + (", a dockerd in every host" if args.docker else ""),
               columns, rows, args.json, args.png, plot,
               heading=lambda column: column.replace("_", " ").replace("load average 1min at start", "load"))
    print_by_part(console, rows, "PSS a host by part, mesh up (MiB)", "{part}_mib_a_host", 2)
    print_by_part(console, rows, "CPU seconds by part, start to every session Established", "{part}_cpu_s", 1)
    if args.ksm:
        print_by_part(console, rows, "PSS a host by part, once ksmd merged identical pages (MiB)",
                      "merged_{part}_mib_a_host", 2)
    if any(row["sessions"] != row["expected_sessions"] for row in rows):
        sys.exit("not every session was Established")


if __name__ == "__main__":
    main()
