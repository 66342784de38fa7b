"""The lab commands: up (and up --from), exec, ls, inspect, graph, fault, save, down and capture
(calisim.emulation.lab).  Each checks its input here and then talks to the lab's control socket;
LabError is the one-line refusal the CLI prints (exit code 2)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from rich.console import Console

import topologies

from ..calicoctl.output import padded_columns
from ..emulation.rundir import RunDir
from .capture import add_capture_command, lab_capture
from .progress import StageBars
from .servers import add_server_options, check_server_options

LAB_PROCESS = [sys.executable, "-m", "calisim.cli.lab_process"]  # what `up` runs in the lab's sandbox


def add_lab_commands(commands) -> None:
    """Labs: worlds that keep running, detached, between commands (calisim.emulation.lab)."""
    up = commands.add_parser("up", help="start a lab that keeps running until `down`")
    up.add_argument("topology", nargs="?", help=f"one of: {', '.join(topologies.NAMES)} (or --from FILE)")
    up.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                    help="bring back a lab `calisim save` wrote: its topology, etcd, calico-nodes and containers")
    topologies.add_arguments(up.add_argument_group("topology options"))
    up.add_argument("--name", help="the lab's name (default: the topology's)")
    up.add_argument("--start-nodes", action="store_true",
                    help="run `calicoctl node run` on every host, wait for the mesh")
    up.add_argument("--run-dir", type=Path, help="where per-run directories go (default $CALISIM_RUNS)")
    up.add_argument("--ipip-backend", choices=("auto", "kernel", "ebpf", "userspace"), default="auto")
    up.add_argument("--bgp-hold-time", type=int, metavar="SECONDS",
                    help="BGP hold time (default BIRD's 240 s, as Calico): a cut link drops its sessions after it")
    add_server_options(up)
    enter = commands.add_parser("exec", help="a login shell on a lab's host, or run a command there")
    enter.add_argument("--lab", metavar="NAME", help="the lab (may be left out while one lab runs)")
    enter.add_argument("host")
    enter.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                       help="[ARGS...] to run (default: a login shell)")
    commands.add_parser("ls", help="list the running labs")
    inspect = commands.add_parser("inspect", help="a lab's hosts, BGP sessions, blocks, workloads and segments")
    inspect.add_argument("name", nargs="?", help="the lab (may be left out while one lab runs)")
    inspect.add_argument("--json", action="store_true", help="print one JSON document")
    graph = commands.add_parser("graph", help="draw a lab, or a topology, as SVG or PNG")
    graph.add_argument("name", nargs="?", help="a running lab (may be left out while one lab runs)")
    graph.add_argument("--topology", help="draw this topology without building it")
    topologies.add_arguments(graph.add_argument_group("topology options"))
    graph.add_argument("-o", "--output", type=Path, required=True, help="FILE.svg or FILE.png")
    add_server_options(graph)
    fault = commands.add_parser("fault", help="break a lab on purpose: links, loss, daemons, partitions, crashes",
                                add_help=False)
    fault.add_argument("--lab", metavar="NAME", help="the lab (may be left out while one lab runs)")
    fault.add_argument("argv", nargs=argparse.REMAINDER, metavar="VERB ...",
                       help="`calisim fault --help` lists the verbs")
    page = commands.add_parser("web", help="a lab's live page on 127.0.0.1 (topology, BGP, faults, probes)",
                               description="Serve a running lab's live page on 127.0.0.1 until Ctrl-C: the topology "
                                           "with its BGP sessions, daemons, blocks, workloads and faults, updated "
                                           "as the lab changes; a host's routes, BIRD and nftables on a click; "
                                           "faults injected and healed; probe streams between workloads. The "
                                           "lab is reached only through its control socket.")
    page.add_argument("--lab", metavar="NAME", help="the lab (may be left out while one lab runs)")
    page.add_argument("--port", type=int, default=8080, help="the port on 127.0.0.1 (default 8080; 0: any free one)")
    save = commands.add_parser("save", help="save a lab to a file: topology, etcd snapshot, containers",
                               description="Save a running lab to FILE: its topology and settings, a snapshot "
                                           "of its etcd (Calico's state, Docker's networks) and each host's "
                                           "calico-node and containers; `calisim up --from FILE` brings it back.")
    save.add_argument("name", nargs="?", help="the lab (may be left out while one lab runs)")
    save.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="the file to write")
    down = commands.add_parser("down", help="stop a lab: every process by PID, every namespace and mount")
    down.add_argument("name", nargs="?", help="the lab (may be left out while one lab runs)")
    down.add_argument("--all", action="store_true", help="stop every lab")
    add_capture_command(commands)


LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def lab_up(args: argparse.Namespace) -> int:
    from ..emulation import lab

    if args.from_file is not None:
        return lab_up_from(args)
    if args.topology is None:
        raise lab.LabError(f"up needs a TOPOLOGY ({', '.join(topologies.NAMES)}) or --from FILE")
    options = topologies.given_options(args)
    topology = args.topology.replace("-", "_")
    try:
        topo = topologies.load(topology, **options)
        name = args.name or topo.name
        check_name_and_base(name, args.run_dir, args.bgp_hold_time)
        choice = check_server_options(args, topo)
    except ValueError as error:
        raise lab.LabError(str(error)) from error
    spec = lab.LabSpec(name, topology, options, args.start_nodes, args.ipip_backend, args.bgp_hold_time,
                       servers=choice.servers, place=choice.place)
    return start_lab(spec, args.run_dir, f"starting lab {name}: {topo.name}, {len(topo.hosts())} hosts"
                     + (", calicoctl node run on every host" if args.start_nodes else ""))


def lab_up_from(args: argparse.Namespace) -> int:
    """`up --from FILE`: the saved lab's topology and settings (--name and --bgp-hold-time may
    change them), everything checked before anything starts."""
    from ..emulation import lab, snapshot

    if args.topology or topologies.given_options(args) or args.start_nodes:
        raise lab.LabError("--from FILE brings back the saved topology, its options and its calico-nodes: "
                           "give no TOPOLOGY, topology options or --start-nodes with it")
    try:
        saved, _ = snapshot.read(args.from_file)
        topo = topologies.load(saved.topology, **saved.options)
        name = args.name or saved.name
        check_name_and_base(name, args.run_dir, args.bgp_hold_time)
        choice = check_server_options(args, topo)
    except ValueError as error:
        raise lab.LabError(str(error)) from error
    hold = saved.bgp_hold_time if args.bgp_hold_time is None else args.bgp_hold_time
    spec = lab.LabSpec(name, saved.topology, saved.options, False, saved.ipip_backend, hold,
                       restore=str(args.from_file.resolve()), servers=choice.servers, place=choice.place)
    return start_lab(spec, args.run_dir, f"restoring lab {name} from {args.from_file}: {topo.name}, "
                                         f"{saved.summary()}")


def check_name_and_base(name: str, run_dir: Path | None, hold: int | None) -> None:
    """ValueError for a lab name, run directory or BGP hold time `up` cannot use."""
    if not LAB_NAME.match(name):
        raise ValueError("a lab's name is 1-32 letters, digits, '_', '.' or '-' (starting with a letter or digit), "
                         f"not {name!r}")
    RunDir.check_base(run_dir, name)
    from ..node.bird import BirdError, Timers  # BIRD's config (pyroute2, Jinja2): only `up` needs it

    try:
        Timers(hold=hold)  # BirdError for less than BGP's 3 s
    except BirdError as error:
        raise ValueError(str(error)) from None


def start_lab(spec, run_base: Path | None, heading: str) -> int:
    """Start the lab, its stages as bars, and print its hosts and how to reach them."""
    from ..emulation import lab

    name = spec.name
    with StageBars(Console(stderr=True, highlight=False, soft_wrap=True), heading) as bars:
        record = lab.up(spec, LAB_PROCESS, run_base, progress=bars)
    print(f"lab {record.name} is up ({record.topology}); run directory {record.run_dir}\n")
    print(padded_columns(("HOST", "ROLE", "ADDRESSES"),
                         [[h["name"], h["role"], ", ".join(h["addresses"])] for h in record.hosts]))
    first = next((h["name"] for h in record.hosts if h["role"].startswith("calico")), record.hosts[0]["name"])
    print(f"  calisim exec --lab {name} {first}                            a login shell on {first}\n"
          f"  calisim exec --lab {name} {first} -- calicoctl node status   one command\n"
          f"  calisim inspect {name}    calisim down {name}")
    return 0


def lab_exec(args: argparse.Namespace) -> int:
    from ..emulation import lab

    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    registry = lab.Registry()
    if args.lab is None and any(r.name == args.host for r in registry.running()):
        raise lab.LabError(f"{args.host!r} is a lab, not a host: "
                           f"calisim exec --lab {args.host} HOST [-- COMMAND]")
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
    records = lab.Registry().running()
    spread = any("server" in host for record in records for host in record.hosts)
    for record in records:
        names = [h["name"] for h in record.hosts]
        rows.append([record.name, record.topology, ", ".join(names) if len(names) <= 4 else f"{len(names)} hosts",
                     *([servers_summary(record.hosts)] if spread else []),
                     age(time.time() - record.started), record.run_dir])
    print(padded_columns(("NAME", "TOPOLOGY", "HOSTS", *(("SERVERS",) if spread else ()), "AGE", "RUN DIRECTORY"),
                         rows), end="")
    return 0


def servers_summary(hosts: list[dict]) -> str:
    """Where a lab's nodes run: "server1: 2, server2: 3" (nodes a server); "-" on this machine alone."""
    counts: dict[str, int] = {}
    for host in hosts:
        if "server" in host:
            counts[host["server"]] = counts.get(host["server"], 0) + 1
    return ", ".join(f"{server}: {count}" for server, count in counts.items()) or "-"


def lab_inspect(args: argparse.Namespace) -> int:
    from ..emulation import lab
    from ..emulation.state import bgp_summary

    record = lab.Registry().find(args.name)
    state = record.client().call("inspect")
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    print(f"lab {record.name} ({record.topology}), up {age(time.time() - record.started)}; "
          f"run directory {record.run_dir}\n")
    rows = []
    spread = any("server" in host for host in state["hosts"])
    for host in state["hosts"]:
        addresses = ", ".join(f"{name} {' '.join(ips)}" for name, ips in host["interfaces"].items())
        where = [host.get("server", "-")] if spread else []
        if "bgp" not in host:
            rows.append([host["name"], host["role"], *where, addresses, "", "", "", ""])
            continue
        rows.append([host["name"], host["role"], *where, addresses, "running" if host["calico_node"] else "stopped",
                     bgp_summary(host["bgp"]).removeprefix("BGP "), ", ".join(host["blocks"]) or "-",
                     ", ".join(f"{w['name']} {' '.join(w['addresses'])}".strip() for w in host["workloads"]) or "-"])
    print(padded_columns(("HOST", "ROLE", *(("SERVER",) if spread else ()), "ADDRESSES", "CALICO-NODE", "BGP",
                          "BLOCKS", "WORKLOADS"), rows))
    routers = [[h["name"], ", ".join(h["joins"])] for h in state["hosts"] if h["role"] == "router"]
    if routers:
        print(padded_columns(("ROUTER", "JOINS"), routers))
    print(padded_columns(("SEGMENT", "JOINS"), [[s["name"], ", ".join(s["joins"])] for s in state["segments"]]), end="")
    down = [f"  {h['name']}: {h['dockerd_error']}" for h in state["hosts"] if h.get("dockerd_error")]
    if down:
        print("\ndockerd not running:", *down, sep="\n")
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
            placement = check_server_options(args, topo).placement
        except ValueError as error:
            raise lab.LabError(str(error)) from error
        written = graph.write(topo, args.output, placement=placement)
    else:
        if args.servers or args.place:
            raise lab.LabError("--servers and --place draw a topology's placement (with --topology); "
                               "a lab is drawn where it runs")
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
    from ..emulation import lab
    from ..emulation.cluster import CONTROL_SOCKET_ENV
    from ..emulation.faults import FaultError
    from .fault import check_values, command_parser

    if not args.argv or args.argv[0] in ("-h", "--help"):
        command_parser().print_help()
        return 0
    try:
        check_values(command_parser().parse_args(args.argv))
    except FaultError as error:
        raise lab.LabError(str(error)) from None
    socket_path = os.environ.get(CONTROL_SOCKET_ENV)
    client = (lab.LabClient(Path(socket_path)) if socket_path and not args.lab
              else lab.Registry().find(args.lab).client())
    print(client.call("fault", argv=args.argv))
    return 0


def lab_web(args: argparse.Namespace) -> int:
    """`web [--lab NAME] [--port 8080]`: serves until Ctrl-C; the lab is reached only through its control socket."""
    from ..emulation import lab
    from ..web import server
    from .fault import command_parser

    if not 0 <= args.port <= 65535:
        raise lab.LabError(f"--port must be between 0 and 65535, not {args.port}")
    record = lab.Registry().find(args.lab)
    topo = topologies.load(record.topology, **record.options)

    def announce(url: str) -> None:
        print(f"calisim: lab {record.name} live on {url} (Ctrl-C to stop)", flush=True)

    server.serve(record, topo, command_parser(), args.port, announce)
    return 0


def lab_save(args: argparse.Namespace) -> int:
    """`save [NAME] -o FILE`: the lab hands over its manifest and etcd snapshot; the file is written here, whole."""
    from ..emulation import lab, snapshot

    if not args.output.parent.is_dir():
        raise lab.LabError(f"cannot write {args.output}: no directory {args.output.parent}")
    record = lab.Registry().find(args.name)
    answer = record.client().call("save")
    try:
        saved = snapshot.SavedLab.from_json(answer["manifest"])
        snapshot.write(args.output, saved, Path(answer["etcd_db"]).read_bytes(),
                       {host: Path(upper) for host, upper in answer["etc"].items()})
    except (snapshot.SaveError, OSError) as error:
        raise lab.LabError(str(error)) from error
    print(f"calisim: saved lab {record.name} ({record.topology}: {saved.summary()}) to {args.output}")
    return 0


LAB_COMMANDS = {"up": lab_up, "exec": lab_exec, "ls": lab_ls, "inspect": lab_inspect, "graph": lab_graph,
                "fault": lab_fault, "web": lab_web, "save": lab_save, "down": lab_down, "capture": lab_capture}

