"""calicoctl v1 resources: validation, the v1 YAML/JSON form, and their etcd keys.

A resource is a frozen dataclass.  ``from_document`` validates a whole v1 document (unknown
fields, bad CIDRs, AS numbers out of range are errors, never silently dropped);
``document`` gives it back; ``writes`` are the keys and values that store it; ``load_all``
rebuilds every stored resource of the kind.  calicoctl only combines these.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from . import keys
from .datastore import Datastore

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MIN_POOL_PREFIX = {4: 26, 6: 122}  # a pool must hold at least one IPAM block
NAME_RE = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9._]{0,251}[a-zA-Z0-9])?$")


class ValidationError(ValueError):
    """A resource document is not valid; nothing of it may be stored."""


def check_fields(mapping: Any, allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> dict:
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ValidationError(f"{where} must be a mapping, not {type(mapping).__name__}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown field{'s' if len(unknown) > 1 else ''} in {where}: {', '.join(unknown)}")
    missing = [name for name in required if mapping.get(name) in (None, "")]
    if missing:
        raise ValidationError(f"missing field in {where}: {', '.join(missing)}")
    return mapping


def parse_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValidationError(f"{where} must be true or false, not {value!r}")


def parse_cidr(text: Any, where: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not a valid CIDR") from None
    if "/" not in str(text):
        raise ValidationError(f"{where}: {text!r} is not a valid CIDR (no prefix length)")
    if str(network) != str(text).strip():
        raise ValidationError(f"{where}: {text!r} has host bits set (did you mean {network}?)")
    return network


def parse_ip(text: Any, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not a valid IP address") from None


def parse_interface(text: Any, where: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(str(text))
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not a valid IP address (with optional /prefix)") from None


def parse_as_number(value: Any, where: str = "asNumber") -> int:
    """Plain (64512) or asdot (4294.566) AS number, 1..4294967295."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValidationError(f"{where}: {value!r} is not a valid AS number")
    if "." in text:
        high, low = (int(part) for part in text.split("."))
        if high > 65535 or low > 65535:
            raise ValidationError(f"{where}: {value!r} is not a valid asdot AS number (each part 0-65535)")
        number = high * 65536 + low
    else:
        number = int(text)
    if not 1 <= number <= 4294967295:
        raise ValidationError(f"{where}: AS number {value} is out of range (1-4294967295)")
    return number


def parse_name(value: Any, where: str) -> str:
    text = str(value) if value is not None else ""
    if not NAME_RE.match(text):
        raise ValidationError(f"{where}: {value!r} is not a valid name (letters, digits, '-', '.', '_')")
    return text


@dataclass(frozen=True)
class Resource:
    kind: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]]
    ps_columns: ClassVar[tuple[str, ...]]
    wide_columns: ClassVar[tuple[str, ...]]

    @classmethod
    def from_document(cls, doc: dict) -> "Resource":
        raise NotImplementedError

    def document(self) -> dict:
        raise NotImplementedError

    @property
    def ident(self) -> str:
        """How messages name this resource, e.g. IPPool(cidr=10.10.0.0/16)."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The NAME that `calicoctl get KIND NAME` and `delete KIND NAME` match."""
        raise NotImplementedError

    @property
    def primary_key(self) -> str:
        """The key whose presence means the resource exists."""
        raise NotImplementedError

    def writes(self) -> dict[str, Any]:
        raise NotImplementedError

    def owned_keys(self) -> list[str]:
        """Keys an apply/replace must clear when the new version no longer writes them."""
        return list(self.writes())

    def removal_prefixes(self) -> list[str]:
        """What `delete` removes: every key and prefix belonging to the resource."""
        return self.owned_keys()

    def row(self, wide: bool, context: dict) -> list[str]:
        raise NotImplementedError

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Resource"]:
        raise NotImplementedError

    @classmethod
    def _envelope(cls, doc: dict) -> tuple[dict, dict]:
        check_fields(doc, ("apiVersion", "kind", "metadata", "spec"), f"{cls.kind} resource")
        if doc.get("apiVersion") != "v1":
            raise ValidationError(f"{cls.kind}: apiVersion must be v1, not {doc.get('apiVersion')!r}")
        return doc.get("metadata") or {}, doc.get("spec") or {}

    def _wrap(self, metadata: dict, spec: dict) -> dict:
        return {"apiVersion": "v1", "kind": self.kind, "metadata": metadata, "spec": spec}


@dataclass(frozen=True)
class IPPool(Resource):
    kind: ClassVar[str] = "ipPool"
    aliases: ClassVar[tuple[str, ...]] = ("ippool", "ippools", "ipp", "ipps", "pool", "pools")
    ps_columns: ClassVar[tuple[str, ...]] = ("CIDR",)
    wide_columns: ClassVar[tuple[str, ...]] = ("CIDR", "NAT", "IPIP")

    cidr: IPNetwork
    ipip: bool = False
    nat_outgoing: bool = False
    disabled: bool = False
    vxlan: bool = False  # beyond Calico v1.0: Calico 3.7's VXLAN encapsulation, as `spec.vxlan.enabled`

    @classmethod
    def from_document(cls, doc: dict) -> "IPPool":
        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("cidr",), "ipPool metadata", required=("cidr",))
        check_fields(spec, ("ipip", "vxlan", "nat-outgoing", "disabled"), "ipPool spec")
        cidr = parse_cidr(metadata["cidr"], "ipPool metadata.cidr")
        if cidr.prefixlen > MIN_POOL_PREFIX[cidr.version]:
            raise ValidationError(
                f"IP pool is too small: {cidr} (an IPv{cidr.version} pool must be /{MIN_POOL_PREFIX[cidr.version]} or larger)")
        ipip_spec = check_fields(spec.get("ipip"), ("enabled", "mode"), "ipPool spec.ipip")
        ipip = parse_bool(ipip_spec.get("enabled", False), "ipPool spec.ipip.enabled")
        if ipip_spec.get("mode", "always") != "always":
            raise ValidationError(f"ipPool spec.ipip.mode: only 'always' is supported, not {ipip_spec['mode']!r}")
        if ipip and cidr.version != 4:
            raise ValidationError(f"IPIP is only supported on IPv4 pools, not {cidr}")
        vxlan_spec = check_fields(spec.get("vxlan"), ("enabled",), "ipPool spec.vxlan")
        vxlan = parse_bool(vxlan_spec.get("enabled", False), "ipPool spec.vxlan.enabled")
        if vxlan and cidr.version != 4:
            raise ValidationError(f"VXLAN is only supported on IPv4 pools, not {cidr}")
        if vxlan and ipip:
            raise ValidationError(f"ipPool {cidr}: IPIP and VXLAN cannot both be enabled")
        return cls(cidr, ipip,
                   parse_bool(spec.get("nat-outgoing", False), "ipPool spec.nat-outgoing"),
                   parse_bool(spec.get("disabled", False), "ipPool spec.disabled"), vxlan)

    def document(self) -> dict:
        spec: dict[str, Any] = {}
        if self.ipip:
            spec["ipip"] = {"enabled": True}
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

    def value(self) -> dict:
        value: dict[str, Any] = {"cidr": str(self.cidr), "masquerade": self.nat_outgoing, "disabled": self.disabled}
        if self.ipip:
            value["ipip"] = "tunl0"
            value["ipip_mode"] = "always"
        if self.vxlan:
            value["vxlan"] = "vxlan.calico"
        return value

    @classmethod
    def from_value(cls, value: dict) -> "IPPool":
        return cls(ipaddress.ip_network(value["cidr"]), bool(value.get("ipip")),
                   bool(value.get("masquerade")), bool(value.get("disabled")), bool(value.get("vxlan")))

    def writes(self) -> dict[str, Any]:
        return {self.primary_key: self.value()}

    def row(self, wide: bool, context: dict) -> list[str]:
        return [str(self.cidr), str(self.nat_outgoing).lower(), str(self.ipip).lower()][: 3 if wide else 1]

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
        if ipv4 is not None and ipv4.version != 4:
            raise ValidationError(f"node spec.bgp.ipv4Address: {ipv4} is not an IPv4 address")
        if ipv6 is not None and ipv6.version != 6:
            raise ValidationError(f"node spec.bgp.ipv6Address: {ipv6} is not an IPv6 address")
        as_number = parse_as_number(bgp["asNumber"], "node spec.bgp.asNumber") if bgp.get("asNumber") is not None else None
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
            values[keys.bgp_host_ip_v6(name)] = str(self.ipv6)
        if self.as_number is not None:
            values[keys.bgp_host_as(name)] = str(self.as_number)
        return values

    def owned_keys(self) -> list[str]:
        name = self.node_name
        return [keys.host_metadata(name), keys.host_bird_ip(name), keys.bgp_host_ip_v4(name),
                keys.bgp_host_network_v4(name), keys.bgp_host_ip_v6(name), keys.bgp_host_as(name)]

    def removal_prefixes(self) -> list[str]:
        return [keys.host(self.node_name), keys.bgp_host(self.node_name)]

    def row(self, wide: bool, context: dict) -> list[str]:
        if not wide:
            return [self.node_name]
        asn = str(self.as_number) if self.as_number is not None else f"({context.get('global_as', keys.DEFAULT_AS)})"
        return [self.node_name, asn, str(self.ipv4 or ""), str(self.ipv6 or "")]

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Node"]:
        names = sorted({keys.host_of(e.key) for e in await ds.list(keys.HOSTS) if e.key.endswith("/metadata")})
        bgp = {e.key: e.value for e in await ds.list(keys.BGP_HOSTS)}
        nodes = []
        for name in names:
            ip, network = bgp.get(keys.bgp_host_ip_v4(name)), bgp.get(keys.bgp_host_network_v4(name))
            ipv4 = ipaddress.ip_interface(f"{ip}/{ipaddress.ip_network(network).prefixlen}" if network else ip) if ip else None
            ipv6 = ipaddress.ip_interface(bgp[keys.bgp_host_ip_v6(name)]) if bgp.get(keys.bgp_host_ip_v6(name)) else None
            as_number = bgp.get(keys.bgp_host_as(name))
            nodes.append(cls(name, ipv4, ipv6, int(as_number) if as_number else None))
        return nodes


@dataclass(frozen=True)
class BGPPeer(Resource):
    kind: ClassVar[str] = "bgpPeer"
    aliases: ClassVar[tuple[str, ...]] = ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps")
    ps_columns: ClassVar[tuple[str, ...]] = ("SCOPE", "PEERIP", "NODE", "ASN")
    wide_columns: ClassVar[tuple[str, ...]] = ps_columns

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
        if peer_ip.version != 4:
            raise ValidationError(f"bgpPeer metadata.peerIP: IPv6 peers are not supported ({peer_ip})")
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
        base = keys.GLOBAL_PEERS_V4 if self.scope == "global" else keys.bgp_host_peers_v4(self.node)
        return base + str(self.peer_ip)

    def writes(self) -> dict[str, Any]:
        return {self.primary_key: {"ip": str(self.peer_ip), "as_num": str(self.as_number)}}

    def row(self, wide: bool, context: dict) -> list[str]:
        return [self.scope, str(self.peer_ip), self.node, str(self.as_number)]

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["BGPPeer"]:
        peers = [cls("global", ipaddress.ip_address(e.value["ip"]), int(e.value["as_num"]))
                 for e in await ds.list(keys.GLOBAL_PEERS_V4)]
        for entry in await ds.list(keys.BGP_HOSTS):
            if "/peer_v4/" in entry.key:
                peers.append(cls("node", ipaddress.ip_address(entry.value["ip"]), int(entry.value["as_num"]),
                                 keys.host_of(entry.key, keys.BGP_HOSTS)))
        return peers


ACTIONS = {"allow": "allow", "deny": "deny", "log": "log", "next-tier": "next-tier", "nextTier": "next-tier"}
RULE_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6", "sctp", "udplite")
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "udplite")
ENTITY_FIELDS = {"tag": "tag", "notTag": "!tag", "net": "net", "notNet": "!net", "selector": "selector",
                 "notSelector": "!selector", "ports": "ports", "notPorts": "!ports"}
PROFILES = "/calico/v1/policy/profile/"


def parse_protocol(value: Any, where: str) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 255:
        return value
    if value in RULE_PROTOCOLS:
        return value
    raise ValidationError(f"{where}: {value!r} is not a protocol (tcp, udp, icmp, icmpv6, sctp, udplite or 1-255)")


def parse_port(value: Any, where: str) -> int | str:
    """A port (1-65535) or a range "lo:hi"."""
    text = str(value)
    match = re.fullmatch(r"(\d+)(?::(\d+))?", text) if not isinstance(value, bool) else None
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
    if not match or not 1 <= low <= high <= 65535:
        raise ValidationError(f"{where}: {value!r} is not a port (1-65535) or a range lo:hi")
    return low if match[2] is None else f"{low}:{high}"


def rule_to_datastore(rule: Any, where: str) -> dict:
    """A v1 API rule (action, protocol, icmp, source: {tag, net, ports, ...}) in Felix's
    datastore form (action, protocol, icmp_type, src_tag, !dst_net, ...), validated whole."""
    rule = check_fields(rule, ("action", "ipVersion", "protocol", "notProtocol", "icmp", "notICMP", "source",
                               "destination"), where, required=("action",))
    if rule["action"] not in ACTIONS:
        raise ValidationError(f"{where}.action: {rule['action']!r} is not allow, deny, log or next-tier")
    stored: dict[str, Any] = {"action": ACTIONS[rule["action"]]}
    if rule.get("ipVersion") is not None:
        if rule["ipVersion"] not in (4, 6):
            raise ValidationError(f"{where}.ipVersion must be 4 or 6, not {rule['ipVersion']!r}")
        stored["ip_version"] = rule["ipVersion"]
    for api, key in (("protocol", "protocol"), ("notProtocol", "!protocol")):
        if rule.get(api) is not None:
            stored[key] = parse_protocol(rule[api], f"{where}.{api}")
    for api, prefix in (("icmp", ""), ("notICMP", "!")):
        icmp = check_fields(rule.get(api), ("type", "code"), f"{where}.{api}")
        for part in ("type", "code"):
            if icmp.get(part) is not None:
                if isinstance(icmp[part], bool) or not isinstance(icmp[part], int) or not 0 <= icmp[part] <= 255:
                    raise ValidationError(f"{where}.{api}.{part} must be 0-255, not {icmp[part]!r}")
                stored[f"{prefix}icmp_{part}"] = icmp[part]
        if icmp and stored.get("protocol") not in ("icmp", "icmpv6", 1, 58):
            raise ValidationError(f"{where}.{api} needs protocol icmp")
    for api, side in (("source", "src"), ("destination", "dst")):
        entity = check_fields(rule.get(api), ENTITY_FIELDS, f"{where}.{api}")
        for field_name, stem in ENTITY_FIELDS.items():
            value = entity.get(field_name)
            if value in (None, "", []):
                continue
            negated, base = stem.startswith("!"), stem.lstrip("!")
            at = f"{where}.{api}.{field_name}"
            if base == "tag":
                value = parse_name(value, at)
            elif base == "net":
                value = str(parse_cidr(value, at))
            elif base == "selector":
                from .selector import SelectorError, parse as parse_selector
                try:
                    parse_selector(str(value))
                except SelectorError as error:
                    raise ValidationError(f"{at}: {error}") from None
            else:
                if not isinstance(value, list):
                    raise ValidationError(f"{at} must be a list of ports")
                if stored.get("protocol") not in PORT_PROTOCOLS:
                    raise ValidationError(f"{at}: ports need protocol tcp, udp, sctp or udplite")
                value = [parse_port(port, at) for port in value]
            stored[f"{'!' if negated else ''}{side}_{base}"] = value
    return stored


def rule_to_api(stored: dict) -> dict:
    """The datastore form back into the v1 API form."""
    rule: dict[str, Any] = {"action": stored["action"]}
    if "ip_version" in stored:
        rule["ipVersion"] = stored["ip_version"]
    for key, api in (("protocol", "protocol"), ("!protocol", "notProtocol")):
        if key in stored:
            rule[api] = stored[key]
    for prefix, api in (("", "icmp"), ("!", "notICMP")):
        icmp = {part: stored[f"{prefix}icmp_{part}"] for part in ("type", "code") if f"{prefix}icmp_{part}" in stored}
        if icmp:
            rule[api] = icmp
    for side, api in (("src", "source"), ("dst", "destination")):
        entity = {field_name: stored[f"{'!' if stem.startswith('!') else ''}{side}_{stem.lstrip('!')}"]
                  for field_name, stem in ENTITY_FIELDS.items()
                  if f"{'!' if stem.startswith('!') else ''}{side}_{stem.lstrip('!')}" in stored}
        if entity:
            rule[api] = entity
    return rule


def parse_rules(value: Any, where: str) -> tuple[dict, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list of rules")
    return tuple(rule_to_datastore(rule, f"{where}[{index}]") for index, rule in enumerate(value))


def parse_labels(value: Any, where: str) -> dict[str, str]:
    labels = check_fields(value, value.keys() if isinstance(value, dict) else (), where)
    for key, label in labels.items():
        if not re.fullmatch(r"[a-zA-Z0-9_./-]{1,253}", str(key)) or not isinstance(label, str):
            raise ValidationError(f"{where}: {key!r}: {label!r} is not a valid label (name: string)")
    return dict(labels)


@dataclass(frozen=True)
class Profile(Resource):
    """A profile: tags (group membership for tag matches), labels (inherited by its endpoints)
    and rules.  libnetwork makes one per Docker network; calicoctl edits them."""

    kind: ClassVar[str] = "profile"
    aliases: ClassVar[tuple[str, ...]] = ("profile", "profiles", "pro", "pros")
    ps_columns: ClassVar[tuple[str, ...]] = ("NAME",)
    wide_columns: ClassVar[tuple[str, ...]] = ("NAME", "TAGS")

    profile_name: str
    tags: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    ingress: tuple[dict, ...] = ()
    egress: tuple[dict, ...] = ()

    @classmethod
    def from_document(cls, doc: dict) -> "Profile":
        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("name", "tags", "labels"), "profile metadata", required=("name",))
        check_fields(spec, ("ingress", "egress"), "profile spec")
        tags = metadata.get("tags") or []
        if not isinstance(tags, list):
            raise ValidationError("profile metadata.tags must be a list")
        return cls(parse_name(metadata["name"], "profile metadata.name"),
                   tuple(parse_name(tag, "profile metadata.tags") for tag in tags),
                   tuple(sorted(parse_labels(metadata.get("labels"), "profile metadata.labels").items())),
                   parse_rules(spec.get("ingress"), "profile spec.ingress"),
                   parse_rules(spec.get("egress"), "profile spec.egress"))

    def document(self) -> dict:
        metadata: dict[str, Any] = {"name": self.profile_name, "tags": list(self.tags), "labels": dict(self.labels)}
        return self._wrap(metadata, {"ingress": [rule_to_api(r) for r in self.ingress],
                                     "egress": [rule_to_api(r) for r in self.egress]})

    @property
    def ident(self) -> str:
        return f"Profile(name={self.profile_name})"

    @property
    def name(self) -> str:
        return self.profile_name

    @property
    def primary_key(self) -> str:
        return f"{PROFILES}{self.profile_name}/tags"

    def writes(self) -> dict[str, Any]:
        base = f"{PROFILES}{self.profile_name}/"
        return {base + "tags": list(self.tags), base + "labels": dict(self.labels),
                base + "rules": {"inbound_rules": list(self.ingress), "outbound_rules": list(self.egress)}}

    def removal_prefixes(self) -> list[str]:
        return [f"{PROFILES}{self.profile_name}/"]

    def row(self, wide: bool, context: dict) -> list[str]:
        return [self.profile_name, ",".join(self.tags)][: 2 if wide else 1]

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Profile"]:
        return cls.from_entries({entry.key: entry.value for entry in await ds.list(PROFILES)})

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["Profile"]:
        """Every profile stored in these keys (others are ignored): what calicoctl and Felix read."""
        parts: dict[str, dict] = {}
        for key, value in entries.items():
            if key.startswith(PROFILES):
                name, part = key[len(PROFILES):].rsplit("/", 1)
                parts.setdefault(name, {})[part] = value
        profiles = []
        for name, values in sorted(parts.items()):
            rules = values.get("rules") or {}
            profiles.append(cls(name, tuple(values.get("tags") or ()), tuple(sorted((values.get("labels") or {}).items())),
                                tuple(rules.get("inbound_rules") or ()), tuple(rules.get("outbound_rules") or ())))
        return profiles


POLICIES = "/calico/v1/policy/tier/default/policy/"


@dataclass(frozen=True)
class Policy(Resource):
    """A selector policy of the default tier: applies to the endpoints its selector matches,
    before their profiles, lowest order first."""

    kind: ClassVar[str] = "policy"
    aliases: ClassVar[tuple[str, ...]] = ("policy", "policies", "pol", "pols")
    ps_columns: ClassVar[tuple[str, ...]] = ("NAME",)
    wide_columns: ClassVar[tuple[str, ...]] = ("NAME", "ORDER", "SELECTOR")

    policy_name: str
    selector: str
    order: float | None = None
    ingress: tuple[dict, ...] = ()
    egress: tuple[dict, ...] = ()

    @classmethod
    def from_document(cls, doc: dict) -> "Policy":
        from .selector import SelectorError, parse as parse_selector

        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("name",), "policy metadata", required=("name",))
        check_fields(spec, ("order", "selector", "ingress", "egress"), "policy spec", required=("selector",))
        order = spec.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise ValidationError(f"policy spec.order must be a number, not {order!r}")
        try:
            parse_selector(str(spec["selector"]))
        except SelectorError as error:
            raise ValidationError(f"policy spec.selector: {error}") from None
        return cls(parse_name(metadata["name"], "policy metadata.name"), str(spec["selector"]), order,
                   parse_rules(spec.get("ingress"), "policy spec.ingress"),
                   parse_rules(spec.get("egress"), "policy spec.egress"))

    def document(self) -> dict:
        spec: dict[str, Any] = {"selector": self.selector}
        if self.order is not None:
            spec["order"] = self.order
        spec["ingress"] = [rule_to_api(r) for r in self.ingress]
        spec["egress"] = [rule_to_api(r) for r in self.egress]
        return self._wrap({"name": self.policy_name}, spec)

    @property
    def ident(self) -> str:
        return f"Policy(name={self.policy_name})"

    @property
    def name(self) -> str:
        return self.policy_name

    @property
    def primary_key(self) -> str:
        return POLICIES + self.policy_name

    def value(self) -> dict:
        return {"order": self.order, "selector": self.selector, "inbound_rules": list(self.ingress),
                "outbound_rules": list(self.egress)}

    def writes(self) -> dict[str, Any]:
        return {self.primary_key: self.value()}

    def row(self, wide: bool, context: dict) -> list[str]:
        order = "" if self.order is None else f"{self.order:g}"
        return [self.policy_name, order, self.selector][: 3 if wide else 1]

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Policy"]:
        return cls.from_entries({entry.key: entry.value for entry in await ds.list(POLICIES)})

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["Policy"]:
        """Every policy stored in these keys (others are ignored)."""
        return [cls(key[len(POLICIES):], value["selector"], value.get("order"),
                    tuple(value.get("inbound_rules") or ()), tuple(value.get("outbound_rules") or ()))
                for key, value in sorted(entries.items()) if key.startswith(POLICIES)]


@dataclass(frozen=True)
class WorkloadEndpoint(Resource):
    """A workload's endpoint, as the libnetwork plugin stored it: shown, never written by calicoctl."""

    kind: ClassVar[str] = "workloadEndpoint"
    aliases: ClassVar[tuple[str, ...]] = ("workloadendpoint", "workloadendpoints", "wep", "weps")
    ps_columns: ClassVar[tuple[str, ...]] = ("NODE", "ORCHESTRATOR", "WORKLOAD", "NAME")
    wide_columns: ClassVar[tuple[str, ...]] = ps_columns + ("NETWORKS", "NATS", "INTERFACE", "PROFILES")

    node: str
    orchestrator: str
    workload: str
    endpoint: str
    networks: tuple[str, ...] = ()
    interface: str = ""
    mac: str = ""
    profiles: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, doc: dict) -> "WorkloadEndpoint":
        raise ValidationError("workloadEndpoint resources are managed by the libnetwork plugin; calicoctl only reads them")

    def document(self) -> dict:
        return self._wrap({"node": self.node, "orchestrator": self.orchestrator, "workload": self.workload,
                           "name": self.endpoint, "labels": {}},
                          {"interfaceName": self.interface, "mac": self.mac, "ipNetworks": list(self.networks),
                           "profiles": list(self.profiles)})

    @property
    def ident(self) -> str:
        return f"WorkloadEndpoint(node={self.node}, name={self.endpoint})"

    @property
    def name(self) -> str:
        return self.endpoint

    @property
    def primary_key(self) -> str:
        return f"{keys.host(self.node)}workload/{self.orchestrator}/{self.workload}/endpoint/{self.endpoint}"

    def writes(self) -> dict[str, Any]:
        raise ValidationError("workloadEndpoint resources are read-only")

    def row(self, wide: bool, context: dict) -> list[str]:
        row = [self.node, self.orchestrator, self.workload, self.endpoint]
        return row + [",".join(self.networks), "", self.interface, ",".join(self.profiles)] if wide else row

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["WorkloadEndpoint"]:
        endpoints = []
        for entry in await ds.list(keys.HOSTS):
            parts = entry.key[len(keys.HOSTS):].split("/")
            if len(parts) == 6 and parts[1] == "workload" and parts[4] == "endpoint" and entry.value:
                endpoints.append(cls(parts[0], parts[2], parts[3], parts[5], tuple(entry.value.get("ipv4_nets", [])),
                                     entry.value.get("name", ""), entry.value.get("mac", ""),
                                     tuple(entry.value.get("profile_ids", []))))
        return endpoints


KINDS: tuple[type[Resource], ...] = (Node, IPPool, BGPPeer, Profile, Policy, WorkloadEndpoint)


def kind_named(text: str) -> type[Resource]:
    wanted = text.lower()
    for kind in KINDS:
        if wanted == kind.kind.lower() or wanted in kind.aliases:
            return kind
    raise ValidationError(f"resource type {text!r} is not supported (known: {', '.join(k.kind for k in KINDS)})")


def parse_documents(data: Any) -> list[Resource]:
    """One resource or a list of them; every item is validated before any is returned."""
    items = data if isinstance(data, list) else [data]
    resources: list[Resource] = []
    for index, item in enumerate(items):
        where = f"item {index + 1}: " if isinstance(data, list) else ""
        if not isinstance(item, dict):
            raise ValidationError(f"{where}a resource must be a mapping with apiVersion, kind, metadata and spec")
        if "kind" not in item:
            raise ValidationError(f"{where}missing field 'kind'")
        try:
            resources.append(kind_named(str(item["kind"])).from_document(item))
        except ValidationError as error:
            raise ValidationError(f"{where}{error}") from None
    seen: set[str] = set()
    for resource in resources:
        if resource.primary_key in seen:
            raise ValidationError(f"{resource.ident} appears more than once in the input")
        seen.add(resource.primary_key)
    check_pool_overlaps([r for r in resources if isinstance(r, IPPool)], [])
    return resources


def check_pool_overlaps(new: list[IPPool], stored: list[IPPool]) -> None:
    """Pools may not overlap, except a pool with itself (an update of the same CIDR)."""
    for index, pool in enumerate(new):
        for other in new[index + 1:] + stored:
            if other.cidr != pool.cidr and other.cidr.version == pool.cidr.version and other.cidr.overlaps(pool.cidr):
                raise ValidationError(f"IP pool {pool.cidr} overlaps with IP pool {other.cidr}")
