"""Felix's address sets kept between passes (calisim/felix/addresses.py): whatever sequence of
workload endpoints comes, goes or changes on any host, the elements the index applies leave each
set as the whole table rendered from every endpoint has it, and the table it renders is that
table without the sets' elements; another host's endpoint is a few elements, this host's its
chains too.  Then (root, a throwaway namespace) the kernel's table after incremental passes
equals a rewrite's."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calisim.felix import policy, ruleset
from calisim.felix.addresses import AddressSets
from calisim.felix.policy import Endpoint, Model, Policy, Profile

from tests.conftest import in_a_throwaway_netns

HOST = "host1"
PROFILES = {"net0": Profile("net0", ("net0",), ({"action": "allow", "src_tag": "net0"},), ({"action": "allow"},),
                            (("role", "db"),)),
            "net1": Profile("net1", ("net1", "net0"), ({"action": "allow", "src_tag": "net1"},), ()),
            "net2": Profile("net2", ("net2",), ({"action": "allow", "src_selector": "role == 'db'"},), ())}
POLICIES = (Policy("p1", "has(role)", 10.0, ({"action": "deny", "src_selector": "!has(role)"},), ()),)
BASE = Model((), PROFILES, ("10.10.0.0/16",), ("10.10.0.0/16", "fd80::/64"), POLICIES)


def key(host: str, n: int) -> str:
    return f"/calico/v1/host/{host}/workload/libnetwork/libnetwork/endpoint/e{n}"


def endpoint(host: str, n: int, profile: str, ipv6: bool) -> Endpoint:
    addresses = (f"10.10.{n // 200}.{n % 200}", *([f"fd80::{n:x}"] if ipv6 else []))
    return Endpoint(host, f"cali{n:011x}", addresses, (profile,))


changes = st.lists(st.tuples(st.sampled_from([HOST, "host2", "host3"]), st.integers(0, 30),
                             st.sampled_from([None, "net0", "net1", "net2"]), st.booleans()), max_size=40)


def elements(text: str) -> dict[str, set[str]]:
    """Every address set's elements in a rendered text, by table and set."""
    found = {}
    for table, items in ruleset.parse(text).items():
        for name, item in items.items():
            if name.startswith(("tag_", "sel_")):
                found[f"{table} {name}"] = set(item.body) - {""}
    return found


def kernel(sets: AddressSets, tables) -> dict[str, set[str]]:
    """What the sets' commits left in the kernel, by table and set."""
    from calisim.felix.addresses import table_of
    found = {f"{table} {name}": set() for table in tables for name in sets.sets}
    for name, addresses in sets.in_kernel.items():
        for address in addresses:
            found[f"{table_of(address)} {name}"].add(address)
    return found


def without_sets(text: str) -> dict:
    """A rendering's tables without their address sets' elements."""
    return {table: {name: replace(item, body=()) if name.startswith(("tag_", "sel_")) else item
                    for name, item in items.items()} for table, items in ruleset.parse(text).items()}


@settings(max_examples=60, deadline=None)
@given(first=changes, then=changes)
def test_the_kept_sets_equal_the_whole_rendering_after_any_changes(first, then):
    workloads = {key(h, n): endpoint(h, n, p, v6) for h, n, p, v6 in first if p is not None}
    sets = AddressSets(HOST)
    sets.rebuild(replace(BASE, endpoints=tuple(workloads.values())), workloads)
    text = sets.render(True)
    sets.commit(ruleset.parse(text), rewritten=True)
    for host, n, profile, v6 in then:
        changed = endpoint(host, n, profile, v6) if profile is not None else None
        before = workloads.pop(key(host, n), None)
        if changed is not None:
            workloads[key(host, n)] = changed
        restructured = sets.update(key(host, n), changed)
        assert restructured or host != HOST or before is changed is None
        full = policy.render(replace(BASE, endpoints=tuple(workloads[k] for k in sorted(workloads))), HOST)
        previous, text = text, sets.render(True)
        assert without_sets(text) == without_sets(full)
        tables = ruleset.parse(text)
        if restructured:
            sets.commit(tables, rewritten=True)  # as the rewrite of a changed structure would
        else:
            assert text == previous
            script = sets.changes(tables)
            assert all(line.split()[1] == "element" for line in script.splitlines())
            sets.commit(tables, rewritten=False)
        assert kernel(sets, tables) == elements(full)


def test_another_hosts_endpoint_is_its_elements_alone_and_ours_restructures():
    sets = AddressSets(HOST)
    sets.rebuild(BASE, {})
    tables = ruleset.parse(sets.render(True))
    sets.commit(tables, rewritten=True)
    assert not sets.update(key("host2", 1), endpoint("host2", 1, "net1", False))
    script = sets.changes(tables)
    assert {line.split()[4] for line in script.splitlines()} == {policy.set_name("tag", "net0"),
                                                                 policy.set_name("tag", "net1"),
                                                                 policy.set_name("sel", "!has(role)")}
    assert all(line.startswith("add element ip calico ") and line.endswith(" { 10.10.0.1 }")
               for line in script.splitlines())
    sets.commit(tables, rewritten=False)
    assert sets.changes(tables) == ""
    assert not sets.update(key("host2", 1), None)
    assert all(line.startswith("delete element ") for line in sets.changes(tables).splitlines())
    assert sets.update(key(HOST, 2), endpoint(HOST, 2, "net2", False))  # ours: its chains come
    assert "chain to_cali00000000002" in sets.render(True)
    assert sets.update(key("host3", 3), endpoint("host3", 3, "net2", True))  # the first IPv6 address: ip6 calico comes
    assert "table ip6 calico" in sets.render(True)


def test_tables_apply_the_elements_after_the_delta_and_fill_them_after_a_rewrite(monkeypatch):
    scripts: list[str] = []
    monkeypatch.setattr(ruleset.Nft, "run", lambda nft, script: scripts.append(script))
    sets = AddressSets(HOST)
    remote = {key("host2", 1): endpoint("host2", 1, "net0", False)}
    sets.rebuild(replace(BASE, endpoints=tuple(remote.values())), remote)
    tables = ruleset.Tables(policy.REPLACE)
    text = sets.render(True)
    assert tables.apply(text, sets) == "rewrite"
    assert f"\nadd element ip calico {policy.set_name('tag', 'net0')} {{ 10.10.0.1 }}\n" in scripts[-1]
    sets.update(key("host2", 2), endpoint("host2", 2, "net0", False))
    assert tables.apply(text, sets) == "elements"
    assert f"add element ip calico {policy.set_name('tag', 'net0')} {{ 10.10.0.2 }}\n" in scripts[-1]
    assert all(line.startswith("add element") for line in scripts[-1].splitlines())
    assert tables.apply(text, sets) == "unchanged" and len(scripts) == 2
    sets.update(key(HOST, 3), endpoint(HOST, 3, "net0", False))
    assert tables.apply(sets.render(True), sets) == "delta"
    assert scripts[-1].index("add chain ip calico to_cali00000000003") < scripts[-1].index("10.10.0.3")


CHECK = r"""
import subprocess
from dataclasses import replace
from calisim.felix import policy, ruleset
from calisim.felix.addresses import AddressSets
from tests.felix.test_addresses import BASE, HOST, endpoint, key

def listing():
    text = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    return sorted(line.strip() for line in text.splitlines())

workloads = {key(h, n): endpoint(h, n, "net%d" % (n % 3), n % 4 == 0) for h, first in ((HOST, 0), ("host2", 100))
             for n in range(first, first + 20)}
sets, tables = AddressSets(HOST), ruleset.Tables(policy.REPLACE)
sets.rebuild(replace(BASE, endpoints=tuple(workloads.values())), workloads)
hows = [tables.apply(sets.render(True), sets)]
for host, n, profile in (("host2", 130, "net1"), ("host2", 103, None), (HOST, 31, "net2"), (HOST, 4, None),
                         ("host2", 105, "net2")):
    changed = endpoint(host, n, profile, False) if profile else None
    sets.update(key(host, n), changed)
    workloads.pop(key(host, n), None)
    if changed:
        workloads[key(host, n)] = changed
    hows.append(tables.apply(sets.render(True), sets))
incremental = listing()
tables.nft.run(policy.REPLACE + policy.render(replace(BASE, endpoints=tuple(workloads[k] for k in sorted(workloads))), HOST))
assert incremental == listing(), "the incremental passes' tables differ from the rewrite's"
print(" ".join(hows))
"""


@pytest.mark.emulation
def test_incremental_passes_leave_the_rewrites_tables_in_the_kernel():
    assert in_a_throwaway_netns(CHECK).split() == ["rewrite", "elements", "elements", "delta", "delta", "elements"]
