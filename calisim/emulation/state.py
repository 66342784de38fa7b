"""What a world is and what it looks like now: the data behind `calisim inspect` and `graph`.

``describe_hosts`` and ``segments`` read only a topology (no namespaces needed, so a picture of
a topology can be drawn without building it).  ``inspect_cluster`` asks a running cluster
through its real interfaces: netlink in each host's namespace for addresses, BIRD's control
socket for the BGP sessions, etcd for node names and block affinities, each host's dockerd
(the Engine API on its docker.sock) for the workloads; IPv6 beside IPv4 in each (the hosts'
IPv6 addresses, bird6's sessions, /122 blocks, the workloads' /128s).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
from typing import Any

from ..datastore import keys
from ..datastore.resources import Node


def role(topo, name: str) -> str:
    info = topo.nodeInfo(name)
    if info.get("calico"):
        return "calico host, etcd" if name in topo.etcd_nodes() else "calico host"
    if info.get("etcd_member"):
        return "etcd member"
    return "router" if info.get("router") else "outside host"


def links(topo) -> list[dict[str, Any]]:
    """Every host-segment link with the host's addresses on it: ``address`` its IPv4 one (None
    when it has none), ``addresses6`` the IPv6 ones the topology plans on it (``add_ipv6``)."""
    found = []
    for node1, node2, info in topo.links(sort=True, withInfo=True):
        host, segment, params = ((node1, node2, info.get("params1", {})) if not topo.isSwitch(node1)
                                 else (node2, node1, info.get("params2", {})))
        address = params.get("ip") or topo.nodeInfo(host).get("ip")
        addresses6 = [ip6 for on, ip6 in topo.nodeInfo(host).get("ipv6", []) if on == segment]
        found.append({"host": host, "segment": segment, "address": address, "addresses6": addresses6})
    return found


def describe_hosts(topo, placement: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per host (routers and outside hosts too): its role, its addresses (IPv4 first, then IPv6)
    and the segments it joins; with a placement (a world spread over servers), its ``server``."""
    by_host: dict[str, dict[str, Any]] = {name: {"name": name, "role": role(topo, name), "addresses": [], "joins": []}
                                          for name in topo.hosts(sort=True)}
    for name, server in (placement or {}).items():
        by_host[name]["server"] = server
    found = links(topo)
    for link in found:
        by_host[link["host"]]["joins"].append(link["segment"])
        if link["address"]:
            by_host[link["host"]]["addresses"].append(link["address"])
    for link in found:
        by_host[link["host"]]["addresses"] += link["addresses6"]
    return list(by_host.values())


def segments(topo) -> list[dict[str, Any]]:
    """Per segment (a bridge): the hosts and routers it joins."""
    members: dict[str, list[str]] = {name: [] for name in topo.switches(sort=True)}
    for link in links(topo):
        if link["segment"] in members:  # not a router's point-to-point link (fabric: ToR to spine)
            members[link["segment"]].append(link["host"])
    return [{"name": name, "joins": sorted(hosts)} for name, hosts in members.items()]


def placement_of(cluster) -> dict[str, str] | None:
    """Where each node of a cluster spread over servers runs; None when all run on this machine."""
    if cluster.servers is None:
        return None
    return {name: cluster.server_of(name) for name in cluster.topo.hosts()}


def inspect_cluster(cluster) -> dict[str, Any]:
    """The live state of every host and segment of a running cluster."""
    with cluster.datastore() as ds:
        node_names = {str(node.ipv4.ip): node.node_name for node in ds.run(Node.load_all) if node.ipv4}
        blocks = {node: affine_blocks(ds, node) for node in node_names.values()}
    hosts = []
    for host in describe_hosts(cluster.topo, placement_of(cluster)):
        name = host["name"]
        state: dict[str, Any] = {**host, "interfaces": interface_addresses(cluster, name)}
        if name in cluster.hosts:
            node = node_names.get(cluster.topo.host_ip(name))
            sessions, containers = bgp_sessions(cluster, name), workloads(cluster, name)
            state.update({"node": node, "calico_node": calico_node_pid(cluster, name) is not None,
                          "bird": sessions is not None, "dockerd": containers is not None,
                          "dockerd_error": "" if containers is not None else dockerd_error(cluster, name)})
            sessions, containers = sessions or [], containers or []
            state.update({"bgp": sessions, "established": sum(s["state"] == "Established" for s in sessions),
                          "blocks": blocks.get(node, []) if node else [], "workloads": containers})
        hosts.append(state)
    return {"hosts": hosts, "segments": segments(cluster.topo)}


def affine_blocks(ds, node: str) -> list[str]:
    """The node's blocks, its IPv4 /26s then its IPv6 /122s (IPAM's host affinities)."""
    return [keys.key_to_cidr(keys.last_segment(entry.key))
            for version in (4, 6) for entry in ds.list(keys.host_affinity_blocks(node, version))]


def interface_addresses(cluster, name: str) -> dict[str, list[str]]:
    """ifname -> its addresses, IPv4 then IPv6, as `ip -j addr` in the host shows them (IPv6's
    link-local fe80:: ones left out: every interface has one, and no route is learnt over them).

    (iproute2 through Cluster.run, not pyroute2 here: pyroute2's netns sockets, closed from the
    control socket's threads, closed a later connection's descriptor too.)
    """
    result = cluster.run(name, "ip -j addr show", timeout=20)
    found: dict[str, list[str]] = {}
    for link in json.loads(result.stdout or "[]") if result.rc == 0 else []:
        if link.get("ifname") != "lo":
            found[link["ifname"]] = listed_addresses(link.get("addr_info", []))
    return found


def listed_addresses(addr_info: list[dict[str, Any]]) -> list[str]:
    """`ip -j addr`'s addresses of one interface as ADDRESS/PREFIX, IPv4 first, link-local IPv6 left out."""
    chosen = [a for a in addr_info if a.get("family") == "inet"]
    chosen += [a for a in addr_info if a.get("family") == "inet6" and a.get("scope") != "link"]
    return [f"{a['local']}/{a['prefixlen']}" for a in chosen]


def calico_node_pid(cluster, name: str) -> int | None:
    from ..node import NodePaths

    host = cluster.host(name)
    paths = NodePaths(host.state_dir / "run", host.state_dir / "log")
    if getattr(host, "isRemote", False):  # its pid file and process are on its server
        return cluster.on_servers.running_pid(host, paths.pid_file)
    return paths.running_pid()


def bgp_sessions(cluster, name: str) -> list[dict[str, str]] | None:
    """The host's Calico BGP sessions as `calicoctl node status` shows them, IPv4 and IPv6 (bird6's,
    here channels of the one BIRD 2) with their version (None if BIRD does not answer)."""
    from ..node import bird

    try:
        peers = bird.bgp_peer_statuses(cluster.bird(name).protocols())
    except bird.BirdError:
        return None
    return [{"peer": p.peer_ip, "version": ipaddress.ip_address(p.peer_ip).version, "type": p.peer_type,
             "state": p.info.split()[0] if p.info else p.state, "since": p.since} for p in peers]


def bgp_summary(sessions: list[dict[str, Any]]) -> str:
    """A host's BGP in a line: "BGP 1/1 Established" (IPv4 only), or each version's count once it
    has IPv6 sessions (bird6's), as `calicoctl node status` has a table for each:
    "BGP IPv4 1/1 · IPv6 1/1 Established"."""
    counts = {version: (sum(s["state"] == "Established" for s in mine), len(mine))
              for version in (4, 6) if (mine := [s for s in sessions if s.get("version", 4) == version])}
    if 6 not in counts:
        up, total = counts.get(4, (0, 0))
        return f"BGP {up}/{total} Established"
    return "BGP " + " · ".join(f"IPv{version} {up}/{total}" for version, (up, total) in counts.items()) + " Established"


def dockerd_error(cluster, name: str) -> str:
    """Why the host's dockerd is not answering, in its own last line (e.g. a bad daemon.json's), if
    it exited by itself; empty while it runs, or if a signal stopped it."""
    from ..docker.service import Dockerd

    process = cluster.dockerds.get(name)
    if process is None or (process.poll() or 0) <= 0:
        return ""
    return Dockerd(cluster.host(name).state_dir).last_words()


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: how the docker CLI reaches dockerd."""

    def __init__(self, path: str, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def engine_get(cluster, name: str, path: str) -> Any:
    """One GET of the Engine API on host name's dockerd, decoded; None if dockerd does not answer
    or refuses.  What the docker CLI asks, without its start-up and the host's shell."""
    socket_path = cluster.host_socket(name, cluster.host(name).state_dir / "docker" / "docker.sock")
    if not socket_path.exists():
        return None
    connection = _UnixHTTPConnection(str(socket_path))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        if response.status != 200:
            return None
        return json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def workloads(cluster, name: str) -> list[dict[str, Any]] | None:
    """The host's containers as its dockerd lists them (`GET /containers/json?all=1`); None if
    dockerd does not answer."""
    containers = engine_get(cluster, name, "/containers/json?all=1")
    if containers is None:
        return None
    return [{"name": c["Names"][0].lstrip("/") if c.get("Names") else c["Id"][:12], "state": c.get("State", ""),
             "addresses": container_addresses(c)}
            for c in containers]


def container_addresses(container: dict[str, Any]) -> list[str]:
    """A listed container's addresses on all its networks: the IPv4 ones, then the IPv6 ones."""
    networks = (container.get("NetworkSettings") or {}).get("Networks", {}).values()
    return [address for key in ("IPAddress", "GlobalIPv6Address")
            for address in sorted(n[key] for n in networks if n.get(key))]
