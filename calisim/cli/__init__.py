"""`python -m calisim`: build an emulated Calico world in a private namespace and drive it.

  run SCRIPT --topology NAME [--hosts N] [--start-nodes] [--json] [--cli] [--keep-going]
      Replay a transcript (see calisim.scenarios.transcript) on a fresh cluster.
  two-host [--json] [--cli]
      The seed walk-through on the seed's two hosts, then its pings measured with scapy; exits 0
      only if everything matches the seed.
  route-reflectors | fabric-as-per-rack | fabric-as-per-host | fabric-downward-default | cross-subnet
      The other bundled scenarios (calisim.scenarios.bundled), each checked the same way.
  up TOPOLOGY [options] [--start-nodes] [--name NAME] | exec [--lab NAME] HOST [-- CMD...] | ls
  inspect [NAME] [--json] | graph [NAME | --topology T] -o FILE.svg|.png | down [NAME | --all]
  run SCRIPT --lab NAME
      Labs: worlds that keep running, detached, until `down` (see calisim.emulation.lab).

Input (script, topology, host count) is checked before anything is built; every run then
re-executes itself inside a fresh network/mount/PID namespace, writes its configs, sockets and
logs under a per-run directory (printed at the start), and stops everything it started on exit,
Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

import topologies

from ..calicoctl.output import padded_columns
from ..emulation import sandbox
from ..emulation.rundir import RunDir
from ..scenarios import transcript
from ..scenarios.bundled import SCENARIOS
from ..emulation.topology import EMULATION

# Labs, Cluster (Mininet) and the etcd client are imported by the functions that use them: the
# first process of a run only checks its input before re-executing itself in its sandbox.

log = logging.getLogger("calisim")

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
    add_lab_commands(commands)
    return parser


def add_lab_commands(commands) -> None:
    """Labs: worlds that keep running, detached, between commands (calisim.emulation.lab)."""
    up = commands.add_parser("up", help="start a lab that keeps running until `down`")
    up.add_argument("topology", help=f"one of: {', '.join(topologies.NAMES)}")
    topologies.add_arguments(up.add_argument_group("topology options"))
    up.add_argument("--name", help="the lab's name (default: the topology's)")
    up.add_argument("--start-nodes", action="store_true", help="run `calicoctl node run` on every host, wait for the mesh")
    up.add_argument("--run-dir", type=Path, help="where per-run directories go (default $CALISIM_RUNS)")
    up.add_argument("--ipip-backend", choices=("auto", "kernel", "ebpf", "userspace"), default="auto")
    enter = commands.add_parser("exec", help="a login shell on a lab's host, or run a command there")
    enter.add_argument("--lab", metavar="NAME", help="the lab (may be left out while one lab runs)")
    enter.add_argument("host")
    enter.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="[ARGS...] to run (default: a login shell)")
    commands.add_parser("ls", help="list the running labs")
    inspect = commands.add_parser("inspect", help="a lab's hosts, BGP sessions, blocks, workloads and segments")
    inspect.add_argument("name", nargs="?", help="the lab (may be left out while one lab runs)")
    inspect.add_argument("--json", action="store_true", help="print one JSON document")
    graph = commands.add_parser("graph", help="draw a lab, or a topology, as SVG or PNG")
    graph.add_argument("name", nargs="?", help="a running lab (may be left out while one lab runs)")
    graph.add_argument("--topology", help="draw this topology without building it")
    topologies.add_arguments(graph.add_argument_group("topology options"))
    graph.add_argument("-o", "--output", type=Path, required=True, help="FILE.svg or FILE.png")
    fault = commands.add_parser("fault", help="break a lab on purpose: links, loss, daemons, partitions, crashes",
                                add_help=False)
    fault.add_argument("--lab", metavar="NAME", help="the lab (may be left out while one lab runs)")
    fault.add_argument("argv", nargs=argparse.REMAINDER, metavar="VERB ...",
                       help="`calisim fault --help` lists the verbs")
    down = commands.add_parser("down", help="stop a lab: every process by PID, every namespace and mount")
    down.add_argument("name", nargs="?", help="the lab (may be left out while one lab runs)")
    down.add_argument("--all", action="store_true", help="stop every lab")


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
    from ..emulation import lab
    from ..emulation.cluster import Cluster

    console, progress = consoles(args)
    run_dir = RunDir.create(topo.name, args.run_dir)
    logging.basicConfig(filename=run_dir.log, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    progress.print(f"calisim: run directory {run_dir.path}")
    log.info("%s: %d steps on %s", args.command, len(steps), topo.name)
    cluster = Cluster(topo, run_dir, args.ipip_backend)
    results: list[transcript.StepResult] = []
    mismatched = False
    control = None
    try:
        with progress.status(f"building {topo.name}: {len(topo.hosts())} hosts, etcd in {topo.etcd_host}"):
            cluster.start()
        control = lab.serve_in_background(cluster, lab.LabSpec(run_dir.path.name, topo.name))  # for `lab$` steps
        if getattr(args, "start_nodes", False):
            with progress.status(f"calicoctl node run on {len(cluster.hosts)} hosts"):
                cluster.start_nodes()
        results = transcript.run(cluster, steps, lambda r: print_result(console, r, args.json), args.keep_going)
        log.info("transcript: %d of %d steps passed", sum(r.passed for r in results), len(steps))
        if not all(r.passed for r in results):
            progress.print(f"calisim: the hosts' state at the failure is in {cluster.diagnose()}")
        document: object = [r.as_dict() for r in results]
        if args.command in SCENARIOS and all(r.passed for r in results) and len(results) == len(steps):
            with progress.status("measuring the outcome (BGP sessions, pings with scapy)"):
                view, summary = SCENARIOS[args.command].check(cluster)
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
        if control is not None:
            control.stopping.set()
        with progress.status("stopping the cluster"):
            cluster.stop()
    return report_totals(progress, results, steps, run_dir.path, mismatched)


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


# -- labs ------------------------------------------------------------------------------------
LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def lab_up(args: argparse.Namespace) -> int:
    from ..emulation import lab

    options = topologies.given_options(args)
    topology = args.topology.replace("-", "_")
    try:
        topo = topologies.load(topology, **options)
        name = args.name or topo.name
        if not LAB_NAME.match(name):
            raise ValueError(f"a lab's name is 1-32 letters, digits, '_', '.' or '-' (starting with a letter or digit), not {name!r}")
        RunDir.check_base(args.run_dir, name)
    except ValueError as error:
        raise lab.LabError(str(error)) from error
    progress = Console(stderr=True, highlight=False, soft_wrap=True)
    spec = lab.LabSpec(name, topology, options, args.start_nodes, args.ipip_backend)
    with progress.status(f"starting lab {name}: {topo.name}, {len(topo.hosts())} hosts"
                         + (", calicoctl node run on every host" if args.start_nodes else "")):
        record = lab.up(spec, args.run_dir)
    print(f"lab {record.name} is up ({record.topology}); run directory {record.run_dir}\n")
    print(padded_columns(("HOST", "ROLE", "ADDRESSES"),
                         [[h["name"], h["role"], ", ".join(h["addresses"])] for h in record.hosts]))
    first = next((h["name"] for h in record.hosts if h["role"].startswith("calico")), record.hosts[0]["name"])
    print(f"  python -m calisim exec --lab {name} {first}                            a login shell on {first}\n"
          f"  python -m calisim exec --lab {name} {first} -- calicoctl node status   one command\n"
          f"  python -m calisim inspect {name}    python -m calisim down {name}")
    return 0


def lab_exec(args: argparse.Namespace) -> int:
    from ..emulation import lab

    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    registry = lab.Registry()
    if args.lab is None and any(r.name == args.host for r in registry.running()):
        raise lab.LabError(f"{args.host!r} is a lab, not a host: python -m calisim exec --lab {args.host} HOST [-- COMMAND]")
    record = registry.find(args.lab)
    argv, environment = lab.enter_argv(record, args.host, command)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, environment)


def age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def lab_ls(_args: argparse.Namespace) -> int:
    from ..emulation import lab

    rows = []
    for record in lab.Registry().running():
        names = [h["name"] for h in record.hosts]
        rows.append([record.name, record.topology, ", ".join(names) if len(names) <= 4 else f"{len(names)} hosts",
                     age(time.time() - record.started), record.run_dir])
    print(padded_columns(("NAME", "TOPOLOGY", "HOSTS", "AGE", "RUN DIRECTORY"), rows), end="")
    return 0


def lab_inspect(args: argparse.Namespace) -> int:
    from ..emulation import lab

    record = lab.Registry().find(args.name)
    state = record.client().call("inspect")
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    print(f"lab {record.name} ({record.topology}), up {age(time.time() - record.started)}; run directory {record.run_dir}\n")
    rows = []
    for host in state["hosts"]:
        addresses = ", ".join(f"{name} {' '.join(ips)}" for name, ips in host["interfaces"].items())
        if "bgp" not in host:
            rows.append([host["name"], host["role"], addresses, "", "", "", ""])
            continue
        rows.append([host["name"], host["role"], addresses, "running" if host["calico_node"] else "stopped",
                     f"{host['established']}/{len(host['bgp'])} Established", ", ".join(host["blocks"]) or "-",
                     ", ".join(f"{w['name']} {' '.join(w['addresses'])}".strip() for w in host["workloads"]) or "-"])
    print(padded_columns(("HOST", "ROLE", "ADDRESSES", "CALICO-NODE", "BGP", "BLOCKS", "WORKLOADS"), rows))
    routers = [[h["name"], ", ".join(h["joins"])] for h in state["hosts"] if h["role"] == "router"]
    if routers:
        print(padded_columns(("ROUTER", "JOINS"), routers))
    print(padded_columns(("SEGMENT", "JOINS"), [[s["name"], ", ".join(s["joins"])] for s in state["segments"]]), end="")
    if state.get("faults"):
        print("\nfaults in force:")
        for fault in state["faults"]:
            print("  " + ", ".join(f"{key}={value}" for key, value in sorted(fault.items())))
    return 0


def lab_graph(args: argparse.Namespace) -> int:
    from ..emulation import graph, lab

    if args.output.suffix not in (".svg", ".png"):
        raise lab.LabError(f"the picture's file name must end in .svg or .png, not {args.output.name!r}")
    if args.topology:
        try:
            topo = topologies.load(args.topology, **topologies.given_options(args))
        except ValueError as error:
            raise lab.LabError(str(error)) from error
        written = graph.write(topo, args.output)
    else:
        record = lab.Registry().find(args.name)
        topo = topologies.load(record.topology, **record.options)
        written = graph.write(topo, args.output, record.client().call("inspect"), title=f"lab {record.name}")
    print(f"calisim: wrote {written}")
    return 0


def lab_down(args: argparse.Namespace) -> int:
    from ..emulation import lab

    registry = lab.Registry()
    records = registry.running() if args.all else [registry.find(args.name)]
    for record in records:
        with Console(stderr=True).status(f"stopping lab {record.name}"):
            lab.down(record, registry)
        print(f"lab {record.name} is down; logs kept in {record.run_dir}")
    return 0


def lab_fault(args: argparse.Namespace) -> int:
    """`fault [--lab NAME] VERB ...`: checked here, carried out by the lab (or, in a transcript's
    `lab$` step, by the run that serves $CALISIM_LAB_SOCKET)."""
    from ..emulation import faults, lab
    from ..emulation.cluster import CONTROL_SOCKET_ENV

    if not args.argv or args.argv[0] in ("-h", "--help"):
        faults.command_parser().print_help()
        return 0
    try:
        faults.check_values(faults.command_parser().parse_args(args.argv))
    except faults.FaultError as error:
        raise lab.LabError(str(error)) from None
    socket_path = os.environ.get(CONTROL_SOCKET_ENV)
    client = lab.LabClient(Path(socket_path)) if socket_path and not args.lab else lab.Registry().find(args.lab).client()
    print(client.call("fault", argv=args.argv))
    return 0


LAB_COMMANDS = {"up": lab_up, "exec": lab_exec, "ls": lab_ls, "inspect": lab_inspect, "graph": lab_graph,
                "fault": lab_fault, "down": lab_down}


def run_on_lab(args: argparse.Namespace) -> int:
    """`run SCRIPT --lab NAME`: the transcript against a running lab, printed as on a fresh cluster."""
    from ..emulation import lab

    if args.topology or args.start_nodes or args.cli:
        raise lab.LabError("--topology, --start-nodes and --cli belong to a fresh cluster; a lab was built by `up`")
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
    (Path(record.run_dir) / f"transcript-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(document, indent=2))
    if args.json:
        print(json.dumps(document, indent=2))
    return report_totals(progress, results, steps, record.run_dir)


def terminate_gracefully(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through Cluster.stop()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "fault":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "fault":
        args.argv = unknown + args.argv  # `fault --help`, `fault partition h --from etcd`: the verb's own options
    if args.command in LAB_COMMANDS or getattr(args, "lab", None) and args.command == "run":
        from .emulation import lab

        try:
            sys.exit(LAB_COMMANDS[args.command](args) if args.command in LAB_COMMANDS else run_on_lab(args))
        except lab.LabError as error:
            print(f"calisim: {error}", file=sys.stderr)
            sys.exit(2)
    if args.command == "run" and not args.topology:
        sys.exit("calisim: run needs --topology (a fresh cluster) or --lab NAME (a running lab)")
    try:
        steps = load_steps(args)
        topo = (SCENARIOS[args.command].load_topology() if args.command in SCENARIOS
                else topologies.load(args.topology, **topologies.given_options(args)))
        transcript.check_hosts(steps, [*topo.hosts(sort=True), EMULATION])
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
    from ..datastore import DatastoreError
    from ..emulation.cluster import ClusterError

    try:
        sys.exit(execute(topo, steps, args))
    except (ClusterError, DatastoreError) as error:
        sys.exit(f"calisim: {error}")
    except KeyboardInterrupt:
        print("calisim: interrupted; everything the run started has been stopped", file=sys.stderr)
        sys.exit(130)
