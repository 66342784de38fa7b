"""`python -m calisim`: build an emulated Calico world in a private namespace and drive it.

  run SCRIPT --topology NAME [--hosts N] [--start-nodes] [--json] [--cli] [--keep-going]
      Replay a transcript (see calisim.scenarios.transcript) on a fresh cluster.
  two-host [--json] [--cli]
      The seed walk-through on the seed's two hosts, then its pings measured with scapy; exits 0
      only if everything matches the seed.
  route-reflectors | fabric-as-per-rack | fabric-as-per-host | fabric-downward-default | cross-subnet
      The other bundled scenarios (calisim.scenarios.bundled), each checked the same way.

Input (script, topology, host count) is checked before anything is built; every run then
re-executes itself inside a fresh network/mount/PID namespace, writes its configs, sockets and
logs under a per-run directory (printed at the start), and stops everything it started on exit,
Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from rich.console import Console

import topologies

from .datastore import DatastoreError
from .emulation import sandbox
from .emulation.cluster import Cluster, ClusterError
from .emulation.rundir import RunDir
from .scenarios import transcript
from .scenarios.bundled import SCENARIOS

EPILOG = """transcript format (one step a line):
  host1$ COMMAND              run COMMAND with bash -c on host1, expect exit 0
  host1! COMMAND              expect a non-zero exit
  within 30s host1$ COMMAND   retry until it meets its expectation or 30 s pass
  # comment                   (a trailing \\ continues a step; here-documents work)

examples:
  python -m calisim two-host
  python -m calisim run steps.txt --topology flat --hosts 10 --start-nodes --json
  python -m calisim run - --topology two_host --cli < steps.txt

Runs keep their logs under $CALISIM_RUNS (default /var/tmp/calisim); the newest is 'latest'."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m calisim", description=__doc__.split("\n\n")[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="replay a transcript on a fresh cluster", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("script", help="transcript file, or - for standard input")
    run.add_argument("--topology", required=True, help=f"one of: {', '.join(topologies.NAMES)}")
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
    return parser


def load_steps(args: argparse.Namespace) -> list[transcript.Step]:
    if args.command in SCENARIOS:
        text = SCENARIOS[args.command].text()
    elif args.script == "-":
        text = sys.stdin.read()
    else:
        text = Path(args.script).read_text()
    return transcript.parse(text)


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


def execute(topo, steps: list[transcript.Step], args: argparse.Namespace) -> int:
    width = None if sys.stdout.isatty() else 140  # tables stay readable in logs and pipes
    console = Console(stderr=args.json, highlight=False, soft_wrap=True, width=width)
    progress = Console(stderr=True, highlight=False, soft_wrap=True, width=width)
    run_dir = RunDir.create(topo.name, args.run_dir)
    logging.basicConfig(filename=run_dir.log, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    progress.print(f"calisim: run directory {run_dir.path}")
    cluster = Cluster(topo, run_dir, args.ipip_backend)
    results: list[transcript.StepResult] = []
    mismatched = False
    try:
        with progress.status(f"building {topo.name}: {len(topo.hosts())} hosts, etcd in {topo.etcd_host}"):
            cluster.start()
        if getattr(args, "start_nodes", False):
            with progress.status(f"calicoctl node run on {len(cluster.hosts)} hosts"):
                cluster.start_nodes()
        results = transcript.run(cluster, steps, lambda r: print_result(console, r, args.json), args.keep_going)
        if not all(r.passed for r in results):
            progress.print(f"calisim: the hosts' state at the failure is in {cluster.diagnose()}")
        document: object = [r.as_dict() for r in results]
        if args.command in SCENARIOS and all(r.passed for r in results) and len(results) == len(steps):
            with progress.status("measuring the outcome (BGP sessions, pings with scapy)"):
                view, summary = SCENARIOS[args.command].check(cluster)
            console.print(view)
            for problem in summary["mismatches"]:
                console.print(f"[red]✗ differs from the expected outcome: {problem}[/]", markup=True)
            document = {"steps": document, "summary": summary}
            mismatched = bool(summary["mismatches"])
        (run_dir.path / "transcript.json").write_text(json.dumps(document, indent=2))
        if args.json:
            print(json.dumps(document, indent=2))
        if args.cli:
            from mininet.cli import CLI
            CLI(cluster.net)
    finally:
        with progress.status("stopping the cluster"):
            cluster.stop()
    passed = sum(r.passed for r in results)
    progress.print(f"transcript: {passed} passed, {len(results) - passed} failed"
                   + (f", {len(steps) - len(results)} not run" if len(results) < len(steps) else "")
                   + f"; logs in {run_dir.path}")
    return 0 if passed == len(steps) and not mismatched else 1


def terminate_gracefully(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through Cluster.stop()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        steps = load_steps(args)
        topo = (SCENARIOS[args.command].load_topology() if args.command in SCENARIOS
                else topologies.load(args.topology, **topologies.given_options(args)))
        transcript.check_hosts(steps, topo.hosts(sort=True))
        RunDir.check_base(args.run_dir, topo.name)
    except (OSError, ValueError) as error:
        sys.exit(f"calisim: {error}")
    if args.command == "run" and args.script == "-":
        # Standard input was consumed; the re-executed run reads the same steps from a file.
        script = RunDir.create("stdin", args.run_dir).path / "script.txt"
        script.write_text("\n".join(step.prompt for step in steps) + "\n")
        argv = [str(script) if a == "-" else a for a in argv]
    try:
        sandbox.enter_fresh([sys.executable, "-m", "calisim", *argv])
    except sandbox.SandboxError as error:
        sys.exit(f"calisim: {error}")
    signal.signal(signal.SIGTERM, terminate_gracefully)
    try:
        sys.exit(execute(topo, steps, args))
    except (ClusterError, DatastoreError) as error:
        sys.exit(f"calisim: {error}")
    except KeyboardInterrupt:
        print("calisim: interrupted; everything the run started has been stopped", file=sys.stderr)
        sys.exit(130)
