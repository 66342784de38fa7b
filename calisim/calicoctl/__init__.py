"""calicoctl v1.0's command surface (README "calicoctl as v1.0") over calisim's datastore.

Each command family lives in its own module, imported only when used: `node` commands start
and inspect this host's calico-node, the others (`resources`, `config`, `ipam`) work on etcd.
"""

from __future__ import annotations

import argparse
import functools
import sys

from .. import __version__
from .errors import CommandError


def prepare_for_forks() -> None:
    """What the node zygote does once for every calicoctl it forks: build the parser (8-20 ms of
    each command's run otherwise)."""
    build_parser()


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """Built once a process; parse_args leaves it as it was."""
    parser = argparse.ArgumentParser(prog="calicoctl", description="calisim's calicoctl (Calico v1.0 command surface)")
    parser.add_argument("--version", action="version", version=f"calicoctl v1.0.0 (calisim {__version__})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for action in ("create", "replace", "apply"):
        sub = commands.add_parser(action, help=f"{action} resources from a file (yaml or json; - for stdin)")
        sub.add_argument("-f", "--filename", required=True)
        if action == "create":
            sub.add_argument("--skip-exists", action="store_true")
    for action in ("get", "delete"):
        sub = commands.add_parser(action, help=f"{action} resources by kind and name, or from a file")
        sub.add_argument("kind", nargs="?")
        sub.add_argument("name", nargs="?")
        sub.add_argument("-f", "--filename")
        sub.add_argument("--scope", choices=("global", "node"))
        sub.add_argument("--node")
        if action == "get":
            sub.add_argument("-o", "--output", default="ps", help="ps, wide, yaml, json or custom-columns=COL,...")
        else:
            sub.add_argument("--skip-not-exists", action="store_true")
    config = commands.add_parser("config", help="get, set or unset asNumber, nodeToNodeMesh, logLevel, ipip")
    config.add_argument("action", choices=("get", "set", "unset"))
    config.add_argument("name")
    config.add_argument("value", nargs="?")
    config.add_argument("--node")
    node = commands.add_parser("node", help="run this host's calico-node, or show its BGP status")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run")
    run.add_argument("--name")
    run.add_argument("--ip")
    run.add_argument("--ip6", help="this node's IPv6 address for BGP, or autodetect (default: the stored one, or none)")
    run.add_argument("--ip6-autodetection-method", default="first-found",
                     help="how --ip6=autodetect picks: first-found, can-reach=DESTINATION or interface=REGEX[,REGEX]")
    run.add_argument("--as", dest="as_number")
    run.add_argument("--backend", choices=("bird", "none"), default="bird")
    run.add_argument("--no-default-ippools", action="store_true")
    node_commands.add_parser("status")
    node_commands.add_parser("diags", help="collect this node's diagnostics into a .tar.gz").add_argument(
        "--log-dir", help="the directory holding Calico's logs (default /var/log/calico)")
    node_commands.add_parser("checksystem", help="check that this host can run a Calico node")
    ipam = commands.add_parser("ipam", help="show or release an IP address's assignment")
    ipam_commands = ipam.add_subparsers(dest="ipam_command", required=True)
    for name in ("show", "release"):
        ipam_commands.add_parser(name).add_argument("--ip", required=True)
    commands.add_parser("version", help="print the version")
    return parser


def dispatch(args: argparse.Namespace) -> str:
    if args.command == "version":
        return f"Client Version:    v1.0.0 (calisim {__version__})"
    if args.command == "node" and args.node_command in ("diags", "checksystem"):
        from . import node_diags
        return (node_diags.cmd_node_diags(args) if args.node_command == "diags"
                else node_diags.cmd_node_checksystem(args))
    if args.command == "node":
        from . import node
        return node.cmd_node_run(args) if args.node_command == "run" else node.cmd_node_status()
    from ..datastore import Datastore, DatastoreError, Synchronous
    from . import config, ipam, resources
    try:
        with Synchronous(Datastore.from_env()) as ds:
            if args.command == "config":
                return config.cmd_config(ds, args)
            if args.command == "ipam":
                return ipam.cmd_ipam(ds, args)
            if args.command == "get":
                return resources.cmd_get(ds, args)
            return resources.cmd_write(ds, args)
    except DatastoreError as error:
        raise CommandError(str(error)) from None


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        from ..node.zygote_client import forked_by_zygote

        code = forked_by_zygote(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    args = build_parser().parse_args(argv)
    try:
        text = dispatch(args)
    except CommandError as error:
        print(error)
        sys.exit(1)
    if text:
        print(text)


if __name__ == "__main__":
    main()
