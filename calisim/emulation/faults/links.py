"""Faults of links: down and up, loss, corruption, duplication, delay and rate.  Impairments are
tc programs on the links' ends: the kernel's netem where it exists (probed once); otherwise the
eBPF impair program (bpf.py) drops, corrupts and duplicates packets, and delay is refused, since
only netem can hold packets back.  Rates are TBF qdiscs."""

from __future__ import annotations

import re

from . import servers
from .base import NETEM_MISSING, FaultError, Impairment, netem_available
from .bpf import BpfImpairments

RATE = re.compile(r"^(\d+(?:\.\d+)?)([kmgt]i?)?(bit|bps)$", re.IGNORECASE)
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|sec|secs|ms|msec|msecs|us|usec|usecs)?$", re.IGNORECASE)
MILLISECONDS = {"s": 1000.0, "sec": 1000.0, "secs": 1000.0, "ms": 1.0, "msec": 1.0, "msecs": 1.0,
                "us": 0.001, "usec": 0.001, "usecs": 0.001}


def parse_percent(value: float | str, what: str) -> float:
    """A percentage, bare (5) or as tc writes it (5%)."""
    try:
        percent = float(str(value).strip().removesuffix("%"))
    except (TypeError, ValueError):
        raise FaultError(f"{what} must be a percentage between 0 and 100, not {value!r}") from None
    if not 0 <= percent <= 100:
        raise FaultError(f"{what} must be a percentage between 0 and 100, not {value!r}")
    return percent


def parse_milliseconds(value: float | str, what: str) -> float:
    """A duration in milliseconds: bare (50) or in tc's units (50ms, 1s, 500us)."""
    match = DURATION.match(str(value).strip())
    if not match:
        raise FaultError(f"{what} must be milliseconds (50) or a duration in tc's units (50ms, 1s, 500us), "
                         f"not {value!r}")
    return float(match.group(1)) * MILLISECONDS[(match.group(2) or "ms").lower()]


def parse_rate(value: str) -> str:
    """A rate in tc's units (bit, kbit, mbit, gbit, tbit, kibit...; bps, kbps, ... are bytes per second)."""
    match = RATE.match(str(value).strip())
    if not match or float(match.group(1)) <= 0:
        raise FaultError(f"malformed rate {value!r}: use a positive number with bit, kbit, mbit, gbit, bps, kbps, "
                         f"mbps or gbps (e.g. 10mbit)")
    return f"{match.group(1)}{(match.group(2) or '').lower()}{match.group(3).lower()}"


class LinkFaults(BpfImpairments):
    """Links taken down or impaired, by the names of the nodes at their ends."""

    def link(self, a: str, b: str, state: str) -> None:
        """Take every link between a and b down or up on both ends (Mininet's `link a b down`).
        What the kernel drops with the link and nothing would put back is put back when it comes up:
        the IPv6 addresses (Linux removes them on a link's down; a cable pulled on a real router does
        not), the boot and static routes, and the underlay's permanent ARP entries."""
        if state not in ("down", "up"):
            raise FaultError(f"link state must be down or up, not {state!r}")
        links = self._links_between(a, b)
        key = self._link_key(a, b)
        if state == "down":
            saved = self.down_links.get(key) or {}
            for link in links:
                for intf in (link.intf1, link.intf2):
                    saved.setdefault(intf.name, self._put_back(intf))
                    servers.in_node(intf.node, "ip", "link", "set", "dev", intf.name, "down")
            self.down_links[key] = saved
        else:
            saved = self.down_links.pop(key, {})
            for link in links:
                for intf in (link.intf1, link.intf2):
                    servers.in_node(intf.node, "ip", "link", "set", "dev", intf.name, "up")
                for intf in (link.intf1, link.intf2):
                    for command in saved.get(intf.name, []):  # `ip` arguments: addresses, routes, neighbours
                        servers.in_node(intf.node, "ip", *command.split(), check=False)
        self._record(f"link {a} {b} {state}")

    @staticmethod
    def _put_back(intf) -> list[str]:
        """The `ip` commands that restore what a link down drops from intf, addresses first."""
        return (LinkFaults._ipv6_addresses(intf) + LinkFaults._static_routes(intf)
                + LinkFaults._permanent_neighbours(intf))

    @staticmethod
    def _static_routes(intf) -> list[str]:
        """The routes through intf that nothing would put back, as `ip` arguments: boot (Mininet's
        and the topology's IPv6 default routes) and static ones, of both IP versions."""
        routes = []
        for family in ("-4", "-6"):
            for proto in ("boot", "static"):
                shown = servers.in_node(intf.node, "ip", family, "route", "show", "dev", intf.name, "proto", proto,
                               check=False)
                routes += [f"{family} route replace {line.strip()} proto {proto} dev {intf.name}"
                           for line in shown.stdout.splitlines() if line.strip()]
        return routes

    @staticmethod
    def _permanent_neighbours(intf) -> list[str]:
        """The permanent ARP entries the cluster pinned on intf: the kernel flushes even those with
        the link, and relearning them may fail while the machine-wide ARP table is full (see
        calisim.emulation.topology.pin_segment_neighbours)."""
        shown = servers.in_node(intf.node, "ip", "-4", "neigh", "show", "dev", intf.name, "nud", "permanent",
                                check=False)
        return [f"-4 neigh replace {line.split()[0]} lladdr {line.split()[2]} dev {intf.name} nud permanent"
                for line in shown.stdout.splitlines() if "lladdr" in line.split()[1:2]]

    @staticmethod
    def _ipv6_addresses(intf) -> list[str]:
        """intf's configured global IPv6 addresses, as `ip` arguments that add them again."""
        shown = servers.in_node(intf.node, "ip", "-6", "-o", "addr", "show", "dev", intf.name, "scope", "global",
                       "permanent", check=False)
        addresses = [line.split()[line.split().index("inet6") + 1] for line in shown.stdout.splitlines()
                     if "inet6" in line.split()]
        return [f"-6 addr replace {address} dev {intf.name} nodad" for address in addresses]

    def loss(self, a: str, b: str, percent: float | str) -> None:
        self._impair(a, b, loss=parse_percent(percent, "loss"))

    def corrupt(self, a: str, b: str, percent: float | str) -> None:
        self._impair(a, b, corrupt=parse_percent(percent, "corruption"))

    def duplicate(self, a: str, b: str, percent: float | str) -> None:
        self._impair(a, b, duplicate=parse_percent(percent, "duplication"))

    def delay(self, a: str, b: str, ms: float | str, jitter_ms: float | str = 0) -> None:
        """Only netem holds packets back: refused, with one line, on a kernel without it."""
        ms, jitter_ms = parse_milliseconds(ms, "delay"), parse_milliseconds(jitter_ms, "jitter")
        self._links_between(a, b)
        if not netem_available():
            raise FaultError(NETEM_MISSING)
        self._impair(a, b, delay_ms=ms, jitter_ms=jitter_ms)

    def rate(self, a: str, b: str, rate: str) -> None:
        self._impair(a, b, rate=parse_rate(rate))

    def clear(self, a: str, b: str) -> None:
        """Every impairment of the link a-b gone (links taken down stay down: `link a b up`)."""
        links = self._links_between(a, b)
        self.links.pop(self._link_key(a, b), None)
        for link in links:
            self._apply_link(link)
        self._record(f"clear {a} {b}")

    def _impair(self, a: str, b: str, **changes) -> None:
        links = self._links_between(a, b)
        key = self._link_key(a, b)
        impairment = self.links.setdefault(key, Impairment())
        for name, value in changes.items():
            setattr(impairment, name, value)
        for link in links:
            self._apply_link(link)
        described = " ".join(f"{k}={v}" for k, v in changes.items())
        self._record(f"impair {a} {b} {described}")

    def _apply_link(self, link) -> None:
        impairment = self.links.get(self._link_key(link.intf1.node.name, link.intf2.node.name), Impairment())
        if netem_available():
            for intf in (link.intf1, link.intf2):
                self._apply_netem(intf, impairment)
        else:
            for intf in (link.intf1, link.intf2):
                self._apply_tbf(intf, impairment.rate)
        self._apply_bpf(self._impaired_end(link))

    @staticmethod
    def _apply_netem(intf, how: Impairment) -> None:
        servers.in_node(intf.node, "tc", "qdisc", "del", "dev", intf.name, "root", check=False)
        if not how.any():
            return
        argv = ["tc", "qdisc", "add", "dev", intf.name, "root", "netem", "limit", "10000"]
        if how.delay_ms:
            argv += ["delay", f"{how.delay_ms}ms"] + ([f"{how.jitter_ms}ms"] if how.jitter_ms else [])
        for option, percent in (("loss", how.loss), ("corrupt", how.corrupt), ("duplicate", how.duplicate)):
            if percent:
                argv += [option, f"{percent}%"]
        if how.rate:
            argv += ["rate", how.rate]
        servers.in_node(intf.node, *argv)

    @staticmethod
    def _apply_tbf(intf, rate: str | None) -> None:
        servers.in_node(intf.node, "tc", "qdisc", "del", "dev", intf.name, "root", check=False)
        if rate:
            servers.in_node(intf.node, "tc", "qdisc", "add", "dev", intf.name, "root", "tbf", "rate", rate,
                   "burst", "64kb", "latency", "100ms")
