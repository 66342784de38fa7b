"""The seed demo's wall time, `python -m calisim two-host` run as a user runs it, and its parts.

    python benchmarks/demo.py [--runs 3] [--json PATH] [--png PATH]

Each run is the real command line (its own sandbox, its own run directory, kept under
$CALISIM_RUNS as every run's); the parts come from
the run's own records: calisim.log's timestamps (interpreter start-up and imports up to the
first line, the network, etcd, the zygote and dockerds, the outcome's scapy probes, the stop)
and transcript.json's seconds per step, summed per section of the transcript (its comment
lines).  Also the CPU seconds of the whole run (every process reaped below it) and the load
average at the start: the machine is shared.  Issue 14: 34 s before, target 20 s; issue 25:
16.3 s before (9.1 s of it in the seed's ping steps), target 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from calisim.scenarios.bundled import SCENARIOS
from calisim.scenarios.transcript import parse
from report import output_path

RESULTS = Path(__file__).parent / "results" / "demo.json"
TODAY_S = 16.3  # issue 25's "today"
TARGET_S = 10.0
# calisim.log lines that end each start-up and shut-down part (their order in the log)
MARKS = (("start-up and imports", " steps on "), ("network", " built "), ("etcd", " etcd up "),
         ("zygote", " node zygote ready"), ("dockerds", " dockerd up "))


def sections(text: str) -> dict[int, str]:
    """Each step's line number -> the first line of the comment block above it."""
    owner, title, in_comment = {}, "(no section)", False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            if not in_comment:
                title = line.lstrip("# ").rstrip(".:")
                title = title if len(title) <= 56 else title[:55] + "…"
            in_comment = True
        elif line.strip():
            owner[number] = title
            in_comment = False
    return owner


def log_times(log: Path) -> list[tuple[float, str]]:
    entries = []
    for line in log.read_text().splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        entries.append((stamp, line[23:]))
    return entries


def measure() -> dict:
    load = os.getloadavg()[0]
    before = os.times()
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "calisim", "two-host"], capture_output=True, text=True)
    ended = time.time()
    after = os.times()
    run_dir = Path(re.search(r"calisim: run directory (\S+)", done.stderr)[1])
    entries = log_times(run_dir / "calisim.log")
    parts, previous = {}, started
    for name, mark in MARKS:
        stamp = next((t for t, text in entries if mark in text), None)
        if stamp is not None:
            parts[name] = round(stamp - previous, 2)
            previous = stamp
    transcript_done = next((t for t, text in entries if " transcript: " in text), previous)
    steps = json.loads((run_dir / "transcript.json").read_text())
    steps = steps["steps"] if isinstance(steps, dict) else steps
    owner = sections(SCENARIOS["two-host"].text())
    lines = [step.line for step in parse(SCENARIOS["two-host"].text())]
    for line, step in zip(lines, steps):
        key = f"transcript: {owner[line]}"
        parts[key] = round(parts.get(key, 0) + step["seconds"], 2)
    parts["transcript: between steps"] = round(transcript_done - previous - sum(s["seconds"] for s in steps), 2)
    measured = next((t for t, text in entries if " outcome measured" in text), transcript_done)
    stopped = next((t for t, text in entries if " stopped;" in text), measured)
    parts["outcome (scapy probes; beyond the steps they overlap)"] = round(measured - transcript_done, 2)
    parts["stop"] = round(stopped - measured, 2)
    parts["exit"] = round(ended - stopped, 2)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"passed": done.returncode == 0, "wall_s": round(ended - started, 2), "cpu_s": round(cpu, 1),
            "load_average_1min_at_start": round(load, 2), "run_dir": str(run_dir), "parts": parts,
            "stderr_tail": done.stderr[-2000:] if done.returncode else ""}


def plot(runs: list[dict], path: Path) -> None:
    """One stacked bar a run (its parts), before and target as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs[0]["parts"])
    figure, axes = plt.subplots(figsize=(13, 5.5))
    colours = plt.get_cmap("tab20").colors
    for index, run in enumerate(runs):
        bottom = 0.0
        for number, name in enumerate(names):
            value = max(0.0, run["parts"].get(name, 0.0))
            axes.bar(index, value, bottom=bottom, color=colours[number % len(colours)],
                     label=name if index == 0 else None)
            bottom += value
        axes.text(index, run["wall_s"] + 0.3, f"{run['wall_s']} s\n{run['cpu_s']} cpu-s", ha="center", fontsize=8)
    axes.axhline(TODAY_S, color="k", linestyle="--", label=f"before (issue 25's today): {TODAY_S:g} s")
    axes.axhline(TARGET_S, color="g", linestyle=":", label=f"target: {TARGET_S:g} s")
    axes.set_xticks(range(len(runs)),
                    [f"run {i + 1}\nload {r['load_average_1min_at_start']}" for i, r in enumerate(runs)])
    axes.set_ylabel("seconds (wall)")
    axes.set_xlim(-0.6, len(runs) - 0.4)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title("python -m calisim two-host: wall time and its parts (shared 2-core machine)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")))
    args = parser.parse_args()
    console = Console()
    runs = []
    for number in range(args.runs):
        with console.status(f"run {number + 1} of {args.runs}: python -m calisim two-host"):
            runs.append(measure())
        if not runs[-1]["passed"]:
            console.print(runs[-1]["stderr_tail"])
            sys.exit(f"run {number + 1} failed; its run directory is {runs[-1]['run_dir']}")
    table = Table(title="python -m calisim two-host (seconds)")
    table.add_column("part")
    for number in range(len(runs)):
        table.add_column(f"run {number + 1}", justify="right")
    for name in runs[0]["parts"]:
        table.add_row(name, *(f"{run['parts'].get(name, 0):.2f}" for run in runs))
    for key in ("wall_s", "cpu_s", "load_average_1min_at_start"):
        table.add_row(key.replace("_", " "), *(str(run[key]) for run in runs),
                      style="bold" if key == "wall_s" else None)
    console.print(table)
    args.json.write_text(json.dumps({"machine_cores": len(os.sched_getaffinity(0)), "before_s": TODAY_S,
                                     "target_s": TARGET_S, "runs": runs}, indent=2))
    plot(runs, args.png)
    console.print(f"written to {args.json} and {args.png}")


if __name__ == "__main__":
    main()
