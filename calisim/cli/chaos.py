"""`calisim chaos`: a seeded schedule of faults on a running lab (`--lab`) or on a fresh one built
for the run (`--topology`, stopped afterwards), while workloads come and go, with the invariants
of calisim.chaos.engine watched the whole time; a report table, a JSON document and a PNG
timeline; exit 0 only if every invariant held."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

import topologies

from ..chaos import schedule
from ..chaos.schedule import KINDS, ChaosError
from .labs import LAB_PROCESS
from .progress import StageBars

if TYPE_CHECKING:
    from ..chaos.engine import ChaosResult, ChaosSpec
    from ..emulation import lab

# The engine, the lab and their Mininet are imported by the functions that run the chaos: every
# command's first process parses its arguments with this module loaded, and most never need them.

EPILOG = "fault kinds:\n" + "\n".join(f"  {kind:12} {what}" for kind, what in KINDS.items()) + """

examples:
  calisim chaos --topology two_host --seed 7 --duration 2m
  calisim chaos --lab two_host --kinds link,partition,etcd --every 15 --lasting 8 --json"""


def add_chaos_command(commands) -> None:
    chaos = commands.add_parser("chaos", help="a seeded schedule of faults with invariants watched all the time",
                                description=__doc__.split("\n\n")[0].removeprefix("`calisim chaos`: "), epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = chaos.add_mutually_exclusive_group()
    where.add_argument("--lab", metavar="NAME", help="a running lab, its nodes started (may be left out while one "
                                                     "lab runs)")
    where.add_argument("--topology", help="build a fresh lab of this topology for the run (stopped after it): "
                                          + ", ".join(topologies.NAMES))
    topologies.add_arguments(chaos.add_argument_group("topology options (with --topology)"))
    chaos.add_argument("--seed", default=None, help="the schedule's seed (default: drawn and printed); "
                                                    "the same seed replays the same schedule")
    chaos.add_argument("--duration", default="120", help="how long, in seconds (120, 120s, 2m; default 120)")
    chaos.add_argument("--kinds", default=",".join(KINDS), help=f"the fault kinds to draw from (default: all: "
                                                                 f"{','.join(KINDS)})")
    chaos.add_argument("--every", default="10",
                       help="mean seconds between a fault's recovery and the next (default 10)")
    chaos.add_argument("--lasting", default="6", help="longest seconds a fault lasts (default 6)")
    chaos.add_argument("--recovery", default="60", help="bound in seconds for every pair to answer and every BGP "
                                                        "session to be Established after a heal (default 60)")
    chaos.add_argument("--png", type=Path, help="the timeline (default: chaos-SEED.png in the lab's run directory)")
    chaos.add_argument("--json", action="store_true", help="print the report as one JSON document")
    chaos.add_argument("--run-dir", type=Path, help="where the fresh lab's run directory goes (with --topology)")


def checked_spec(args: argparse.Namespace) -> ChaosSpec:
    """The run's parameters, every one checked (ChaosError: one line)."""
    from ..chaos.engine import ChaosSpec

    seed = schedule.parse_seed(args.seed) if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    spec = ChaosSpec(seed, schedule.parse_seconds(args.duration, "--duration"), schedule.parse_kinds(args.kinds),
                     schedule.parse_seconds(args.every, "--every"), schedule.parse_seconds(args.lasting, "--lasting"),
                     schedule.parse_seconds(args.recovery, "--recovery"))
    if args.png is not None and (args.png.suffix != ".png" or not args.png.resolve().parent.is_dir()):
        raise ChaosError(f"--png must name a .png file in an existing directory, not {str(args.png)!r}")
    return spec


def chaos_command(args: argparse.Namespace) -> int:
    """Check everything, then run on the lab (or a fresh one); the exit code."""
    from ..emulation import lab

    try:
        spec = checked_spec(args)
        topo = topologies.load(args.topology, **topologies.given_options(args)) if args.topology else None
    except (ChaosError, ValueError) as error:
        raise lab.LabError(str(error)) from None
    if topo is None:
        registry = lab.Registry()
        if args.lab is None and not registry.running():
            raise lab.LabError("no lab is running: `calisim up TOPOLOGY --start-nodes` first, or "
                               "`calisim chaos --topology TOPOLOGY` for a lab of the run's own")
        return run_on(registry.find(args.lab), spec, args)
    name = f"chaos-{time.strftime('%H%M%S')}-{os.getpid()}"  # unique beside the labs of other runs
    options = topologies.given_options(args)
    with StageBars(Console(stderr=True, highlight=False, soft_wrap=True),
                   f"starting lab {name}: {topo.name}, {len(topo.hosts())} hosts") as bars:
        record = lab.up(lab.LabSpec(name, args.topology, options, start_nodes=True), LAB_PROCESS, args.run_dir,
                        progress=bars)
    try:
        return run_on(record, spec, args)
    finally:
        with Console(stderr=True).status(f"stopping lab {name}"):
            lab.down(record)


def run_on(record: lab.LabRecord, spec: ChaosSpec, args: argparse.Namespace) -> int:
    from ..chaos.engine import Chaos, Violation
    from ..chaos.target import LabTarget
    from ..emulation import sandbox

    progress = Console(stderr=True, highlight=False, soft_wrap=True)
    target = LabTarget(record)
    stopped = [h["name"] for h in target.inspect()["hosts"] if h["name"] in target.hosts and not h["calico_node"]]
    if stopped:
        raise lab.LabError(f"chaos needs calico-node on every host; not running on {', '.join(stopped)} "
                           f"(`calisim up {record.topology} --start-nodes`)")
    chaos = Chaos(target, spec)
    progress.print(f"calisim: chaos on lab {record.name}, seed {spec.seed}, {spec.duration:.0f}s, "
                   f"{len(chaos.faults)} faults ({', '.join(spec.kinds)}), {len(chaos.changes)} workload changes")
    before = sandbox.snapshot()
    try:
        with progress.status(f"chaos for {spec.duration:.0f}s (Ctrl-C heals the fault in force and stops)"):
            result = chaos.run()
    except KeyboardInterrupt:
        progress.print("calisim: interrupted: the fault in force is healed; removing the run's workloads")
        return 130
    finally:
        chaos.clean_up()
    after = sandbox.snapshot()
    changed = [part for part in before if before[part] != after.get(part)]  # links, routes, ..., etc
    if changed:
        aside = " (etc: the machine's /etc, which anything on the machine may write)" if "etc" in changed else ""
        result.violations.append(Violation(round(time.time() - result.started, 2), "caller's namespace",
                                           f"changed during the run: {', '.join(changed)}{aside}", "none"))
    return write_report(result, record, args)


def write_report(result: ChaosResult, record: lab.LabRecord, args: argparse.Namespace) -> int:
    from ..chaos import report

    stamp = f"chaos-{result.spec.seed}"
    png = report.write_png(result, args.png or Path(record.run_dir) / f"{stamp}.png")
    saved = Path(record.run_dir) / f"{stamp}.json"
    saved.write_text(json.dumps(report.document(result), indent=2))
    width = None if sys.stdout.isatty() else 140  # tables stay readable in logs and pipes, as `run`'s
    console = Console(stderr=args.json, highlight=False, soft_wrap=True, width=width)
    report.print_tables(console, result)
    console.print(f"timeline {png}; report {saved}")
    if args.json:
        print(json.dumps(report.document(result), indent=2))
    return 0 if result.passed else 1
