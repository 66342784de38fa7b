"""BIRD's config: the model computed from etcd (a node's, a route reflector's), its Jinja2
rendering (bird_configs/), and the ``bird -p`` dry-run check before a config is written.

The model is a pure function of the datastore's keys, so it is unit-tested without BIRD.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ...datastore import keys
from ...datastore.resources import BGPPeer, IPPool, ReflectorRegistration, global_as, mesh_from_value, node_as
from ...felix.vxlan import FELIX_ROUTE_PROTOCOL
from .birdc import BirdError

IPIP_INTERFACE = "tunl0"


HOLD_TIME_ENV = "CALISIM_BGP_HOLD_TIME"  # both set by Cluster(bgp_timers=...) in every host's environment
GRACEFUL_RESTART_ENV = "CALISIM_BGP_GRACEFUL_RESTART"  # "off": BGP sessions without graceful restart


@dataclass(frozen=True)
class Timers:
    """BGP timers and session settings.  Calico keeps BIRD's defaults (a refused first connect is
    retried after 120 s); an emulated cluster starts every node at once, so calisim retries within
    seconds.  Two more an emulation may change, to see what Calico's choices do:
    hold: None renders no hold time, as Calico's templates, so BIRD's default (240 s) holds;
    shorter, a silent peer's routes are withdrawn within seconds (keepalives every third of it,
    BIRD's default ratio).  graceful_restart: Calico's templates turn it on; off, a peer whose
    BIRD dies loses its routes at once instead of keeping them until the session is back."""

    connect_delay: int = 1
    connect_retry: int = 3
    error_wait_min: int = 1
    error_wait_max: int = 10
    hold: int | None = None
    graceful_restart: bool = True

    def __post_init__(self) -> None:
        if self.hold is not None and not (isinstance(self.hold, int) and self.hold >= 3):
            raise BirdError(f"the BGP hold time must be a whole number of seconds, at least 3 (BGP's minimum), "
                            f"not {self.hold!r}")

    def environment(self) -> dict[str, str]:
        """The variables that give a host's calico-node (and reflector) these settings."""
        return {**({HOLD_TIME_ENV: str(self.hold)} if self.hold is not None else {}),
                **({} if self.graceful_restart else {GRACEFUL_RESTART_ENV: "off"})}

    @classmethod
    def from_environment(cls) -> "Timers":
        """This host's settings: $CALISIM_BGP_HOLD_TIME and $CALISIM_BGP_GRACEFUL_RESTART where set."""
        hold = os.environ.get(HOLD_TIME_ENV, "").strip()
        restart = os.environ.get(GRACEFUL_RESTART_ENV, "on").strip().lower()
        if hold and not hold.isdigit():
            raise BirdError(f"{HOLD_TIME_ENV} must be a whole number of seconds, at least 3 (BGP's minimum), "
                            f"not {hold!r}")
        if restart not in ("on", "off"):
            raise BirdError(f"{GRACEFUL_RESTART_ENV} must be on or off, not {restart!r}")
        return cls(hold=int(hold) if hold else None, graceful_restart=restart == "on")


@dataclass(frozen=True)
class Peer:
    protocol: str  # Mesh_192_168_3_228, Global_..., Node_...
    ip: str
    as_number: int


@dataclass(frozen=True)
class Pool:
    cidr: str
    ipip: bool
    vxlan: bool = False
    cross_subnet: bool = False  # IPIP only toward next hops outside this node's own subnet (Calico 2.1)


@dataclass(frozen=True)
class IPv6Config:
    """The IPv6 half of a node's config (Calico's bird6.cfg, here the ipv6 channels of the same BIRD)."""

    source_address: str  # the node's ip_addr_v6
    mesh_peers: tuple[Peer, ...]
    global_peers: tuple[Peer, ...]
    node_peers: tuple[Peer, ...]
    pools: tuple[str, ...]
    blocks: tuple[str, ...]

    @property
    def peers(self) -> tuple[Peer, ...]:
        return self.mesh_peers + self.global_peers + self.node_peers


@dataclass(frozen=True)
class BirdConfig:
    node_name: str
    router_id: str
    local_as: int
    mesh: bool
    mesh_peers: tuple[Peer, ...]
    global_peers: tuple[Peer, ...]
    node_peers: tuple[Peer, ...]
    pools: tuple[Pool, ...]
    blocks: tuple[str, ...]
    timers: Timers = field(default_factory=Timers)
    network: str | None = None  # this node's subnet (network_v4): what cross-subnet pools compare next hops with
    ipv6: IPv6Config | None = None  # None: the node has no IPv6 address (`# IPv6 disabled on this node.`)

    @property
    def peers(self) -> tuple[Peer, ...]:
        return self.mesh_peers + self.global_peers + self.node_peers + (self.ipv6.peers if self.ipv6 else ())

    @property
    def sessions_expected(self) -> int:
        """How many of its BGP sessions can come up: a peer at the node's own address never does."""
        own = {self.router_id, self.ipv6.source_address if self.ipv6 else None}
        return sum(peer.ip not in own for peer in self.peers)


def datastore_prefixes(node_name: str) -> list[str]:
    """The etcd prefixes a node's BIRD config is computed from."""
    return [keys.BGP_GLOBAL, keys.BGP_HOSTS, keys.POOLS_V4, keys.host_affinity_blocks(node_name),
            keys.POOLS_V6, keys.host_affinity_blocks(node_name, 6)]


def protocol_name(prefix: str, ip: str) -> str:
    """Calico's names: Mesh_192_168_3_228, Mesh_fd80_24e2_f998_72d7__2 (`.` and `:` become `_`)."""
    return prefix + ip.replace(".", "_").replace(":", "_")


@dataclass(frozen=True)
class FamilyKeys:
    """Where one IP version's BGP settings live: a node's address, the global and node-specific peers."""

    host_ip: Any  # node name -> its ip_addr_v4 / ip_addr_v6 key
    global_peers: str
    node_peers: Any  # node name -> its peer_v4/ or peer_v6/ prefix

    @classmethod
    def of(cls, version: int) -> "FamilyKeys":
        if version == 4:
            return cls(keys.bgp_host_ip_v4, keys.GLOBAL_PEERS_V4, keys.bgp_host_peers_v4)
        return cls(keys.bgp_host_ip_v6, keys.GLOBAL_PEERS_V6, keys.bgp_host_peers_v6)


def hosts_with_address(entries: dict[str, Any], version: int) -> list[str]:
    """The nodes that have an address of this IP version, by name."""
    return sorted({keys.host_of(key, keys.BGP_HOSTS) for key in entries
                   if key.startswith(keys.BGP_HOSTS) and key.endswith(f"/ip_addr_v{version}") and entries[key]})


def family_peers(entries: dict[str, Any], node_name: str, version: int, my_ip: str, mesh: bool,
                 as_of) -> tuple[tuple[Peer, ...], tuple[Peer, ...], tuple[Peer, ...]]:
    """A node's mesh, global and node-specific peers of one IP version (ip_addr_v4/peer_v4 or _v6)."""
    family = FamilyKeys.of(version)
    mesh_peers = []
    if mesh:
        for host in hosts_with_address(entries, version):
            ip = entries[family.host_ip(host)]
            if ip != my_ip:
                mesh_peers.append(Peer(protocol_name("Mesh_", ip), ip, as_of(host)))
    # Only the mesh skips the node itself: a global peer equal to its own address is rendered, as
    # Calico 2.x does, and shows in `node status` as a global row that never comes up.
    global_prefix, node_prefix = family.global_peers, family.node_peers(node_name)
    global_peers, node_peers = ([Peer(protocol_name(name, str(p.peer_ip)), str(p.peer_ip), p.as_number)
                                 for p in BGPPeer.from_entries(entries, prefix)]
                                for name, prefix in (("Global_", global_prefix), ("Node_", node_prefix)))
    return tuple(mesh_peers), tuple(global_peers), tuple(node_peers)


def affine_blocks(entries: dict[str, Any], node_name: str, version: int) -> tuple[str, ...]:
    prefix = keys.host_affinity_blocks(node_name, version)
    return tuple(sorted((keys.key_to_cidr(keys.last_segment(k)) for k in entries if k.startswith(prefix)),
                        key=lambda cidr: ipaddress.ip_network(cidr)))


def mesh_enabled(entries: dict[str, Any]) -> bool:
    """Whether the node-to-node mesh is on (calicoctl config set nodeToNodeMesh; on unless set off)."""
    return mesh_from_value(entries.get(keys.NODE_MESH))


def bird_config(entries: dict[str, Any], node_name: str, timers: Timers | None = None) -> BirdConfig:
    """Compute a node's BIRD config from the datastore's keys (see ``datastore_prefixes``);
    timers default to this host's (``Timers.from_environment``)."""
    my_ip = entries.get(keys.bgp_host_ip_v4(node_name))
    if not my_ip:
        raise BirdError(f"node {node_name!r} has no IPv4 address in the datastore ({keys.bgp_host_ip_v4(node_name)})")
    default_as = global_as(entries)
    mesh = mesh_enabled(entries)

    def as_of(host: str) -> int:
        return node_as(entries, host, default_as)

    mesh_peers, global_peers, node_peers = family_peers(entries, node_name, 4, my_ip, mesh, as_of)
    pools = [Pool(str(p.cidr), p.ipip, p.vxlan, p.cross_subnet) for p in IPPool.from_entries(entries, 4)]
    my_ip6 = entries.get(keys.bgp_host_ip_v6(node_name))
    ipv6 = None
    if my_ip6:
        ipv6 = IPv6Config(my_ip6, *family_peers(entries, node_name, 6, my_ip6, mesh, as_of),
                          tuple(str(p.cidr) for p in IPPool.from_entries(entries, 6)),
                          affine_blocks(entries, node_name, 6))
    return BirdConfig(node_name, my_ip, as_of(node_name), mesh, mesh_peers, global_peers,
                      node_peers, tuple(pools), affine_blocks(entries, node_name, 4),
                      timers or Timers.from_environment(),
                      entries.get(keys.bgp_host_network_v4(node_name)), ipv6)


def expected_sessions(entries: dict[str, Any]) -> dict[str, int]:
    """Each registered node's IPv4 address -> the BGP sessions its config should bring up (the
    mesh, or its ToR, or the route reflectors: whatever the datastore's BGP settings say)."""
    return {entries[keys.bgp_host_ip_v4(node)]: bird_config(entries, node).sessions_expected
            for node in hosts_with_address(entries, 4)}


_templates = jinja2.Environment(loader=jinja2.PackageLoader("bird_configs", ""),
                                undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_template(template: str, **values: Any) -> str:
    """One of bird_configs/'s templates (nodes, route reflectors, fabric routers) rendered."""
    return _templates.get_template(template).render(**values)


def compile_templates() -> None:
    """Compile every template now: the node zygote does, so the nodes it forks share them."""
    for name in _templates.list_templates(extensions=["j2"]):
        _templates.get_template(name)


def render(config: BirdConfig) -> str:
    return render_template(
        "bird.cfg.j2", node_name=config.node_name, router_id=config.router_id, local_as=config.local_as,
        pools=config.pools, blocks=config.blocks, timers=config.timers, ipip_interface=IPIP_INTERFACE,
        felix_route_protocol=FELIX_ROUTE_PROTOCOL, network=config.network,
        peer_groups=peer_groups(config.mesh, config), ipv6=config.ipv6,
        peer_groups6=peer_groups(config.mesh, config.ipv6) if config.ipv6 else [])


def peer_groups(mesh: bool, family: "BirdConfig | IPv6Config") -> list[tuple[str, tuple[Peer, ...]]]:
    return [("Node-to-node mesh" if mesh else "Node-to-node mesh (disabled)", family.mesh_peers),
            ("Global peers", family.global_peers), ("Node-specific peers", family.node_peers)]


def check(path: Path) -> None:
    """``bird -p``: parse the config without running it; raise BirdError with BIRD's message (the
    BIRD daemon's dry run)."""
    result = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BirdError(f"bird -p rejected {path}: {(result.stderr or result.stdout).strip()}")


def write_checked(config_text: str, path: Path) -> bool:
    """Write the config atomically after `bird -p` accepts it; False if it is unchanged."""
    if path.exists() and path.read_text() == config_text:
        return False
    candidate = path.with_suffix(".new")
    candidate.write_text(config_text)
    try:
        check(candidate)
    except BirdError:
        candidate.unlink()
        raise
    os.replace(candidate, path)
    return True


@dataclass(frozen=True)
class ReflectorClient:
    protocol: str  # Global_<node ip> or Node_<node ip>, as calico/routereflector names them
    ip: str
    as_number: int  # the node's AS
    local_as: int  # the bgpPeer's asNumber: the AS the node expects the reflector to have


@dataclass(frozen=True)
class ReflectorFamily:
    """One IP version's half of a reflector (calico/routereflector ran bird and bird6 side by side;
    here they are the ipv4 and ipv6 channels of one BIRD): its address, its registration's cluster
    ID (None: standalone, not registered under rr_v4/rr_v6, no mesh), the other reflectors
    registered for that version, and the nodes that peer with it over that version."""

    ip: str
    cluster_id: str | None
    mesh_peers: tuple[Peer, ...]
    clients: tuple[ReflectorClient, ...]


@dataclass(frozen=True)
class ReflectorConfig:
    router_id: str
    global_as: int
    ipv4: ReflectorFamily
    ipv6: ReflectorFamily | None = None  # None: run without --ip6, so no IPv6 session at all
    timers: Timers = field(default_factory=Timers)


def reflector_prefixes() -> list[str]:
    """The etcd prefixes a route reflector's BIRD config is computed from."""
    return [keys.BGP_GLOBAL, keys.BGP_HOSTS, keys.ROUTE_REFLECTORS_V4, keys.ROUTE_REFLECTORS_V6]


def reflector_family(entries: dict[str, Any], ip: str, version: int, default_as: int) -> ReflectorFamily:
    """calico/routereflector's bird.cfg (version 4) or bird6.cfg (6) template as a model: meshed with
    the other reflectors registered for that version, an `rr client` session to every node that has
    this address as a global or node-specific peer, over the node's address of that version."""
    family = FamilyKeys.of(version)
    registrations = {r.ip: r for r in ReflectorRegistration.from_entries(entries, version)}
    registration = registrations.get(ip)
    mesh_peers = []
    if registration is not None:
        others = sorted(set(registrations) - {ip}, key=ipaddress.ip_address)
        mesh_peers = [Peer(protocol_name("Mesh_", other), other, default_as) for other in others]
    hosts = hosts_with_address(entries, version)

    def client(prefix: str, host: str, peer: BGPPeer) -> ReflectorClient:
        node_ip = entries[family.host_ip(host)]
        return ReflectorClient(protocol_name(prefix, node_ip), node_ip, node_as(entries, host, default_as),
                               peer.as_number)

    clients: dict[str, ReflectorClient] = {}
    for peer in (p for p in BGPPeer.from_entries(entries, family.global_peers) if str(p.peer_ip) == ip):
        for host in hosts:
            clients.setdefault(entries[family.host_ip(host)], client("Global_", host, peer))
    for host in hosts:
        peer = entries.get(family.node_peers(host) + ip)
        if peer is not None:
            clients.setdefault(entries[family.host_ip(host)], client("Node_", host, BGPPeer.from_value(peer, host)))
    clients.pop(ip, None)
    ordered = tuple(clients[k] for k in sorted(clients, key=ipaddress.ip_address))
    return ReflectorFamily(ip, registration.cluster_id if registration else None, tuple(mesh_peers), ordered)


def reflector_config(entries: dict[str, Any], ip: str, ip6: str | None = None,
                     timers: Timers | None = None) -> ReflectorConfig:
    """A reflector's whole config: its IPv4 half, and its IPv6 half when it runs with an IPv6 address."""
    default_as = global_as(entries)
    return ReflectorConfig(ip, default_as, reflector_family(entries, ip, 4, default_as),
                           reflector_family(entries, ip6, 6, default_as) if ip6 else None,
                           timers or Timers.from_environment())


def render_reflector(config: ReflectorConfig) -> str:
    return render_template("routereflector.cfg.j2", router_id=config.router_id, global_as=config.global_as,
                           ipv4=config.ipv4, ipv6=config.ipv6, timers=config.timers)
