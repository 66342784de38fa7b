"""`--servers` and `--place` on `run`, `up`, `graph` and the bundled scenarios: parsed and checked
against the topology (and, for real servers, each server's ssh and calisim) before anything starts,
then handed to the Python API as ``Cluster(topo, ..., servers="sim:3", place={"host2": "server3"})``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from ..emulation import sandbox
from ..servers.placement import check_remote, parse_place, parse_servers, place


@dataclass(frozen=True)
class ServerChoice:
    """What --servers and --place asked for, checked: the Cluster's two parameters, and where each node goes."""

    servers: str | None = None
    place: dict[str, str] | None = None
    placement: dict[str, str] | None = None  # every node -> its server; None without --servers


def add_server_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("servers (one lab spread over several machines)")
    group.add_argument("--servers", metavar="A,B,C|sim:N",
                       help="the servers to spread the nodes over: sim:N builds N simulated servers (1-99) "
                            "inside the run's sandbox, the first being this machine; A,B,C are real ones: A this "
                            "machine, the others reached by ssh as root with keys, calisim at the same path, each "
                            "running a sandbox of the run joined by VXLAN over UDP 14789")
    group.add_argument("--place", action="append", default=[], metavar="NODE=SERVER",
                       help="put NODE on SERVER instead of where the placement puts it (repeatable; needs --servers)")


def check_server_options(args: argparse.Namespace, topo, check_reachable=check_remote) -> ServerChoice:
    """The options, checked (PlacementError, a ValueError, with one line otherwise): a malformed or
    out-of-range --servers, a duplicate, a --place of an unknown node or server, and a real server
    that does not answer ssh or has no calisim at this path."""
    text, items = getattr(args, "servers", None), getattr(args, "place", None) or []
    if text is None:
        if items:
            raise ValueError(f"--place {items[0]}: --place needs --servers (the servers to place nodes on)")
        return ServerChoice()
    servers = parse_servers(text)
    overrides = parse_place(items)
    placement = place(topo, servers, overrides)
    if not servers.simulated and not sandbox.reexecuted():  # checked before, outside: the sandbox has no network
        for name in servers.names[1:]:  # the first is this machine
            check_reachable(name, sys.executable)
    return ServerChoice(text.strip(), overrides or None, placement)
