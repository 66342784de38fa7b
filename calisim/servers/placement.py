"""Which server runs which node: ``--servers`` parsed, and a placement that follows the topology.

* etcd and the route reflectors go on the first server (the machine calisim runs on);
* a topology of several segments (the fabric's racks) puts each segment with the nodes on it
  (a rack's hosts and its ToR) on one server, segments dealt round the servers in order;
  nodes on no segment (spines: point-to-point links only) go on the first;
* one segment (flat, two-host) is cut into blocks of consecutive Calico hosts, one a server;
* ``--place NODE=SERVER`` overrides any of it.

A host and its containers always share a server (containers live in their host).
"""

from __future__ import annotations

import math
import re
import shlex
import socket
import subprocess
from dataclasses import dataclass

from .sim import MAX_SERVERS, ServerError, check_count

SIM = re.compile(r"sim:(?P<count>.*)")


class PlacementError(ValueError):
    """Bad --servers or --place: refused before anything starts."""


@dataclass(frozen=True)
class Servers:
    """The servers of a run: names in order (the first is this machine); simulated or real."""

    names: tuple[str, ...]
    simulated: bool

    @property
    def first(self) -> str:
        return self.names[0]


def parse_servers(text: str) -> Servers:
    """``sim:N`` (N simulated servers, server1..serverN) or ``A,B,C`` (real servers, A this machine)."""
    match = SIM.fullmatch(text.strip())
    if match:
        count = match["count"]
        if not count.isdigit():
            raise PlacementError(f"--servers {text}: sim: takes a number of servers (sim:3)")
        try:
            check_count(int(count))
        except ServerError as error:
            raise PlacementError(f"--servers {error}") from None
        return Servers(tuple(f"server{index}" for index in range(1, int(count) + 1)), simulated=True)
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise PlacementError(f"--servers {text}: an empty server name (names are separated by single commas)")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PlacementError(f"--servers {text}: {', '.join(duplicates)} named twice (each server once)")
    if len(names) > MAX_SERVERS:
        raise PlacementError(f"--servers {text}: {len(names)} servers; at most {MAX_SERVERS}")
    return Servers(names, simulated=False)


def parse_place(items: list[str]) -> dict[str, str]:
    """``NODE=SERVER`` items as a mapping; a malformed or repeated node refused."""
    overrides: dict[str, str] = {}
    for item in items:
        node, equals, server = item.partition("=")
        if not equals or not node or not server:
            raise PlacementError(f"--place {item}: expected NODE=SERVER (e.g. host2=server2)")
        if node in overrides:
            raise PlacementError(f"--place {item}: {node} is placed twice")
        overrides[node] = server
    return overrides


def place(topo, servers: Servers, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Every node of topo (hosts and routers; segments span the servers their nodes are on) -> its server."""
    nodes = topo.hosts(sort=True)
    segments = _segments_of(topo)
    on_segments = sorted({segment for found in segments.values() for segment in found}, key=_natural)
    if len(on_segments) > 1:
        placement = _by_segment(nodes, segments, on_segments, servers)
    else:
        placement = _in_blocks(topo, nodes, servers)
    for node in [*topo.etcd_nodes(), *topo.reflector_hosts()]:
        placement[node] = servers.first
    return _override(placement, servers, overrides or {})


def plan(topo, servers: str | None, overrides: dict[str, str] | None) -> tuple[Servers | None, dict[str, str]]:
    """The run's servers (the ``--servers`` text parsed) and each node's; (None, {}) for a run on
    this machine alone.  PlacementError, one line, for any bad input: checked before anything starts."""
    if servers is None:
        if overrides:
            raise PlacementError(f"--place {', '.join(f'{node}={server}' for node, server in overrides.items())}: "
                                 "placing nodes needs --servers (e.g. --servers sim:3)")
        return None, {}
    parsed = parse_servers(servers)
    return parsed, place(topo, parsed, overrides)


def _segments_of(topo) -> dict[str, list[str]]:
    """Each node's segments (the switches it links to), in link order."""
    found: dict[str, list[str]] = {node: [] for node in topo.hosts()}
    for left, right in topo.links():
        for node, other in ((left, right), (right, left)):
            if node in found and topo.isSwitch(other):
                found[node].append(other)
    return found


def _by_segment(nodes: list[str], segments: dict[str, list[str]], on_segments: list[str],
                servers: Servers) -> dict[str, str]:
    server_of_segment = {segment: servers.names[index % len(servers.names)]
                         for index, segment in enumerate(on_segments)}
    return {node: server_of_segment[segments[node][0]] if segments[node] else servers.first for node in nodes}


def _in_blocks(topo, nodes: list[str], servers: Servers) -> dict[str, str]:
    calico = sorted(topo.calico_hosts(), key=_natural)
    block = max(1, math.ceil(len(calico) / len(servers.names)))
    placement = {node: servers.first for node in nodes}
    placement.update({host: servers.names[index // block] for index, host in enumerate(calico)})
    return placement


def _override(placement: dict[str, str], servers: Servers, overrides: dict[str, str]) -> dict[str, str]:
    for node, server in overrides.items():
        if node not in placement:
            raise PlacementError(f"--place {node}={server}: no node {node} in this topology "
                                 f"(nodes: {', '.join(sorted(placement, key=_natural))})")
        if server not in servers.names:
            raise PlacementError(f"--place {node}={server}: no server {server} in --servers "
                                 f"({', '.join(servers.names)})")
        placement[node] = server
    return placement


def _natural(name: str) -> tuple:
    """host2 before host10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def check_remote(name: str, calisim_python: str, ssh: list[str] | None = None, timeout: float = 10.0) -> None:
    """A real server answers ssh as root with keys (no password prompt) and has calisim at the
    same path as here; PlacementError naming the server and what is missing otherwise."""
    try:
        socket.getaddrinfo(name, 22, socket.AF_INET)
    except OSError as error:
        raise PlacementError(f"--servers: {name}: cannot resolve its address ({error.strerror})") from None
    command = [*(ssh or ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout)}"]), f"root@{name}",
               f"test -x {shlex.quote(calisim_python)}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        raise PlacementError(f"--servers: {name}: ssh did not answer within {timeout:.0f}s") from None
    if result.returncode == 255:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "ssh failed"
        raise PlacementError(f"--servers: {name}: unreachable over ssh as root with keys ({reason})")
    if result.returncode != 0:
        raise PlacementError(f"--servers: {name}: no calisim at {calisim_python} there (run `make setup` in a "
                             f"clone at the same path)")
