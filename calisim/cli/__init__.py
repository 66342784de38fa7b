"""`calisim` (or `python -m calisim`): build an emulated Calico world in a private namespace and drive it.

  run SCRIPT --topology NAME [--hosts N] [--start-nodes] [--json] [--cli] [--keep-going]
      Replay a transcript (see calisim.scenarios.transcript) on a fresh cluster.
  two-host [--json] [--cli]
      The seed walk-through on the seed's two hosts, then its pings measured with scapy; exits 0
      only if everything matches the seed.
  route-reflectors | fabric-as-per-rack | fabric-as-per-host | fabric-downward-default | cross-subnet
      The other bundled scenarios (calisim.scenarios.bundled), each checked the same way.
  up TOPOLOGY [options] [--start-nodes] [--name NAME] | exec [--lab NAME] HOST [-- CMD...] | ls
  inspect [NAME] [--json] | graph [NAME | --topology T] -o FILE.svg|.png | down [NAME | --all]
  run SCRIPT --lab NAME | capture [--lab NAME] NODE[:IFACE] [-f FILTER] [-w FILE | -]
  save [NAME] -o FILE | up --from FILE [--name NAME]
      Labs: worlds that keep running, detached, until `down` (see calisim.emulation.lab).
  chaos [--lab NAME | --topology T] [--seed N] [--duration S] [--kinds K,...]
      A seeded schedule of faults while workloads come and go, invariants watched (calisim.chaos).
  run, up, graph and the bundled scenarios take --servers A,B,C|sim:N [--place NODE=SERVER]
      One lab spread over several servers (calisim.servers; sim:N simulates N on this machine).

Input (script, topology, host count) is checked before anything is built; every run then
goes on inside a fresh network/mount/PID namespace (forked there), writes its configs, sockets and
logs under a per-run directory (printed at the start), and stops everything it started on exit,
Ctrl-C or error.

The commands live beside this module: runs.py (run and the bundled scenarios, on a fresh cluster
or a lab), labs.py (up, exec, ls, inspect, graph, fault, save, down), fault.py (`calisim fault`'s
verbs), capture.py (tcpdump in a lab's node), progress.py (the progress bars of up and run) and
lab_process.py (the process `up` starts in a lab's sandbox).
"""

from __future__ import annotations

import argparse
import os
import sys

from .chaos import add_chaos_command, chaos_command
from .labs import LAB_COMMANDS, add_lab_commands
from .runs import EPILOG, add_run_commands, run_fresh, run_on_lab

# Labs, Cluster (Mininet) and the etcd client are imported by the functions that use them: the
# first process of a run only checks its input before it forks into its sandbox.


def version() -> str:
    """The installed distribution's version (setup.py's), as pip knows it."""
    from importlib import metadata  # only for --version: ~20 ms of every run's two processes otherwise

    try:
        return metadata.version("calisim")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: run `make setup`)"


class VersionAction(argparse.Action):
    """argparse's --version, with the version looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"calisim {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calisim", description=__doc__.split("\n\n")[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction, help="show program's version number and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_commands(commands)
    add_lab_commands(commands)
    add_chaos_command(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        dispatch(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # `calisim inspect | head`: the reader has gone; end quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE


def dispatch(argv: list[str]) -> None:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "fault":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "fault":
        args.argv = unknown + args.argv  # `fault --help`, `fault partition h --from etcd`: the verb's own options
    commands = {**LAB_COMMANDS, "chaos": chaos_command}  # each answers bad input with LabError: one line, exit 2
    if args.command in commands or getattr(args, "lab", None) and args.command == "run":
        from ..emulation import lab

        try:
            sys.exit(commands[args.command](args) if args.command in commands else run_on_lab(args))
        except lab.LabError as error:
            print(f"calisim: {error}", file=sys.stderr)
            sys.exit(2)
    run_fresh(args)
