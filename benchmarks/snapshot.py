"""Saving a lab and bringing it back, as a user does it: `calisim save` and `calisim up --from`
on flat labs of several sizes, against building the same world from nothing.

    python benchmarks/snapshot.py [--hosts 2 10 25] [--per-host 3] [--json PATH] [--png PATH]

Each size: `calisim up flat --hosts N --start-nodes`, then a transcript (`run --lab`) that makes
one Calico network and --per-host busybox workloads on every host (build = both, wall time);
`calisim save` (its time and the file's size); `calisim down`; `calisim up --from` (restore,
wall time until it returns: etcd restored, calico-nodes up, every BGP session Established,
every workload made again).  "identical" says whether `calisim inspect` of the restored lab shows
every host's blocks, BGP sessions and workloads with their addresses as before the save.  The
labs run under a private registry and run directory, each downed after its row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from report import label_axes, output_path, write_runs  # benchmarks/ is this script's directory

RESULTS = Path(__file__).parent / "results" / "snapshot.json"
COLUMNS = ("hosts", "containers", "build_s", "save_s", "file_kib", "restore_s", "identical")


def calisim(*args: str) -> float:
    """Run one calisim command line; its wall time (SystemExit with its output if it fails)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "calisim", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"calisim {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started


def world(lab: str) -> dict:
    """Per host: its blocks, its Established sessions and its workloads with their addresses."""
    done = subprocess.run([sys.executable, "-m", "calisim", "inspect", lab, "--json"], capture_output=True, text=True)
    return {host["name"]: (host.get("blocks"), host.get("established"),
                           sorted((w["name"], w["addresses"]) for w in host.get("workloads", [])))
            for host in json.loads(done.stdout)["hosts"]}


def workloads_transcript(hosts: int, per_host: int) -> str:
    lines = ["host1$ docker network create --driver calico --ipam-driver calico-ipam net1"]
    lines += [f"host{h}$ docker run --net net1 --name w{h}-{i} -tid busybox"
              for h in range(1, hosts + 1) for i in range(1, per_host + 1)]
    return "\n".join(lines) + "\n"


def measure(hosts: int, per_host: int, scratch: Path) -> dict:
    saved, built, restored = f"snap{hosts}", f"snap{hosts}-back", scratch / f"flat{hosts}.calisim"
    script = scratch / f"flat{hosts}.txt"
    script.write_text(workloads_transcript(hosts, per_host))
    build = calisim("up", "flat", "--hosts", str(hosts), "--start-nodes", "--name", saved)
    build += calisim("run", str(script), "--lab", saved)
    before = world(saved)
    save = calisim("save", saved, "-o", str(restored))
    calisim("down", saved)
    restore = calisim("up", "--from", str(restored), "--name", built)
    identical = world(built) == before
    calisim("down", built)
    return {"hosts": hosts, "containers": hosts * per_host, "build_s": round(build, 1), "save_s": round(save, 2),
            "file_kib": round(restored.stat().st_size / 1024, 1), "restore_s": round(restore, 1),
            "identical": "yes" if identical else "NO"}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    positions = range(len(rows))
    axis.bar([p - 0.2 for p in positions], [r["build_s"] for r in rows], 0.4, label="built (up + workloads)")
    axis.bar([p + 0.2 for p in positions], [r["restore_s"] for r in rows], 0.4, label="up --from the saved file")
    axis.set_xticks(list(positions), [f"{r['hosts']} hosts\n{r['containers']} containers" for r in rows])
    label_axes(axis, "flat lab", "seconds (wall)", "the same world: built, or brought back by calisim up --from")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 10, 25])
    parser.add_argument("--per-host", type=int, default=3, help="workloads on each host (default 3)")
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark starts labs: run it as root")
    with tempfile.TemporaryDirectory(prefix="snap-", dir="/tmp") as scratch:
        os.environ["CALISIM_LABS"] = f"{scratch}/labs"
        os.environ["CALISIM_RUNS"] = f"{scratch}/runs"
        rows = [measure(hosts, args.per_host, Path(scratch)) for hosts in args.hosts]
    write_runs(Console(), "calisim save / up --from (flat, --start-nodes)", COLUMNS, rows, args.json, args.png, plot)


if __name__ == "__main__":
    main()
