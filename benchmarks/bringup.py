"""Bring-up of a full BGP mesh on the flat topology: time from nothing to every session
Established, and the run's peak memory, for several host counts in one run.

    python benchmarks/bringup.py [--hosts 2 10 25 50] [--json PATH]

Memory is the peak, sampled every 0.2 s, of the summed PSS of every process in the run's
PID namespace (the benchmark's own interpreter included): etcd, the BIRDs, the calico-node
agents, the Mininet shells.  The hosts run no emulated dockerd: a mesh needs none.  Target on the project's 2-core machine: 50 hosts (1225 sessions)
in under 30 s.
"""

from __future__ import annotations

import argparse
import json
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

RESULTS = Path(__file__).parent / "results" / "bringup.json"


def total_pss_kib() -> int:
    """Summed PSS of every process visible here; the run's PID namespace holds only the run."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                for line in (entry / "smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            except (OSError, ValueError):
                continue
    return total


class PeakMemory:
    """Samples total PSS in a thread until stopped; keeps the maximum."""

    def __init__(self, interval: float = 0.2):
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


def measure(hosts: int) -> dict:
    started = time.monotonic()
    with PeakMemory() as memory, Cluster(topologies.load("flat", hosts), docker=False) as cluster:
        built = time.monotonic()
        cluster.start_nodes()
        nodes_started = time.monotonic()
        cluster.wait_for_mesh(timeout=300)
        converged = time.monotonic()
        sessions = sum(cluster.bgp_established(host) for host in cluster.hosts) // 2
        memory.peak = max(memory.peak, total_pss_kib())
    return {"hosts": hosts, "sessions": sessions, "expected_sessions": hosts * (hosts - 1) // 2,
            "build_s": round(built - started, 2), "node_run_s": round(nodes_started - built, 2),
            "converge_s": round(converged - nodes_started, 2), "total_s": round(converged - started, 2),
            "peak_pss_mib": round(memory.peak / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 10, 25, 50])
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console()
    rows = []
    for count in args.hosts:
        with console.status(f"{count} hosts: building, starting nodes, waiting for the mesh"):
            rows.append(measure(count))
        console.print(rows[-1])
    table = Table(title="flat topology, full node-to-node mesh")
    for column in ("hosts", "sessions", "build s", "node run s", "converge s", "total s", "peak PSS MiB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("hosts", "sessions", "build_s", "node_run_s", "converge_s",
                                                   "total_s", "peak_pss_mib")))
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine_cores": len(__import__("os").sched_getaffinity(0)), "runs": rows},
                                    indent=2))
    console.print(f"written to {args.json}")
    if any(row["sessions"] != row["expected_sessions"] for row in rows):
        sys.exit("not every session was Established")


if __name__ == "__main__":
    main()
