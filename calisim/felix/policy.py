"""Felix's policy part: which workload may talk to which, and nat-outgoing (README "Policy").

Desired state first (as Calico's Python Felix): from etcd's endpoints (of every host: tags and
selectors match addresses anywhere), profiles, policies and pools, ``render`` computes this
host's whole nftables table ``ip calico`` and, when there are IPv6 pools, its twin ``ip6 calico``
(the same chains and semantics for IPv6 addresses, as Felix's ip6tables); ``apply`` replaces both
in one `nft -f` transaction.

Why nftables rather than iptables-restore + ipset: the table, its sets (tag memberships, pools)
and its chains change in one kernel transaction, so no packet ever meets rules that refer to a
set that is still half filled, and a rejected ruleset changes nothing (the host keeps its last
good rules).

Chains, as Felix's: forward traffic from a workload interface goes through that endpoint's
`from_` chain (egress rules), traffic to one through its `to_` chain (ingress rules).  An endpoint
chain first runs the selector policies that apply to it, lowest order first (the tier: allow
marks the packet and returns, deny drops, log logs, next-tier leaves the tier; a tier where no
policy decided drops), then its profiles' rule chains in order (next-tier there goes on to the
next profile); nothing allowed means drop.  Tags and selectors in rules become address sets.  Replies of allowed
connections pass (conntrack).  Workload to its own host: dropped except DHCP and DNS.  The host
itself may reach its workloads.  nat-outgoing: masquerade traffic from a nat-outgoing pool to
destinations outside every pool.

Host endpoints (Felix 2.0): a hostEndpoint names one of the host's own interfaces.  Traffic the
host receives on it (input hook) goes through `host_in_<if>` (failsafes, then the policies that
select the endpoint's labels and its profiles' ingress rules), traffic the host sends out of it
(output hook) through `host_out_<if>` (egress rules); nothing allowed means drop, so an interface
with a host endpoint is default-deny.  The failsafe ports stay open whatever the policy says, so
a host cannot cut itself off from SSH, BGP and etcd (Felix's FailsafeInboundHostPorts and
FailsafeOutboundHostPorts config, global or per host, change them).  As in Felix 2.0, forwarded traffic (to
and from workloads) is not host-endpoint policy's business, nor is IPIP or VXLAN between Calico
hosts (the tunnelled workload traffic).  Host endpoints hold for IPv6 too, as Felix 2.x's
ip6tables rules hold them: the same chains in `ip6 calico` (expected IPv6 addresses, the same
failsafe ports, so a BGP session over IPv6 survives a default-deny interface); neighbour
discovery (and MLD) passes, or a default-deny interface could not even resolve its IPv6 neighbours.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import operator
import subprocess
from dataclasses import dataclass, field, replace
from typing import Any

from ..datastore import keys, resources, selector
from ..datastore.resources import PORT_PROTOCOLS
from .endpoints import WORKLOAD_INTERFACE_PREFIX as WORKLOAD_PREFIX

TABLE = "calico"
ALLOW_MARK = 0x1000000  # set by an allow, checked after each policy and profile (Felix used marks the same way)
NEXT_TIER_MARK = 0x2000000  # set by a policy's next-tier: leave the tier for the profiles
PROTOCOLS = {"tcp", "udp", "icmp", "sctp", "udplite"}  # in an IPv4 table (icmpv6 rules are skipped)


@dataclass(frozen=True)
class Family:
    """What differs between the IPv4 and the IPv6 table."""
    version: int
    table: str  # nft family and address-match keyword: ip / ip6
    address_type: str
    icmp: str  # the ICMP protocol of the family, and its nft match keyword
    protocols: frozenset[str]


FAMILIES = {4: Family(4, "ip", "ipv4_addr", "icmp", frozenset(PROTOCOLS)),
            6: Family(6, "ip6", "ipv6_addr", "icmpv6", frozenset(PROTOCOLS - {"icmp"} | {"icmpv6"}))}
IPV4 = FAMILIES[4]
# A workload must reach its IPv6 gateway (the host side's link-local address) by NDP.
NDP_TO_HOST = "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"
# Through a host endpoint: neighbour discovery and multicast listener reports both ways (the ICMPv6
# types conntrack leaves untracked, so no reply rule lets them by; Felix lets the same by for workloads).
NDP_HOST_ENDPOINT = ("icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, "
                     "nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, "
                     "mld2-listener-report } accept")


class PolicyError(ValueError):
    """A rule the renderer cannot express; the host keeps its last good rules."""


# Felix 2.0's defaults (FailsafeInboundHostPorts tcp 22; FailsafeOutboundHostPorts tcp 2379, 2380,
# 4001, 7001), with what later Felix added by default: BGP both ways, etcd inbound (for the host that
# runs it), DHCP and DNS.
FAILSAFE_INBOUND = (("tcp", 22), ("udp", 68), ("tcp", 179), ("tcp", 2379), ("tcp", 2380), ("tcp", 4001), ("tcp", 7001))
FAILSAFE_OUTBOUND = (("udp", 53), ("udp", 67), ("tcp", 179), ("tcp", 2379), ("tcp", 2380), ("tcp", 4001), ("tcp", 7001))
VXLAN_PORT = 4789
FAILSAFE_PARAMS = {"in": ("FailsafeInboundHostPorts", FAILSAFE_INBOUND),
                   "out": ("FailsafeOutboundHostPorts", FAILSAFE_OUTBOUND)}


@dataclass(frozen=True)
class Endpoint:
    host: str
    interface: str
    addresses: tuple[str, ...]
    profiles: tuple[str, ...]
    labels: tuple[tuple[str, str], ...] = ()  # its own; they win over those inherited from profiles
    on_host: bool = False  # a host endpoint (one of the host's own interfaces), not a workload's


@dataclass(frozen=True)
class Profile:
    name: str
    tags: tuple[str, ...] = ()
    inbound: tuple[dict, ...] = ()
    outbound: tuple[dict, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


NO_PROFILE = Profile("")  # what a missing profile gives: no tags, labels or rules


@dataclass(frozen=True)
class Policy:
    name: str
    selector: str
    order: float | None = None
    inbound: tuple[dict, ...] = ()
    outbound: tuple[dict, ...] = ()

    @property
    def sort_key(self) -> tuple:
        return (self.order is None, self.order or 0, self.name)  # no order sorts last, as Calico


@dataclass(frozen=True)
class Model:
    """Everything policy is computed from."""
    endpoints: tuple[Endpoint, ...]
    profiles: dict[str, Profile] = field(default_factory=dict)
    nat_pools: tuple[str, ...] = ()
    all_pools: tuple[str, ...] = ()
    policies: tuple[Policy, ...] = ()
    host_addresses: tuple[str, ...] = ()  # every Calico host's own address (bird_ip)
    felix_config: dict[str, Any] = field(default_factory=dict)  # /calico/v1/config/ and host/<h>/config/ keys

    def failsafes(self, host: str, direction: str) -> tuple[tuple[str, int], ...]:
        """The failsafe ports of a host ("in" or "out"): its own Felix config, else the global
        one, else Felix's defaults."""
        param, default = FAILSAFE_PARAMS[direction]
        value = self.felix_config.get(keys.host_config(host, param), self.felix_config.get(keys.FELIX_CONFIG + param))
        return default if value is None else parse_port_list(str(value), param)

    def labels(self, endpoint: Endpoint) -> dict[str, str]:
        """An endpoint's labels: inherited from its profiles, later profiles winning, then its own."""
        labels: dict[str, str] = {}
        for name in endpoint.profiles:
            labels.update(self.profiles.get(name, NO_PROFILE).labels)
        return labels | dict(endpoint.labels)

    def local(self, host: str, on_host: bool) -> list[Endpoint]:
        """This host's workload endpoints, or its host endpoints that name an interface."""
        return [e for e in self.endpoints if e.host == host and e.on_host == on_host and e.interface]

    def selected(self, text: str) -> list[Endpoint]:
        tree = selector.parse(text)
        return [e for e in self.endpoints if tree.matches(self.labels(e))]

    def policies_for(self, endpoint: Endpoint) -> list[Policy]:
        if not self.policies:
            return []
        labels = self.labels(endpoint)
        return sorted((p for p in self.policies if selector.parse(p.selector).matches(labels)),
                      key=lambda p: p.sort_key)


def datastore_prefixes() -> list[str]:
    return [keys.HOSTS, keys.PROFILES, keys.POLICIES, keys.POOLS_V4, keys.POOLS_V6, keys.FELIX_CONFIG]


def depends_on(key: str, host_addresses: bool) -> bool:
    """Whether the model (``load``) reads this key of the prefixes: under a host, only endpoints
    (workload and host), Failsafe config and, when the table names every host's address (this
    host has host endpoints: host_addresses), the hosts' bird_ip; a host's metadata or tunnel
    addresses change no table."""
    if not key.startswith(keys.HOSTS):
        return True
    if key == keys.host_bird_ip(keys.host_of(key)):
        return host_addresses
    return "/endpoint/" in key or "/config/Failsafe" in key


def names_host_addresses(model: Model, host: str) -> bool:
    """The host's table holds every host's address (the calico_hosts set) when it has host endpoints."""
    return any(endpoint.on_host and endpoint.host == host for endpoint in model.endpoints)


def parse_port_list(text: str, param: str) -> tuple[tuple[str, int], ...]:
    """Felix's port-list: "22,2379" (TCP, Felix 2.0's form) or "tcp:22,udp:68"; "none" or "" for none."""
    ports = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item == "none":
            continue
        protocol, _, port = item.rpartition(":")
        if protocol not in ("", "tcp", "udp") or not port.isdigit() or not 0 < int(port) < 65536:
            raise PolicyError(f"{param}: {item!r} is not a port, tcp:port or udp:port")
        ports.append((protocol or "tcp", int(port)))
    return tuple(ports)


@functools.lru_cache(maxsize=65536)
def key_kind(key: str) -> str | None:
    """What the model reads from a key of the prefixes: "workload" (an endpoint), "host_endpoint",
    "bird_ip" (a host's address), "config" (Felix config, Failsafe settings), "other" (profiles,
    policies, pools), None for a host's other keys (its metadata, tunnel addresses)."""
    if not key.startswith(keys.HOSTS):
        return "config" if key.startswith(keys.FELIX_CONFIG) or "/config/Failsafe" in key else "other"
    parts = keys.split_host_key(key)
    if len(parts) == 6 and parts[1] == "workload" and parts[4] == "endpoint":
        return "workload"
    if len(parts) == 3 and parts[1] == "endpoint":
        return "host_endpoint"
    if len(parts) == 2 and parts[1] == "bird_ip":
        return "bird_ip"
    return "config" if "/config/Failsafe" in key else None


def workload_endpoint(key: str, value: Any) -> Endpoint | None:
    """An active workload endpoint's part of the model (None: not stored, or not active)."""
    if not value:
        return None
    node, _, orchestrator, workload, _, name = keys.split_host_key(key)
    stored = resources.WorkloadEndpoint.from_value(node, orchestrator, workload, name, value)
    if not stored.active:
        return None
    return Endpoint(stored.node, stored.interface, tuple(str(address) for address in stored.addresses),
                    stored.profiles)


def host_endpoint(key: str, value: Any) -> Endpoint | None:
    if not isinstance(value, dict):
        return None
    node, _, name = keys.split_host_key(key)
    stored = resources.HostEndpoint.from_value(node, name, value)
    return Endpoint(stored.node, stored.interface, tuple(str(ip) for ip in stored.expected_ips), stored.profiles,
                    stored.labels, on_host=True)


DECODERS = {"workload": workload_endpoint, "host_endpoint": host_endpoint,
            "bird_ip": lambda key, value: str(value) if value else None}


class Loader:
    """``load``, pass after pass (one per Felix): an endpoint or a host's address is decoded again
    only when its value changed (the mirror keeps the very object of a value that did not).
    Decoding every host's endpoints on every pass was most of a pass's Python at 100 hosts, paid
    on every host at once after each change."""

    def __init__(self) -> None:
        self.decoded: dict[str, tuple[Any, Any]] = {}  # key -> (its value, its part of the model)

    def load(self, entries: dict[str, Any]) -> Model:
        """The model from etcd's keys (see ``datastore_prefixes``)."""
        decoded: dict[str, tuple[Any, Any]] = {}
        found: dict[str, list[tuple[str, Any]]] = {kind: [] for kind in DECODERS}
        config: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for key, value in entries.items():
            kind = key_kind(key)
            if kind in DECODERS:
                known = self.decoded.get(key)
                if known is None or known[0] is not value:
                    known = (value, DECODERS[kind](key, value))
                decoded[key] = known
                found[kind].append((key, known[1]))
            elif kind == "config":
                config[key] = value
            elif kind == "other":
                others[key] = value
        self.decoded = decoded
        by_key = operator.itemgetter(0)
        endpoints = [endpoint for kind in ("workload", "host_endpoint")
                     for _, endpoint in sorted(found[kind], key=by_key) if endpoint is not None]
        pools = resources.IPPool.from_entries(others)
        return Model(tuple(endpoints),
                     {p.profile_name: Profile(p.profile_name, p.tags, p.ingress, p.egress, p.labels)
                      for p in resources.Profile.from_entries(others)},
                     tuple(str(p.cidr) for p in pools if p.nat_outgoing), tuple(str(p.cidr) for p in pools),
                     tuple(Policy(p.policy_name, p.applies_to, p.order, p.ingress, p.egress)
                           for p in resources.Policy.from_entries(others)),
                     tuple(sorted({address for _, address in found["bird_ip"] if address})), config)


    def workloads(self) -> dict[str, Endpoint]:
        """The last load's active workload endpoints (any host's), by key."""
        return {key: part for key, (_, part) in self.decoded.items()
                if part is not None and key_kind(key) == "workload"}


def load(entries: dict[str, Any]) -> Model:
    """The model from etcd's keys, once (Felix keeps a Loader)."""
    return Loader().load(entries)


def host_interface_addresses() -> dict[str, set[str]]:
    """This host's interfaces and their IPv4 and IPv6 addresses (what a host endpoint's expectedIPs
    are matched against when it names no interface)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        found: dict[str, set[str]] = {}
        for address in ipr.get_addr():
            found.setdefault(names.get(address["index"], ""), set()).add(address.get_attr("IFA_ADDRESS"))
    return found


def with_interfaces(model: Model, host: str, interfaces: dict[str, set[str]]) -> Model:
    """As Felix 2.0: this host's endpoints without interfaceName apply to every interface that
    holds one of their expected IPs (none: they apply nowhere yet)."""
    endpoints = []
    for endpoint in model.endpoints:
        if endpoint.on_host and endpoint.host == host and not endpoint.interface:
            endpoints += [replace(endpoint, interface=name) for name, addresses in sorted(interfaces.items())
                          if name and addresses & set(endpoint.addresses)]
        else:
            endpoints.append(endpoint)
    return replace(model, endpoints=tuple(endpoints))


def tag_members(model: Model) -> dict[str, set[str]]:
    """Tag -> the addresses of every endpoint (any host) that has a profile carrying the tag."""
    members: dict[str, set[str]] = {}
    for endpoint in model.endpoints:
        for profile_name in endpoint.profiles:
            for tag in model.profiles.get(profile_name, NO_PROFILE).tags:
                members.setdefault(tag, set()).update(endpoint.addresses)
    return members


@functools.lru_cache(maxsize=4096)
def set_name(kind: str, name: str) -> str:
    """nft names are short and plain: a readable stem plus a hash of the real name (kept: a table
    at 1000 endpoints names each profile's chains once per endpoint)."""
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "_" for c in name)[:16]
    return f"{kind}_{stem}_{digest}"


def all_rules(model: Model) -> list[dict]:
    return [rule for owner in (*model.profiles.values(), *model.policies) for rule in owner.inbound + owner.outbound]


def render(model: Model, host: str, ipv6_support: bool = True, kept_ipv6: bool | None = None) -> str:
    """This host's whole `ip calico` table and, when IPv6 support is on (FELIX_IPV6SUPPORT) and there are
    IPv6 pools, endpoints with IPv6 addresses (a pool deleted under them) or host endpoints here (they
    hold for both versions), its `ip6 calico` table, as nft input.  kept_ipv6 given (any host's endpoint
    has IPv6): address sets declared empty, Felix keeps their elements (addresses.py); model is then
    this host's workload endpoints and the host endpoints."""
    has_ipv6 = kept_ipv6 or any(ip_version(a) == 6 for endpoint in model.endpoints for a in endpoint.addresses)
    ipv6 = ipv6_support and (has_ipv6 or any(ip_version(pool) == 6 for pool in model.all_pools)
                             or bool(model.local(host, on_host=True)))
    tags = tag_members(model) if kept_ipv6 is None else None
    return "".join(render_table(model, host, family, tags) for family in (IPV4, *([FAMILIES[6]] if ipv6 else [])))


def ip_version(address: str) -> int:
    """An address's or network's IP version from its text (load wrote it from a parsed one): no
    parse per address, which was a third of rendering a table at 1000 endpoints."""
    return 6 if ":" in address else 4


def of_family(addresses, family: Family) -> list[str]:
    return [a for a in addresses if ip_version(a) == family.version]


def render_table(model: Model, host: str, family: Family, tags: dict[str, set[str]] | None) -> str:
    """One family's table (tags: ``tag_members``, of both families; None: the sets declared empty)."""
    local = model.local(host, on_host=False)
    local_hosts = model.local(host, on_host=True)
    rules = all_rules(model)
    lines = [f"table {family.table} {TABLE} {{"]
    for tag in sorted({tag for rule in rules for tag in rule_values(rule, "tag")}):
        members = [] if tags is None else sorted(of_family(tags.get(tag, ()), family))
        lines += address_set(set_name("tag", tag), members, False, family)
    for text in sorted({text for rule in rules for text in rule_values(rule, "selector")}):
        members = sorted({address for endpoint in model.selected(text)
                          for address in of_family(endpoint.addresses, family)}) if tags is not None else []
        lines += address_set(set_name("sel", text), members, False, family)
    lines += address_set("all_pools", of_family(model.all_pools, family), True, family)
    lines += address_set("nat_pools", of_family(model.nat_pools, family), True, family)
    lines += base_chains(local, local_hosts, family)
    if local_hosts:
        if family is IPV4:  # the Calico hosts whose IPIP and VXLAN pass (IPv4 tunnels only)
            lines += address_set("calico_hosts", list(model.host_addresses), interval=False)
        lines += host_endpoint_base_chains(local_hosts, model.failsafes(host, "in"), model.failsafes(host, "out"),
                                           family)
    for endpoint in local + local_hosts:
        for direction in ("to", "from"):
            lines += endpoint_chains(endpoint, direction, model.policies_for(endpoint))
    applying = {p.name: p for e in local + local_hosts for p in model.policies_for(e)}
    for policy in sorted(applying.values(), key=lambda p: p.sort_key):
        lines += chain(policy_chain(policy.name, "to"), [render_rule(r, True, family) for r in policy.inbound])
        lines += chain(policy_chain(policy.name, "from"), [render_rule(r, True, family) for r in policy.outbound])
    for name in sorted({name for endpoint in local + local_hosts for name in endpoint.profiles}):
        profile = model.profiles.get(name, Profile(name))
        lines += chain(profile_chain(name, "to"), [render_rule(r, False, family) for r in profile.inbound])
        lines += chain(profile_chain(name, "from"), [render_rule(r, False, family) for r in profile.outbound])
    lines.append("}")
    return "\n".join(lines) + "\n"


def address_set(name: str, elements: list[str], interval: bool, family: Family = IPV4) -> list[str]:
    return element_set(name, family.address_type, elements, flags="interval" if interval else None)


def element_set(name: str, key_type: str, elements: list[str], kind: str = "set",
                flags: str | None = None) -> list[str]:
    """A named set or map (ruleset.parse reads its elements back: none holds ", ")."""
    lines = [f"  {kind} {name} {{", f"    type {key_type}"] + ([f"    flags {flags}"] if flags else [])
    if elements:
        lines.append(f"    elements = {{ {', '.join(elements)} }}")
    return lines + ["  }"]


def chain(name: str, rules: list[str | None], hook: str | None = None) -> list[str]:
    body = [f"    {rule}" for rule in rules if rule is not None]
    return [f"  chain {name} {{"] + ([f"    {hook}"] if hook else []) + body + ["  }"]


def endpoint_chain_name(endpoint: Endpoint, direction: str) -> str:
    """to_/from_<if> for a workload (traffic to it / from it); host_in_/host_out_<if> for a host
    endpoint (traffic into the host / out of it: its ingress / egress rules)."""
    if endpoint.on_host:
        return f"host_{'in' if direction == 'to' else 'out'}_{endpoint.interface}"
    return f"{direction}_{endpoint.interface}"


def profile_chain(name: str, direction: str) -> str:
    return set_name(f"p{direction}", name)


def host_endpoint_base_chains(local_hosts: list[Endpoint], inbound: tuple, outbound: tuple,
                              family: Family = IPV4) -> list[str]:
    """The output hook's dispatch to host endpoints and the failsafe chains (the input hook's
    dispatch is in ``base_chains``)."""
    return (chain("output", host_endpoint_dispatch(local_hosts, "from", family),
                  "type filter hook output priority filter; policy accept;")
            + chain("failsafe_in", failsafe_rules(inbound)) + chain("failsafe_out", failsafe_rules(outbound)))


def host_endpoint_dispatch(local_hosts: list[Endpoint], direction: str, family: Family = IPV4) -> list[str]:
    """Replies pass; tunnels between Calico hosts (IPv4's) carry workload traffic and pass, as do
    IPv6's neighbour discovery and MLD; the rest goes through the host endpoint chain of its
    interface (which drops what it does not allow)."""
    match, peer = ("iifname", "saddr") if direction == "to" else ("oifname", "daddr")
    verdicts = ", ".join(f'"{e.interface}" : jump {endpoint_chain_name(e, direction)}' for e in local_hosts)
    tunnels = [f"meta l4proto 4 ip {peer} @calico_hosts accept",
               f"udp dport {VXLAN_PORT} ip {peer} @calico_hosts accept"]
    return ["ct state established,related accept", "ct state invalid drop",
            *(tunnels if family is IPV4 else [NDP_HOST_ENDPOINT]), f"{match} vmap {{ {verdicts} }}"]


def failsafe_rules(ports: tuple[tuple[str, int], ...]) -> list[str]:
    by_protocol: dict[str, list[str]] = {}
    for protocol, port in ports:
        by_protocol.setdefault(protocol, []).append(str(port))
    return [f"{protocol} dport {{ {', '.join(listed)} }} accept" for protocol, listed in by_protocol.items()]


def base_chains(local: list[Endpoint], local_hosts: list[Endpoint] = (), family: Family = IPV4) -> list[str]:
    # Named maps and a named set rather than literals in the rules: an endpoint that comes or goes is
    # then a few elements added or deleted (ruleset.delta), not the forward chain rewritten.
    lines = element_set("workloads", "ifname", [f'"{e.interface}"' for e in local])
    forward = ["ct state established,related accept", "ct state invalid drop"]
    for direction, match in (("from", "iifname"), ("to", "oifname")):
        # each endpoint's chain returns what its rules allow, and drops the rest; an unknown one is dropped
        lines += element_set(f"{direction}_workload", "ifname : verdict",
                             [f'"{e.interface}" : jump {endpoint_chain_name(e, direction)}' for e in local], "map")
        forward += [f"{match} vmap @{direction}_workload", f'{match} "{WORKLOAD_PREFIX}*" {match} != @workloads drop']
    workload_to_host = host_endpoint_dispatch(list(local_hosts), "to", family) if local_hosts else []
    dhcp = ["udp dport 67 accept"] if family is IPV4 else [NDP_TO_HOST, "udp dport 547 accept"]
    workload_to_host += [f'iifname != "{WORKLOAD_PREFIX}*" accept', "ct state established,related accept",
                         *dhcp, "meta l4proto { tcp, udp } th dport 53 accept", "drop"]
    nat = [f"{family.table} saddr @nat_pools {family.table} daddr != @all_pools masquerade"]
    return lines + (chain("forward", forward, "type filter hook forward priority filter; policy accept;")
            + chain("input", workload_to_host, "type filter hook input priority filter; policy accept;")
            + chain("postrouting", nat, "type nat hook postrouting priority srcnat; policy accept;"))


def policy_chain(name: str, direction: str) -> str:
    return set_name(f"pol{direction}", name)


def endpoint_chains(endpoint: Endpoint, direction: str, policies: list[Policy]) -> list[str]:
    """The endpoint's chain (tier, then profiles, then drop) and, with policies, its tier chain."""
    clear = f"meta mark set meta mark & {~(ALLOW_MARK | NEXT_TIER_MARK) & 0xFFFFFFFF:#x}"
    allowed = f"meta mark & {ALLOW_MARK:#x} != 0 return"
    failsafe = [f"jump failsafe_{'in' if direction == 'to' else 'out'}"] if endpoint.on_host else []
    rules, extra = failsafe + [clear], []
    if policies:
        tier = f"tier_{endpoint_chain_name(endpoint, direction)}"
        tier_rules = []
        for policy in policies:
            tier_rules += [f"jump {policy_chain(policy.name, direction)}",
                           f"meta mark & {ALLOW_MARK | NEXT_TIER_MARK:#x} != 0 return"]
        extra = chain(tier, tier_rules + ["drop"])  # no policy of the tier decided
        rules += [f"jump {tier}", allowed]
    for name in endpoint.profiles:
        rules += [f"jump {profile_chain(name, direction)}", allowed]
    return chain(endpoint_chain_name(endpoint, direction), rules + ["drop"]) + extra


def rule_values(rule: dict, kind: str) -> list[str]:
    """The tags (kind "tag") or selectors ("selector") a rule matches on."""
    return [rule[f"{bang}{side}_{kind}"] for bang in ("", "!") for side in ("src", "dst")
            if rule.get(f"{bang}{side}_{kind}")]


VERDICTS = {"allow": f"meta mark set meta mark | {ALLOW_MARK:#x} return", "deny": "drop",
            "next-tier": "return", "log": 'log prefix "calico-packet: "'}
TIER_VERDICTS = {**VERDICTS, "next-tier": f"meta mark set meta mark | {NEXT_TIER_MARK:#x} return"}


def render_rule(rule: dict, in_tier: bool = False, family: Family = IPV4) -> str | None:
    """One Calico rule (datastore form: src_tag, !dst_net, ...) as one nft rule of the family's
    table; None for a rule that can only match the other IP version."""
    action = rule.get("action", "allow")
    if action not in VERDICTS:
        raise PolicyError(f"unknown action {action!r}")
    if not can_match(rule, family.version):
        return None
    matches = protocol_matches(rule, family)
    for side, field_name in (("src", "saddr"), ("dst", "daddr")):
        for negated in (False, True):
            bang, op = ("!", "!= ") if negated else ("", "")
            net = ipaddress.ip_network(rule[f"{bang}{side}_net"]) if rule.get(f"{bang}{side}_net") else None
            if net is not None and net.version == family.version:  # "not a net of the other version" always holds
                matches.append(f"{family.table} {field_name} {op}{net}")
            if rule.get(f"{bang}{side}_tag"):
                matches.append(f"{family.table} {field_name} {op}@{set_name('tag', rule[f'{bang}{side}_tag'])}")
            if rule.get(f"{bang}{side}_selector"):
                matches.append(f"{family.table} {field_name} {op}@{set_name('sel', rule[f'{bang}{side}_selector'])}")
            if rule.get(f"{bang}{side}_ports"):
                port_field = "sport" if side == "src" else "dport"
                matches.append(f"th {port_field} {op}{{ {', '.join(port_ranges(rule[f'{bang}{side}_ports']))} }}")
    return " ".join(matches + [(TIER_VERDICTS if in_tier else VERDICTS)[action]])


def can_match(rule: dict, version: int) -> bool:
    """False for a rule no packet of this IP version can match: ip_version or the ICMP protocol of
    the other version, a net of the other version to match, or ICMP fields with a protocol other
    than this version's ICMP (Calico accepts such rules)."""
    other_icmp, own_icmp = (("icmpv6", 58), ("icmp", 1)) if version == 4 else (("icmp", 1), ("icmpv6", 58))
    if rule.get("ip_version") not in (None, version) or rule.get("protocol") in other_icmp:
        return False
    if any(rule.get(f"{side}_net") and ipaddress.ip_network(rule[f"{side}_net"]).version != version
           for side in ("src", "dst")):
        return False
    uses_icmp = any(rule.get(f"{bang}icmp_{part}") is not None for bang in ("", "!") for part in ("type", "code"))
    return not uses_icmp or rule.get("protocol") in (None, *own_icmp)


def protocol_matches(rule: dict, family: Family = IPV4) -> list[str]:
    matches = []
    for key, op in (("protocol", ""), ("!protocol", "!= ")):
        if rule.get(key) is not None:
            matches.append(f"meta l4proto {op}{protocol_name(rule[key], family)}")
    uses_ports = any(rule.get(f"{bang}{side}_ports") for bang in ("", "!") for side in ("src", "dst"))
    if uses_ports and str(rule.get("protocol")) not in PORT_PROTOCOLS:
        raise PolicyError("ports need protocol tcp, udp, sctp or udplite")
    for part in ("type", "code"):
        for key, op in ((f"icmp_{part}", ""), (f"!icmp_{part}", "!= ")):
            if rule.get(key) is not None:
                matches.append(f"{family.icmp} {part} {op}{int(rule[key])}")
    return matches


def protocol_name(protocol: str | int, family: Family = IPV4) -> str:
    if isinstance(protocol, int) or str(protocol).isdigit():
        return str(int(protocol))
    if protocol not in family.protocols:
        raise PolicyError(f"unknown protocol {protocol!r}")
    return protocol


def port_ranges(ports: list) -> list[str]:
    return [str(p).replace(":", "-") for p in ports]


# Prepended to a rendering, replaces both tables: create-if-missing, delete, define, in one transaction.
REPLACE = "".join(f"table {f.table} {TABLE}\ndelete table {f.table} {TABLE}\n" for f in FAMILIES.values())


def apply(text: str) -> None:
    """Replace the tables in one `nft -f` (Felix's agent goes through ruleset.Tables instead)."""
    done = subprocess.run(["nft", "-f", "-"], input=REPLACE + text, capture_output=True, text=True)
    if done.returncode != 0:
        raise PolicyError(f"nft refused the ruleset: {done.stderr.strip()[-800:]}")


def summary(model: Model, host: str) -> str:
    """One line for the log: what was programmed."""
    local, local_hosts = model.local(host, on_host=False), model.local(host, on_host=True)
    return json.dumps({"endpoints": len(local), "host_endpoints": [e.interface for e in local_hosts],
                       "profiles": sorted({p for e in local + local_hosts for p in e.profiles})})
