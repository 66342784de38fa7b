"""Every host's endpoints as Felix's policy part keeps them between passes, and the address sets
(tags' and selectors' members) they fill, as Calico's Felix keeps its ipsets: an endpoint of
another host that comes, goes or changes is its addresses added to or deleted from the sets it
belongs to, a few nft elements, without loading, rendering, parsing and comparing the whole
table.  That whole pass cost every Felix every endpoint's work for each new workload of any
host: with 10,000 workloads over 100 hosts, a hundred passes over 10,000 endpoints per workload.

A full pass (at start, on any change but a workload endpoint's, on the timer's rewrite) rebuilds
the index from every endpoint (``rebuild``); between full passes each workload endpoint's key
that changed is applied alone (``update``).  The rendered table (``render``) declares the
address sets without elements; ruleset.Tables applies ``changes`` after its delta, or
``fill`` after a rewrite, and ``commit`` once the kernel holds them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable

from ..datastore import selector
from . import policy
from .policy import Endpoint, Model

Membership = Callable[[Endpoint], bool]  # whether an endpoint's addresses belong in a set


def address_sets(model: Model) -> dict[str, Membership]:
    """Policy's address sets by their nft names: one for each tag a rule matches on (the endpoints,
    of any host, that have a profile carrying it), one for each selector (those whose labels it matches)."""
    rules = policy.all_rules(model)
    sets: dict[str, Membership] = {}
    for tag in sorted({tag for rule in rules for tag in policy.rule_values(rule, "tag")}):
        sets[policy.set_name("tag", tag)] = lambda endpoint, tag=tag: any(
            tag in model.profiles.get(name, policy.NO_PROFILE).tags for name in endpoint.profiles)
    for text in sorted({text for rule in rules for text in policy.rule_values(rule, "selector")}):
        sets[policy.set_name("sel", text)] = lambda endpoint, tree=selector.parse(text): tree.matches(
            model.labels(endpoint))
    return sets


def table_of(address: str) -> str:
    """The nft table an address's sets live in."""
    return f"{policy.FAMILIES[policy.ip_version(address)].table} {policy.TABLE}"


class AddressSets:
    """One host's index of every endpoint and what policy's address sets should hold, against what
    the kernel holds."""

    def __init__(self, host: str):
        self.host = host
        self.structure: Model | None = None  # the last full pass's model, without its workload endpoints
        self.workloads: dict[str, Endpoint] = {}  # every host's active workload endpoints, by key
        self.local: dict[str, Endpoint] = {}  # this host's, by key
        self.sets: dict[str, Membership] = {}  # the address sets the table declares
        self.wanted: dict[str, Counter] = {}  # set -> address -> endpoints that put it there
        self.in_kernel: dict[str, set[str]] = {}  # set -> its elements, as the last commit left them
        self.touched: set[tuple[str, str]] | None = None  # (set, address) changed since the last commit; None: any
        self.pending: list[tuple[str, str, bool]] = []  # what ``changes`` returned: (set, address, added)
        self.ipv6_holders = 0  # endpoints (any host's) with an IPv6 address

    @property
    def has_ipv6(self) -> bool:
        return self.ipv6_holders > 0

    def rebuild(self, model: Model, workloads: dict[str, Endpoint]) -> None:
        """From a full pass's model (every endpoint) and its workload endpoints by key."""
        self.sets = address_sets(model)
        self.workloads = dict(workloads)
        self.local = {key: endpoint for key, endpoint in workloads.items() if endpoint.host == self.host}
        self.structure = replace(model, endpoints=tuple(e for e in model.endpoints if e.on_host))
        self.wanted, self.ipv6_holders, self.touched = {name: Counter() for name in self.sets}, 0, None
        for endpoint in model.endpoints:
            self.count(endpoint, 1)

    def update(self, key: str, endpoint: Endpoint | None) -> bool:
        """A workload endpoint's key changed (endpoint None: gone or inactive); True when the
        table's structure may change: this host's endpoint, or the first or last IPv6 address."""
        before = self.workloads.pop(key, None)
        had_ipv6 = self.has_ipv6
        if before is not None:
            self.count(before, -1)
        if endpoint is not None:
            self.workloads[key] = endpoint
            self.count(endpoint, 1)
        ours = any(e is not None and e.host == self.host for e in (before, endpoint))
        if ours:
            self.local.pop(key, None)
            if endpoint is not None:
                self.local[key] = endpoint
        return ours or had_ipv6 != self.has_ipv6

    def count(self, endpoint: Endpoint, step: int) -> None:
        """An endpoint's addresses into (step 1) or out of (-1) the sets it belongs to."""
        if any(policy.ip_version(address) == 6 for address in endpoint.addresses):
            self.ipv6_holders += step
        for name, member in self.sets.items():
            if not member(endpoint):
                continue
            counts = self.wanted[name]
            for address in endpoint.addresses:
                counts[address] += step
                if counts[address] <= 0:
                    del counts[address]
                if self.touched is not None:
                    self.touched.add((name, address))

    def model(self) -> Model:
        """What the table is rendered from: the full pass's model with this host's workload
        endpoints as they are now (the other hosts' are in the sets alone)."""
        local = (endpoint for _, endpoint in sorted(self.local.items()))  # key order, as policy.load's
        return replace(self.structure, endpoints=(*local, *self.structure.endpoints))

    def render(self, ipv6_support: bool) -> str:
        """This host's tables (policy.render), their address sets declared empty."""
        return policy.render(self.model(), self.host, ipv6_support, self.has_ipv6)

    def changes(self, tables: Iterable[str]) -> str:
        """nft commands that make the kernel's sets in tables (those the table declares) what they
        should be, from what the last commit left."""
        tables = set(tables)
        candidates = (self.touched if self.touched is not None else
                      {(name, address) for name in self.sets
                       for address in (*self.wanted[name], *self.in_kernel.get(name, ()))})
        self.pending = []
        for name, address in candidates:
            if name in self.sets and table_of(address) in tables:
                wanted = address in self.wanted[name]
                if wanted != (address in self.in_kernel.get(name, ())):
                    self.pending.append((name, address, wanted))
        grouped: dict[tuple[str, str, bool], list[str]] = {}
        for name, address, added in sorted(self.pending):
            grouped.setdefault((table_of(address), name, added), []).append(address)
        return "".join(f"{'add' if added else 'delete'} element {table} {name} {{ {', '.join(addresses)} }}\n"
                       for (table, name, added), addresses in grouped.items())

    def fill(self, tables: Iterable[str]) -> str:
        """nft commands that put every element into the empty sets of a table just loaded."""
        tables = set(tables)
        lines = []
        for name in self.sets:
            for table in sorted(tables):
                elements = sorted(a for a in self.wanted[name] if table_of(a) == table)
                if elements:
                    lines.append(f"add element {table} {name} {{ {', '.join(elements)} }}\n")
        return "".join(lines)

    def commit(self, tables: Iterable[str], rewritten: bool) -> None:
        """The kernel now holds what ``changes`` (or, rewritten, ``fill``) gave."""
        if rewritten:
            tables = set(tables)
            self.in_kernel = {name: {a for a in self.wanted[name] if table_of(a) in tables} for name in self.sets}
        else:
            self.in_kernel = {name: self.in_kernel.get(name, set()) for name in self.sets}
            for name, address, added in self.pending:
                (self.in_kernel[name].add if added else self.in_kernel[name].discard)(address)
        self.pending, self.touched = [], set()
