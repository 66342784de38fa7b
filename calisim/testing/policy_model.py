"""The reference for policy: which (source, destination, protocol) may talk, decided straight
from Calico's rules with no kernel involved.  It shares calisim.felix.policy's Model (endpoints,
profiles, policies, label inheritance) and the selector trees, not the nft renderer, so a
live cluster's measured reachability can be compared with it.

Probes are ICMP echo (type 8, code 0; over IPv6 ICMPv6 echo, type 128), TCP to port 80 and UDP
to port 69 (the `workload` image's echo servers), over IPv4 or IPv6 (a packet's version picks the
endpoints' addresses of that version); source ports are ephemeral, so rules on source ports are
out of scope.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..felix.policy import Endpoint, Model, tag_members
from ..probes import ECHO_TCP_PORT, ECHO_UDP_PORT

PORTS = {"icmp": None, "tcp": ECHO_TCP_PORT, "udp": ECHO_UDP_PORT}
ICMP_ECHO = {4: (8, 0), 6: (128, 0)}
ICMP_PROTOCOLS = {4: ("icmp", 1), 6: ("icmpv6", 58)}


@dataclass(frozen=True)
class Packet:
    source: Endpoint
    destination: Endpoint
    protocol: str  # icmp (ICMPv6 in an IPv6 packet), tcp, udp
    version: int = 4

    @property
    def addresses(self) -> tuple[str, str]:
        return tuple(next(a for a in end.addresses if ipaddress.ip_address(a).version == self.version)
                     for end in (self.source, self.destination))

    @property
    def protocol_names(self) -> tuple[str, int]:
        if self.protocol == "icmp":
            return ICMP_PROTOCOLS[self.version]
        return self.protocol, {"tcp": 6, "udp": 17}[self.protocol]


def allowed(model: Model, packet: Packet) -> bool:
    """The source's egress and the destination's ingress must both allow the packet."""
    return (decide(model, packet, packet.source, "outbound") == "allow"
            and decide(model, packet, packet.destination, "inbound") == "allow")


def decide(model: Model, packet: Packet, endpoint: Endpoint, direction: str) -> str:
    """allow or deny for one end: the tier of selector policies, then the profiles, then drop."""
    policies = model.policies_for(endpoint)
    if policies:
        verdict = tier_verdict(model, packet, [getattr(p, direction) for p in policies])
        if verdict != "next-tier":
            return verdict
    for name in endpoint.profiles:
        profile = model.profiles.get(name)
        verdict = first_verdict(model, packet, getattr(profile, direction) if profile else ())
        if verdict in ("allow", "deny"):
            return verdict
    return "deny"


def tier_verdict(model: Model, packet: Packet, rule_lists: list[tuple[dict, ...]]) -> str:
    for rules in rule_lists:
        verdict = first_verdict(model, packet, rules)
        if verdict is not None:
            return verdict
    return "deny"  # policies applied and none decided


def first_verdict(model: Model, packet: Packet, rules: tuple[dict, ...]) -> str | None:
    """The action of the first matching rule that decides (log only logs); None if none does."""
    for rule in rules:
        if matches(model, rule, packet) and rule.get("action", "allow") != "log":
            return rule.get("action", "allow")
    return None


def matches(model: Model, rule: dict, packet: Packet) -> bool:
    if rule.get("ip_version") not in (None, packet.version):
        return False
    for key, negated in (("protocol", False), ("!protocol", True)):
        if key in rule and (rule[key] in packet.protocol_names) == negated:
            return False
    echo_type, echo_code = ICMP_ECHO[packet.version]
    for key, value, negated in (("icmp_type", echo_type, False), ("icmp_code", echo_code, False),
                                ("!icmp_type", echo_type, True), ("!icmp_code", echo_code, True)):
        if key in rule and (packet.protocol != "icmp" or (rule[key] == value) == negated):
            return False
    members = tag_members(model)
    for side, address in zip(("src", "dst"), packet.addresses):
        for bang in ("", "!"):
            wanted = not bang
            if f"{bang}{side}_net" in rule:
                ip, net = ipaddress.ip_address(address), ipaddress.ip_network(rule[f"{bang}{side}_net"])
                inside = ip.version == net.version and ip in net
                if inside != wanted:
                    return False
            if f"{bang}{side}_tag" in rule and (address in members.get(rule[f"{bang}{side}_tag"], set())) != wanted:
                return False
            if f"{bang}{side}_selector" in rule:
                selected = {a for e in model.selected(rule[f"{bang}{side}_selector"]) for a in e.addresses}
                if (address in selected) != wanted:
                    return False
        if f"{side}_ports" in rule or f"!{side}_ports" in rule:
            if side == "src":
                raise ValueError("the model does not know ephemeral source ports")
            if not port_matches(rule, PORTS[packet.protocol]):
                return False
    return True


def port_matches(rule: dict, port: int | None) -> bool:
    def inside(ports: list) -> bool:
        for entry in ports:
            low, _, high = str(entry).partition(":")
            if port is not None and int(low) <= port <= int(high or low):
                return True
        return False

    if "dst_ports" in rule and not inside(rule["dst_ports"]):
        return False
    return not ("!dst_ports" in rule and inside(rule["!dst_ports"]))


def explain(model: Model, packet: Packet) -> str:
    """The rules the model applied, for a failure message."""
    lines = []
    for end, direction in ((packet.source, "outbound"), (packet.destination, "inbound")):
        lines.append(f"{end.interface} ({direction}): {decide(model, packet, end, direction)}; "
                     f"policies {[p.name for p in model.policies_for(end)]}, profiles "
                     + "; ".join(f"{n}: {list(getattr(model.profiles[n], direction)) if n in model.profiles else []}"
                                 for n in end.profiles))
    return "\n".join(lines)
