"""The run commands: `run SCRIPT` and the bundled scenarios replay a transcript on a fresh
cluster (checked here, then forked into a sandbox of its own), `run SCRIPT --lab NAME` on a
running lab; the results printed as steps, the exit code 0 only if every step passed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

from rich.console import Console

import topologies

from ..emulation import sandbox
from ..emulation.rundir import RunDir
from ..emulation.sandbox import EMULATION
from ..process import signals
from ..scenarios import transcript
from ..scenarios.bundled import SCENARIOS, Scenario
from ..servers.placement import parse_place
from .progress import StageBars
from .servers import add_server_options, check_server_options

log = logging.getLogger("calisim")

EPILOG = """transcript format (one step a line):
  host1$ COMMAND              run COMMAND with bash -c on host1, expect exit 0
  host1! COMMAND              expect a non-zero exit
  within 30s host1$ COMMAND   retry until it meets its expectation or 30 s pass
  # comment                   (a trailing \\ continues a step; here-documents work)

examples:
  calisim two-host
  calisim run steps.txt --topology flat --hosts 10 --start-nodes --json
  calisim run - --topology two_host --cli < steps.txt

Runs keep their logs under $CALISIM_RUNS (default /var/tmp/calisim); the newest is 'latest'."""


def add_run_commands(commands) -> None:
    """`run` and one command per bundled scenario, with the options they share."""
    run = commands.add_parser("run", help="replay a transcript on a fresh cluster", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("script", help="transcript file, or - for standard input")
    run.add_argument("--topology", help=f"one of: {', '.join(topologies.NAMES)} (a fresh cluster)")
    run.add_argument("--lab", metavar="NAME", help="replay on the running lab NAME instead (see `up`)")
    topologies.add_arguments(run.add_argument_group("topology options"))
    run.add_argument("--start-nodes", action="store_true", help="run `calicoctl node run` on every host first")
    bundled = [commands.add_parser(name, help=scenario.help) for name, scenario in SCENARIOS.items()]
    for sub in (run, *bundled):
        sub.add_argument("--json", action="store_true", help="print the results as one JSON document")
        sub.add_argument("--cli", action="store_true", help="open Mininet's CLI on the cluster afterwards")
        sub.add_argument("--keep-going", action="store_true", help="run every step even after one fails")
        sub.add_argument("--run-dir", type=Path, help="where per-run directories go (default $CALISIM_RUNS)")
        sub.add_argument("--ipip-backend", choices=("auto", "kernel", "ebpf", "userspace"), default="auto",
                         help="tunl0's backend (auto: the kernel's ipip if present, else eBPF if it loads, "
                              "else userspace); "
                              "calico-node prints which it uses")
        add_server_options(sub)


def load_steps(args: argparse.Namespace) -> list[transcript.Step]:
    if args.command in SCENARIOS:
        text = SCENARIOS[args.command].text()
    elif args.script == "-":
        text = sys.stdin.read()
    else:
        text = Path(args.script).read_text()
    return transcript.parse(text, allow_empty=args.cli)


def print_result(console: Console, result: transcript.StepResult, as_json: bool) -> None:
    mark = "[green]✓[/]" if result.passed else "[red]✗[/]"
    if as_json:
        console.print(f"{mark} {result.step.prompt.splitlines()[0]}", markup=True, highlight=False)
        return
    console.print(f"[bold]{result.step.prompt}[/]", markup=True, highlight=False)
    for stream in (result.stdout, result.stderr):
        if stream:
            console.out(stream.rstrip("\n"), highlight=False)
    if not result.passed:
        expected = "exit 0" if result.step.expect_success else "a non-zero exit"
        retried = f" after {result.attempts} attempts in {result.seconds:.1f}s" if result.attempts > 1 else ""
        console.print(f"[red]✗ line {result.step.line}: expected {expected}, got {result.rc}{retried}[/]",
                      markup=True, highlight=False)


def execute(topo, steps: list[transcript.Step], args: argparse.Namespace, run_dir: RunDir,
            zygote_process: subprocess.Popen | None) -> int:
    from ..emulation import lab
    from ..emulation.cluster import Cluster
    from .fault import run_command as run_fault_command

    console, progress = consoles(args)
    logging.basicConfig(filename=run_dir.log, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    progress.print(f"calisim: run directory {run_dir.path}")
    log.info("%s: %d steps on %s", args.command, len(steps), topo.name)
    cluster = Cluster(topo, run_dir, args.ipip_backend, servers=args.servers, place=parse_place(args.place) or None)
    cluster.zygote = zygote_process  # stopped by the cluster from here on
    results: list[transcript.StepResult] = []
    outcome = Outcome(cluster, SCENARIOS.get(args.command))
    mismatched = False
    control = None
    try:
        etcd = ", ".join(topo.etcd_nodes())
        with StageBars(progress, f"building {topo.name}: {len(topo.hosts())} hosts, etcd in {etcd}") as bars:
            cluster.progress = bars
            cluster.start()
            control = lab.serve_in_background(cluster, lab.LabSpec(run_dir.path.name, topo.name),  # for `lab$` steps
                                              run_fault_command)
            if getattr(args, "start_nodes", False):
                cluster.start_nodes()
        results = transcript.run(cluster, steps, lambda r: (print_result(console, r, args.json), outcome.passed(r)),
                                 args.keep_going)
        log.info("transcript: %d of %d steps passed", sum(r.passed for r in results), len(steps))
        if not all(r.passed for r in results):
            progress.print(f"calisim: the hosts' state at the failure is in {cluster.diagnose()}")
        document: object = [r.as_dict() for r in results]
        if args.command in SCENARIOS and all(r.passed for r in results) and len(results) == len(steps):
            with progress.status("measuring the outcome (BGP sessions, pings with scapy)"):
                view, summary = outcome.measured()
            log.info("outcome measured: %d mismatches", len(summary["mismatches"]))
            console.print(view)
            for problem in summary["mismatches"]:
                console.print(f"[red]✗ differs from the expected outcome: {problem}[/]", markup=True)
            document = {"steps": document, "summary": summary}
            mismatched = bool(summary["mismatches"])
        (run_dir.path / "transcript.json").write_text(json.dumps(document, indent=2))
        if args.json:
            print(json.dumps(document, indent=2))
        if args.cli:
            cluster.cli()
    finally:
        outcome.close()
        if control is not None:
            control.stopping.set()
        with progress.status("stopping the cluster"):
            cluster.stop()
    return report_totals(progress, results, steps, run_dir.path, mismatched)


class Outcome:
    """A bundled scenario's check of the outcome, run alongside the transcript's last steps once the
    step it is measured from has passed (they only read: pings, inspections), else after them."""

    def __init__(self, cluster, scenario: Scenario | None):
        self.cluster, self.scenario = cluster, scenario
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome")
        self.early: Future | None = None

    def passed(self, result: transcript.StepResult) -> None:
        if (self.scenario is not None and result.passed and self.early is None
                and result.step.command == self.scenario.measure_from):
            self.early = self.pool.submit(self.scenario.check, self.cluster)

    def measured(self) -> tuple[object, dict]:
        return self.early.result() if self.early is not None else self.scenario.check(self.cluster)

    def close(self) -> None:
        """Before the cluster stops: a check still running (the transcript failed meanwhile) ends first."""
        self.pool.shutdown(wait=True)


def consoles(args: argparse.Namespace) -> tuple[Console, Console]:
    """Where results go (standard error under --json) and where progress goes."""
    width = None if sys.stdout.isatty() else 140  # tables stay readable in logs and pipes
    return (Console(stderr=args.json, highlight=False, soft_wrap=True, width=width),
            Console(stderr=True, highlight=False, soft_wrap=True, width=width))


def report_totals(progress: Console, results: list[transcript.StepResult], steps: list[transcript.Step],
                  logs: object, mismatched: bool = False) -> int:
    """Print the transcript's totals; the exit code: 0 only if every step ran and passed."""
    passed = sum(r.passed for r in results)
    progress.print(f"transcript: {passed} passed, {len(results) - passed} failed"
                   + (f", {len(steps) - len(results)} not run" if len(results) < len(steps) else "")
                   + f"; logs in {logs}")
    return 0 if passed == len(steps) and not mismatched else 1


def run_on_lab(args: argparse.Namespace) -> int:
    """`run SCRIPT --lab NAME`: the transcript against a running lab, printed as on a fresh cluster."""
    from ..emulation import lab

    if args.topology or args.start_nodes or args.cli or args.servers or args.place:
        raise lab.LabError("--topology, --start-nodes, --cli, --servers and --place belong to a fresh cluster; "
                           "a lab was built by `up`")
    record = lab.Registry().find(args.lab)
    try:
        steps = load_steps(args)
        transcript.check_hosts(steps, [*(h["name"] for h in record.hosts), EMULATION])
    except (OSError, ValueError) as error:
        raise lab.LabError(str(error)) from error
    console, progress = consoles(args)
    progress.print(f"calisim: lab {record.name}, run directory {record.run_dir}")
    client = record.client()
    results = transcript.run(client, steps, lambda r: print_result(console, r, args.json), args.keep_going)
    if not all(r.passed for r in results):
        progress.print(f"calisim: the hosts' state at the failure is in {client.call('diagnose')}")
    document = [r.as_dict() for r in results]
    (Path(record.run_dir) / f"transcript-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(document, indent=2))
    if args.json:
        print(json.dumps(document, indent=2))
    return report_totals(progress, results, steps, record.run_dir)


def run_fresh(args: argparse.Namespace) -> None:
    """`run --topology` or a bundled scenario: check the input, go on in a fresh sandbox (forked
    there), build the cluster and replay; exits with the transcript's code."""
    if args.command == "run" and not args.topology:
        sys.exit("calisim: run needs --topology (a fresh cluster) or --lab NAME (a running lab)")
    try:
        steps = load_steps(args)
        topo = (SCENARIOS[args.command].load_topology() if args.command in SCENARIOS
                else topologies.load(args.topology, **topologies.given_options(args)))
        transcript.check_hosts(steps, [*topo.hosts(sort=True), EMULATION])
        check_server_options(args, topo)
        RunDir.check_base(args.run_dir, topo.name)
    except (OSError, ValueError) as error:  # bad input: one line, exit 2, nothing started
        print(f"calisim: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        sandbox.enter_fresh()  # forks: the steps checked here, and this process's imports, go along
    except sandbox.SandboxError as error:
        sys.exit(f"calisim: {error}")
    signals.unwind_on(signal.SIGTERM)  # through Cluster.stop()
    from ..node.zygote import ZygoteDaemon

    run_dir = RunDir.create(topo.name, args.run_dir)
    # The node zygote first: its imports (calico-node's, dockerd's) overlap this process's next
    # ones and the network's build, instead of following them.  Not where the hosts' views are
    # refused: the cluster then stops the run, saying why, before any daemon starts.
    zygote = ZygoteDaemon.of_run(run_dir.path)
    zygote_process = zygote.spawn() if views_allowed(run_dir) else None
    try:
        code = execute_in_sandbox(topo, steps, args, run_dir, zygote_process)
    finally:
        if zygote_process is not None and zygote_process.poll() is None:  # the run ended before its cluster took it
            zygote.stop(zygote_process)
    leave(code)


def views_allowed(run_dir: RunDir) -> bool:
    """Whether overlayfs takes the hosts' copy-on-write upper directories in this run directory."""
    from ..emulation import overlay

    try:
        overlay.probe(run_dir.path / "hosts")
    except overlay.OverlayError:
        return False
    return True


def leave(code: int | str) -> NoReturn:
    """sys.exit(code) without unwinding the interpreter: everything the run started is stopped
    and its output and log are flushed here; what is left is teardown of this process's own
    (gRPC's threads, Mininet's, thread pools, modules), 0.05 s of the seed demo's exit on a
    quiet machine and up to a second under load."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def execute_in_sandbox(topo, steps: list[transcript.Step], args: argparse.Namespace, run_dir: RunDir,
                       zygote_process: subprocess.Popen | None) -> int | str:
    """execute, a run's failure as one line: the code or message for sys.exit."""
    from ..datastore import DatastoreError
    from ..emulation.cluster import ClusterError
    from ..servers.watchdog import ServerLost

    try:
        return execute(topo, steps, args, run_dir, zygote_process)
    except (ClusterError, DatastoreError, ServerLost) as error:  # ServerLost: the run stopped on every other server
        return f"calisim: {error}"
    except KeyboardInterrupt:
        print("calisim: interrupted; everything the run started has been stopped", file=sys.stderr)
        return 130
