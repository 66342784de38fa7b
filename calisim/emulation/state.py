"""What a world is and what it looks like now: the data behind `calisim inspect` and `graph`.

``describe_hosts`` and ``segments`` read only a topology (no namespaces needed, so a picture of
a topology can be drawn without building it).  ``inspect_cluster`` asks a running cluster
through its real interfaces: netlink in each host's namespace for addresses, BIRD's control
socket for the BGP sessions, etcd for node names and block affinities, each host's dockerd
(the Engine API on its docker.sock) for the workloads.
"""

from __future__ import annotations

import http.client
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
    """Every host-segment link with the host's address on it (None when it has none)."""
    found = []
    for node1, node2, info in topo.links(sort=True, withInfo=True):
        host, segment, params = ((node1, node2, info.get("params1", {})) if not topo.isSwitch(node1)
                                 else (node2, node1, info.get("params2", {})))
        address = params.get("ip") or topo.nodeInfo(host).get("ip")
        found.append({"host": host, "segment": segment, "address": address})
    return found


def describe_hosts(topo) -> list[dict[str, Any]]:
    """Per host (routers and outside hosts too): its role, its addresses and the segments it joins."""
    by_host: dict[str, dict[str, Any]] = {name: {"name": name, "role": role(topo, name), "addresses": [], "joins": []}
                                          for name in topo.hosts(sort=True)}
    for link in links(topo):
        by_host[link["host"]]["joins"].append(link["segment"])
        if link["address"]:
            by_host[link["host"]]["addresses"].append(link["address"])
    return list(by_host.values())


def segments(topo) -> list[dict[str, Any]]:
    """Per segment (a bridge): the hosts and routers it joins."""
    members: dict[str, list[str]] = {name: [] for name in topo.switches(sort=True)}
    for link in links(topo):
        if link["segment"] in members:  # not a router's point-to-point link (fabric: ToR to spine)
            members[link["segment"]].append(link["host"])
    return [{"name": name, "joins": sorted(hosts)} for name, hosts in members.items()]


def inspect_cluster(cluster) -> dict[str, Any]:
    """The live state of every host and segment of a running cluster."""
    with cluster.datastore() as ds:
        node_names = {str(node.ipv4.ip): node.node_name for node in ds.run(Node.load_all) if node.ipv4}
        blocks = {}
        for node in node_names.values():
            blocks[node] = [keys.key_to_cidr(keys.last_segment(e.key))
                            for e in ds.list(keys.host_affinity_blocks(node))]
    hosts = []
    for host in describe_hosts(cluster.topo):
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


def interface_addresses(cluster, name: str) -> dict[str, list[str]]:
    """ifname -> its IPv4 addresses, as `ip -j -4 addr` in the host shows them.

    (iproute2 through Cluster.run, not pyroute2 here: pyroute2's netns sockets, closed from the
    control socket's threads, closed a later connection's descriptor too.)
    """
    result = cluster.run(name, "ip -j -4 addr show", timeout=20)
    found: dict[str, list[str]] = {}
    for link in json.loads(result.stdout or "[]") if result.rc == 0 else []:
        if link.get("ifname") != "lo":
            found[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
    return found


def calico_node_pid(cluster, name: str) -> int | None:
    from ..node import NodePaths

    state_dir = cluster.host(name).state_dir
    return NodePaths(state_dir / "run", state_dir / "log").running_pid()


def bgp_sessions(cluster, name: str) -> list[dict[str, str]] | None:
    """The host's Calico BGP sessions as `calicoctl node status` shows them (None if BIRD does not answer)."""
    from ..node import bird

    try:
        peers = bird.bgp_peer_statuses(cluster.bird(name).protocols())
    except bird.BirdError:
        return None
    return [{"peer": p.peer_ip, "type": p.peer_type, "state": p.info.split()[0] if p.info else p.state,
             "since": p.since} for p in peers]


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


def workloads(cluster, name: str) -> list[dict[str, Any]] | None:
    """The host's containers as its dockerd lists them (`GET /containers/json?all=1`); None if
    dockerd does not answer."""
    socket_path = cluster.host(name).state_dir / "docker" / "docker.sock"
    if not socket_path.exists():
        return None
    connection = _UnixHTTPConnection(str(socket_path))
    try:
        connection.request("GET", "/containers/json?all=1")
        response = connection.getresponse()
        if response.status != 200:
            return None
        containers = json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return [{"name": c["Names"][0].lstrip("/") if c.get("Names") else c["Id"][:12], "state": c.get("State", ""),
             "addresses": sorted(n.get("IPAddress", "")
                                 for n in (c.get("NetworkSettings") or {}).get("Networks", {}).values()
                                 if n.get("IPAddress"))}
            for c in containers]
