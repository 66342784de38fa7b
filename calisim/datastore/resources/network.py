"""The resources of the network itself: ipPool, node and bgpPeer (their v1 form, etcd keys and stored
values), and the BGP settings stored beside them (AS numbers, the node-to-node mesh, route
reflectors' registrations).  Decoding trusts what calicoctl validated: no checks on the read path."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .. import keys
from .base import (IPNetwork, Resource, ValidationError, check_fields, parse_as_number, parse_bool,
                   parse_cidr, parse_interface, parse_ip, parse_name)
from .ipam import BLOCK_PREFIXES

if TYPE_CHECKING:  # annotations only: validation must not import the etcd client
    from ..etcd import Datastore


IPIP_MODES = ("always", "cross-subnet")
LINK_LOCAL = {4: ipaddress.ip_network("169.254.0.0/16"), 6: ipaddress.ip_network("fe80::/10")}


@dataclass(frozen=True)
class IPPool(Resource):
    kind: ClassVar[str] = "ipPool"
    aliases: ClassVar[tuple[str, ...]] = ("ippool", "ippools", "ipp", "ipps", "pool", "pools")
    ps_columns: ClassVar[tuple[str, ...]] = ("CIDR",)
    wide_columns: ClassVar[tuple[str, ...]] = ("CIDR", "NAT", "IPIP")
    columns: ClassVar[tuple[str, ...]] = wide_columns

    cidr: IPNetwork
    ipip: bool = False
    nat_outgoing: bool = False
    disabled: bool = False
    vxlan: bool = False  # beyond Calico v1.0: Calico 3.7's VXLAN encapsulation, as `spec.vxlan.enabled`
    ipip_mode: str = "always"  # or "cross-subnet" (calicoctl v1.1): tunnel only toward other subnets

    @classmethod
    def from_document(cls, doc: dict) -> "IPPool":
        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("cidr",), "ipPool metadata", required=("cidr",))
        check_fields(spec, ("ipip", "vxlan", "nat-outgoing", "disabled"), "ipPool spec")
        cidr = parse_cidr(metadata["cidr"], "ipPool metadata.cidr")
        if cidr.prefixlen > BLOCK_PREFIXES[cidr.version]:  # a pool must hold at least one IPAM block
            raise ValidationError(f"error with field CIDR = '{cidr}' (IP pool size is too small "
                                  f"(min /{BLOCK_PREFIXES[cidr.version]}) for use with Calico IPAM)")
        if cidr.overlaps(LINK_LOCAL[cidr.version]):  # the hosts' own link-local addresses (workloads' gateways)
            raise ValidationError(f"error with field CIDR = '{cidr}' (IP pool range overlaps with "
                                  f"IPv{cidr.version} Link Local range {LINK_LOCAL[cidr.version]})")
        ipip_spec = check_fields(spec.get("ipip"), ("enabled", "mode"), "ipPool spec.ipip")
        ipip = parse_bool(ipip_spec.get("enabled", False), "ipPool spec.ipip.enabled")
        ipip_mode = ipip_spec.get("mode") or "always"
        if ipip_mode not in IPIP_MODES:
            raise ValidationError(f"error with field IPIP.Mode = '{ipip_mode}' "
                                  f"(must be one of: {', '.join(IPIP_MODES)})")
        if ipip_mode != "always" and not ipip:
            raise ValidationError(f"error with field IPIP.Mode = '{ipip_mode}' "
                                  "(the mode needs IPIP enabled on the pool: spec.ipip.enabled: true)")
        if ipip and cidr.version != 4:
            raise ValidationError("error with field IPIP.Enabled = 'true' (IPIP is not supported on an IPv6 IP pool)")
        vxlan_spec = check_fields(spec.get("vxlan"), ("enabled",), "ipPool spec.vxlan")
        vxlan = parse_bool(vxlan_spec.get("enabled", False), "ipPool spec.vxlan.enabled")
        if vxlan and cidr.version != 4:
            raise ValidationError("error with field VXLAN.Enabled = 'true' (VXLAN is not supported on an IPv6 IP pool)")
        if vxlan and ipip:
            raise ValidationError(f"ipPool {cidr}: IPIP and VXLAN cannot both be enabled")
        return cls(cidr, ipip,
                   parse_bool(spec.get("nat-outgoing", False), "ipPool spec.nat-outgoing"),
                   parse_bool(spec.get("disabled", False), "ipPool spec.disabled"), vxlan, ipip_mode)

    def document(self) -> dict:
        spec: dict[str, Any] = {}
        if self.ipip:
            spec["ipip"] = ({"enabled": True} if self.ipip_mode == "always"
                            else {"enabled": True, "mode": self.ipip_mode})
        if self.vxlan:
            spec["vxlan"] = {"enabled": True}
        if self.nat_outgoing:
            spec["nat-outgoing"] = True
        if self.disabled:
            spec["disabled"] = True
        return self._wrap({"cidr": str(self.cidr)}, spec)

    @property
    def ident(self) -> str:
        return f"IPPool(cidr={self.cidr})"

    @property
    def name(self) -> str:
        return str(self.cidr)

    @property
    def primary_key(self) -> str:
        return keys.pool(self.cidr)

    def to_value(self) -> dict:
        """The stored value (Calico v1's, plus calicoctl v1.1's ipip_mode and Calico 3.7's vxlan)."""
        value: dict[str, Any] = {"cidr": str(self.cidr), "masquerade": self.nat_outgoing, "disabled": self.disabled}
        if self.ipip:
            value["ipip"] = "tunl0"
            value["ipip_mode"] = self.ipip_mode
        if self.vxlan:
            value["vxlan"] = "vxlan.calico"
        return value

    @classmethod
    def from_value(cls, value: dict) -> "IPPool":
        return cls(ipaddress.ip_network(value["cidr"]), bool(value.get("ipip")),
                   bool(value.get("masquerade")), bool(value.get("disabled")), bool(value.get("vxlan")),
                   value.get("ipip_mode") or "always")

    @classmethod
    def from_entries(cls, entries: dict[str, Any], version: int | None = None) -> list["IPPool"]:
        """Every pool stored in these keys (of one IP version if given), in key order; others are ignored."""
        prefixes = {4: keys.POOLS_V4, 6: keys.POOLS_V6}.get(version, (keys.POOLS_V4, keys.POOLS_V6))
        return [cls.from_value(entries[key]) for key in sorted(k for k in entries if k.startswith(prefixes))]

    @property
    def cross_subnet(self) -> bool:
        """IPIP only toward next hops outside the node's own subnet (calicoctl v1.1's ipip mode)."""
        return self.ipip and self.ipip_mode == "cross-subnet"

    def writes(self) -> dict[str, Any]:
        return {self.primary_key: self.to_value()}

    def cells(self, context: dict) -> dict[str, str]:
        return {"CIDR": str(self.cidr), "NAT": str(self.nat_outgoing).lower(), "IPIP": str(self.ipip).lower()}

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["IPPool"]:
        entries = await ds.list(keys.POOLS_V4) + await ds.list(keys.POOLS_V6)
        return [cls.from_value(entry.value) for entry in entries]


@dataclass(frozen=True)
class Node(Resource):
    kind: ClassVar[str] = "node"
    aliases: ClassVar[tuple[str, ...]] = ("node", "nodes", "no", "nos")
    ps_columns: ClassVar[tuple[str, ...]] = ("NAME",)
    wide_columns: ClassVar[tuple[str, ...]] = ("NAME", "ASN", "IPV4", "IPV6")
    columns: ClassVar[tuple[str, ...]] = wide_columns

    node_name: str
    ipv4: ipaddress.IPv4Interface | None = None
    ipv6: ipaddress.IPv6Interface | None = None
    as_number: int | None = None  # None: inherit the global AS

    @classmethod
    def from_document(cls, doc: dict) -> "Node":
        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("name",), "node metadata", required=("name",))
        check_fields(spec, ("bgp",), "node spec")
        bgp = check_fields(spec.get("bgp"), ("asNumber", "ipv4Address", "ipv6Address"), "node spec.bgp")
        ipv4 = parse_interface(bgp["ipv4Address"], "node spec.bgp.ipv4Address") if bgp.get("ipv4Address") else None
        ipv6 = parse_interface(bgp["ipv6Address"], "node spec.bgp.ipv6Address") if bgp.get("ipv6Address") else None
        for version, address in ((4, ipv4), (6, ipv6)):
            if address is not None and address.version != version:
                raise ValidationError(f"error with field BGP.IPv{version}Address = '{address}' "
                                      f"(invalid IPv{version} address and subnet specified)")
        as_number = (parse_as_number(bgp["asNumber"], "node spec.bgp.asNumber") if bgp.get("asNumber") is not None
                     else None)
        return cls(parse_name(metadata["name"], "node metadata.name"), ipv4, ipv6, as_number)

    def document(self) -> dict:
        bgp: dict[str, Any] = {}
        if self.as_number is not None:
            bgp["asNumber"] = self.as_number
        if self.ipv4 is not None:
            bgp["ipv4Address"] = str(self.ipv4)
        if self.ipv6 is not None:
            bgp["ipv6Address"] = str(self.ipv6)
        return self._wrap({"name": self.node_name}, {"bgp": bgp} if bgp else {})

    @property
    def ident(self) -> str:
        return f"Node(name={self.node_name})"

    @property
    def name(self) -> str:
        return self.node_name

    @property
    def primary_key(self) -> str:
        return keys.host_metadata(self.node_name)

    def writes(self) -> dict[str, Any]:
        name = self.node_name
        values: dict[str, Any] = {keys.host_metadata(name): {}}
        if self.ipv4 is not None:
            values[keys.host_bird_ip(name)] = str(self.ipv4.ip)
            values[keys.bgp_host_ip_v4(name)] = str(self.ipv4.ip)
            values[keys.bgp_host_network_v4(name)] = str(self.ipv4.network)
        if self.ipv6 is not None:
            values[keys.bgp_host_ip_v6(name)] = str(self.ipv6.ip)
            values[keys.bgp_host_network_v6(name)] = str(self.ipv6.network)
        if self.as_number is not None:
            values[keys.bgp_host_as(name)] = as_value(self.as_number)
        return values

    def owned_keys(self) -> list[str]:
        name = self.node_name
        return [keys.host_metadata(name), keys.host_bird_ip(name), keys.bgp_host_ip_v4(name),
                keys.bgp_host_network_v4(name), keys.bgp_host_ip_v6(name), keys.bgp_host_network_v6(name),
                keys.bgp_host_as(name)]

    def removal_prefixes(self) -> list[str]:
        return [keys.host(self.node_name), keys.bgp_host(self.node_name)]

    def cells(self, context: dict) -> dict[str, str]:
        asn = str(self.as_number) if self.as_number is not None else f"({context.get('global_as', keys.DEFAULT_AS)})"
        if self.as_number is None and self.ipv4 is None and self.ipv6 is None:
            asn = ""  # no BGP spec at all: calicoctl prints nothing
        return {"NAME": self.node_name, "ASN": asn, "IPV4": str(self.ipv4 or ""), "IPV6": str(self.ipv6 or "")}

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Node"]:
        return cls.from_entries({e.key: e.value for e in await ds.list(keys.HOSTS) + await ds.list(keys.BGP_HOSTS)})

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["Node"]:
        """Every node stored in these keys (its metadata key says it exists), by name: its BGP part
        as stored under /calico/bgp/v1/host/<name>/ (ip_addr_v4/v6, network_v4/v6, as_num)."""
        names = sorted(keys.host_of(key) for key in entries
                       if key.endswith("/metadata") and key == keys.host_metadata(keys.host_of(key)))
        get = entries.get
        return [cls(name, stored_interface(get(keys.bgp_host_ip_v4(name)), get(keys.bgp_host_network_v4(name))),
                    stored_interface(get(keys.bgp_host_ip_v6(name)), get(keys.bgp_host_network_v6(name))),
                    as_from_value(get(keys.bgp_host_as(name)))) for name in names]


def stored_interface(ip: str | None, network: str | None):
    """A node's address as stored (ip_addr_v4/v6 and network_v4/v6), back as one interface (a bare IP: /32, /128)."""
    if not ip:
        return None
    return ipaddress.ip_interface(f"{ip}/{prefix_length(network)}" if network else ip)


@functools.lru_cache(maxsize=64)
def prefix_length(network: str) -> int:
    """A stored network's prefix length: the hosts of a cluster share a few subnets, and every
    node's startup decodes every node."""
    return ipaddress.ip_network(network).prefixlen


def as_value(as_number: int) -> str:
    """An AS number as Calico v1 stores it (global as_num, a node's as_num, a peer's): a string."""
    return str(as_number)


def as_from_value(value: Any) -> int | None:
    """A stored AS number back (None when absent or empty: the node inherits the global AS)."""
    return int(value) if value else None


def global_as(entries: dict[str, Any]) -> int:
    """The global AS in these keys (/calico/bgp/v1/global/as_num), Calico's default when unset."""
    return as_from_value(entries.get(keys.GLOBAL_AS)) or keys.DEFAULT_AS


def node_as(entries: dict[str, Any], name: str, default: int) -> int:
    """A node's own AS in these keys, else default (the global AS)."""
    return as_from_value(entries.get(keys.bgp_host_as(name))) or default


def mesh_value(enabled: bool) -> dict:
    """/calico/bgp/v1/global/node_mesh as stored."""
    return {"enabled": enabled}


def mesh_from_value(value: Any) -> bool:
    """Whether the node-to-node mesh is on: on unless stored off (calicoctl config set nodeToNodeMesh)."""
    return bool((value or {"enabled": True}).get("enabled", True))


@dataclass(frozen=True)
class ReflectorRegistration:
    """calico/routereflector's registration under /calico/bgp/v1/rr_v4/<ip> (rr_v6/<ip6> for its IPv6
    address): the reflectors registered for one IP version mesh with each other over it."""

    ip: str
    cluster_id: str

    @property
    def key(self) -> str:
        return keys.route_reflector(self.ip)

    def to_value(self) -> dict:
        return {"ip": self.ip, "cluster_id": self.cluster_id}

    @classmethod
    def from_value(cls, value: dict) -> "ReflectorRegistration":
        return cls(value.get("ip", ""), value.get("cluster_id", ""))

    @classmethod
    def from_entries(cls, entries: dict[str, Any], version: int = 4) -> list["ReflectorRegistration"]:
        """Every registration of this IP version stored in these keys, in key order (others are ignored)."""
        found = sorted(key for key in entries if key.startswith(keys.route_reflectors(version)))
        return [cls.from_value(entries[key]) for key in found]


@dataclass(frozen=True)
class BGPPeer(Resource):
    kind: ClassVar[str] = "bgpPeer"
    aliases: ClassVar[tuple[str, ...]] = ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps")
    ps_columns: ClassVar[tuple[str, ...]] = ("SCOPE", "PEERIP", "NODE", "ASN")
    wide_columns: ClassVar[tuple[str, ...]] = ps_columns
    columns: ClassVar[tuple[str, ...]] = ps_columns

    scope: str
    peer_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    as_number: int
    node: str = ""

    @classmethod
    def from_document(cls, doc: dict) -> "BGPPeer":
        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("scope", "peerIP", "node"), "bgpPeer metadata", required=("scope", "peerIP"))
        check_fields(spec, ("asNumber",), "bgpPeer spec", required=("asNumber",))
        scope = metadata["scope"]
        if scope not in ("global", "node"):
            raise ValidationError(f"bgpPeer metadata.scope must be global or node, not {scope!r}")
        node = metadata.get("node") or ""
        if scope == "node" and not node:
            raise ValidationError("bgpPeer metadata.node is required when the scope is node")
        if scope == "global" and node:
            raise ValidationError("bgpPeer metadata.node must not be set when the scope is global")
        peer_ip = parse_ip(metadata["peerIP"], "bgpPeer metadata.peerIP")
        node = parse_name(node, "bgpPeer metadata.node") if node else ""
        return cls(scope, peer_ip, parse_as_number(spec["asNumber"], "bgpPeer spec.asNumber"), node)

    def document(self) -> dict:
        metadata: dict[str, Any] = {"scope": self.scope, "peerIP": str(self.peer_ip)}
        if self.node:
            metadata["node"] = self.node
        return self._wrap(metadata, {"asNumber": self.as_number})

    @property
    def ident(self) -> str:
        node = f", node={self.node}" if self.node else ""
        return f"BGPPeer(scope={self.scope}{node}, peerIP={self.peer_ip})"

    @property
    def name(self) -> str:
        return str(self.peer_ip)

    @property
    def primary_key(self) -> str:
        if self.peer_ip.version == 6:  # stored beside the IPv4 peers, as Calico v1 does
            base = keys.GLOBAL_PEERS_V6 if self.scope == "global" else keys.bgp_host_peers_v6(self.node)
        else:
            base = keys.GLOBAL_PEERS_V4 if self.scope == "global" else keys.bgp_host_peers_v4(self.node)
        return base + str(self.peer_ip)

    def to_value(self) -> dict:
        return {"ip": str(self.peer_ip), "as_num": as_value(self.as_number)}

    @classmethod
    def from_value(cls, value: dict, node: str = "") -> "BGPPeer":
        """A stored peer; node is the host whose peer_v4/peer_v6 holds it (none: a global peer)."""
        return cls("node" if node else "global", ipaddress.ip_address(value["ip"]), int(value["as_num"]), node)

    def writes(self) -> dict[str, Any]:
        return {self.primary_key: self.to_value()}

    def cells(self, context: dict) -> dict[str, str]:
        return {"SCOPE": self.scope, "PEERIP": str(self.peer_ip), "NODE": self.node, "ASN": str(self.as_number)}

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["BGPPeer"]:
        listed = [entry for prefix in (keys.GLOBAL_PEERS_V4, keys.GLOBAL_PEERS_V6, keys.BGP_HOSTS)
                  for entry in await ds.list(prefix)]
        return cls.from_entries({entry.key: entry.value for entry in listed})

    @classmethod
    def from_entries(cls, entries: dict[str, Any], prefix: str = "") -> list["BGPPeer"]:
        """Every peer stored in these keys under prefix (e.g. keys.GLOBAL_PEERS_V4), global ones
        first, then the nodes', each in key order; other keys are ignored."""
        found = sorted(key for key in entries if key.startswith(prefix) and "/peer_v" in key)
        peers = [cls.from_value(entries[key]) for key in found if key.startswith(keys.BGP_GLOBAL)]
        return peers + [cls.from_value(entries[key], keys.host_of(key, keys.BGP_HOSTS)) for key in found
                        if key.startswith(keys.BGP_HOSTS)]


def check_pool_overlaps(new: list[IPPool], stored: list[IPPool]) -> None:
    """Pools may not overlap, except a pool with itself (an update of the same CIDR): said in the words
    of libcalico-go's link-local check, as Calico v1 did not check this itself."""
    for index, pool in enumerate(new):
        for other in new[index + 1:] + stored:
            if other.cidr != pool.cidr and other.cidr.version == pool.cidr.version and other.cidr.overlaps(pool.cidr):
                raise ValidationError(f"error with field CIDR = '{pool.cidr}' "
                                      f"(IP pool range overlaps with IP pool {other.cidr})")
