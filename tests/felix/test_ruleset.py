"""Felix's tables applied incrementally: the delta between two renderings is only what changed (an
endpoint added is its elements and its own chains, never the forward chain or another endpoint's),
in the order nft needs, a structural change asks for a rewrite, and (root, a throwaway namespace)
the table a chain of deltas leaves is the one a rewrite loads (also across a rest, which frees
libnftables' context and cache), a refused delta falls back to the rewrite, and the timer's resync
rewrites; the memory a transaction frees is kept for the next one until the context rests."""

import subprocess
import sys
from dataclasses import replace

import pytest

from calisim.felix import policy, ruleset
from calisim.felix.policy import Endpoint, Model, Profile

from tests.conftest import in_a_throwaway_netns

NETS = {f"net{n}": Profile(f"net{n}", (f"net{n}",), ({"action": "allow", "src_tag": f"net{n}"},), ({"action": "allow"},))
        for n in range(3)}


def endpoint(n: int, host: str = "host1") -> Endpoint:
    return Endpoint(host, f"cali{n:011x}", (f"10.10.{n // 250}.{n % 250 + 1}",), (f"net{n % 3}",))


def rendered(count: int, *extra: Endpoint) -> dict:
    model = Model(tuple(endpoint(n) for n in range(count)) + extra, NETS, ("10.10.0.0/16",), ("10.10.0.0/16",))
    return ruleset.parse(policy.render(model, "host1"))


def test_parse_reads_back_every_set_map_and_chain_of_a_rendering():
    tables = rendered(2)
    table = tables["ip calico"]
    assert list(tables) == ["ip calico"]
    assert table["workloads"] == ruleset.Item("set", ("type ifname",), ('"cali00000000000"', '"cali00000000001"'))
    assert table["all_pools"].head == ("type ipv4_addr", "flags interval")
    assert table["forward"].head == ("type filter hook forward priority filter; policy accept;",)
    assert table["forward"].body[2] == "iifname vmap @from_workload"
    assert table["from_workload"].body[1] == '"cali00000000001" : jump from_cali00000000001'


def test_one_endpoint_added_is_its_elements_and_its_own_chains_only():
    new = endpoint(100)
    script = ruleset.delta(rendered(100), rendered(100, new))
    lines = script.splitlines()
    assert lines[:2] == [f"add chain ip calico to_{new.interface}", f"add chain ip calico from_{new.interface}"]
    assert f"add element ip calico {policy.set_name('tag', 'net1')} {{ 10.10.0.101 }}" in lines
    assert f'add element ip calico workloads {{ "{new.interface}" }}' in lines
    assert f'add element ip calico to_workload {{ "{new.interface}" : jump to_{new.interface} }}' in lines
    chains = {line.split()[4] for line in lines if line.startswith(("add chain", "flush chain", "add rule"))}
    assert chains == {f"to_{new.interface}", f"from_{new.interface}"}
    assert len(lines) < 20 and "delete" not in script


def test_one_endpoint_removed_deletes_references_before_what_they_refer_to():
    gone = endpoint(7)
    lines = ruleset.delta(rendered(7, gone), rendered(7)).splitlines()
    element = lines.index(f'delete element ip calico from_workload {{ "{gone.interface}" : jump from_{gone.interface} }}')
    assert element < lines.index(f"delete chain ip calico from_{gone.interface}")
    assert lines.index(f"flush chain ip calico to_{gone.interface}") < lines.index(f"delete chain ip calico to_{gone.interface}")
    assert not any(line.startswith("add") for line in lines)


def test_nothing_changed_is_an_empty_delta_and_structure_asks_for_a_rewrite():
    assert ruleset.delta(rendered(3), rendered(3)) == ""
    dual = rendered(3, Endpoint("host1", "cali6", ("fd80::1",), ("net0",)))
    assert ruleset.delta(rendered(3), dual) is None  # a table comes: only a rewrite makes it
    host_endpoint = Endpoint("host1", "eth0", ("192.168.0.1",), ("net0",), on_host=True)
    model = Model((endpoint(0), host_endpoint), NETS, (), ("10.10.0.0/16",), (), ("192.168.0.1",))
    with_hook = ruleset.parse(policy.render(replace(model, endpoints=(endpoint(0), host_endpoint)), "host1"))
    without_ip6 = {"ip calico": with_hook["ip calico"]}
    assert ruleset.delta(rendered(1), without_ip6) is None  # the output hook's chain comes


def test_a_resting_context_is_freed_once_and_made_again_by_the_next_use():
    nft = ruleset.Nft()
    assert nft.context is None  # none until a transaction needs one
    made = nft.open()
    assert made and nft.open() == made  # kept while in use
    nft.close()
    assert nft.context is None
    nft.close()  # nothing left to free
    assert nft.open() and nft.context is not None
    nft.close()


FAULTS = r"""
import ctypes, resource
from calisim.felix import ruleset
libc = ctypes.CDLL(None)
libc.calloc.restype, libc.calloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def faults():  # pages faulted in when a transaction's cache (16 tables of 8192 list heads) is freed and made again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tables = [libc.calloc(8192, 16) for _ in range(16)]
    for table in tables:
        ctypes.memset(table, 1, 8192 * 16)
    for table in reversed(tables):
        libc.free(table)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = [faults() for _ in range(5)][-1]
ruleset.keep_freed_memory()
kept = [faults() for _ in range(5)][-1]
nft = ruleset.Nft()
nft.open()
nft.close()  # what rest does: the context goes, and the free memory with it
print(default, kept, faults())
"""


def test_freed_memory_is_kept_for_the_next_transaction_and_handed_back_at_rest():
    done = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    default, kept, rested = map(int, done.stdout.split())
    assert default > 256 and kept < 20 and rested > 256, (default, kept, rested)  # of 512 pages a round


CHECK = r"""
import subprocess, sys
from calisim.felix import policy, ruleset
from tests.felix.test_ruleset import NETS, endpoint, Model

def text(ns):
    return policy.render(Model(tuple(endpoint(n) for n in ns), NETS, ("10.10.0.0/16",), ("10.10.0.0/16",)), "host1")

def listing():  # the kernel's table as its objects (sets, maps, chains), whatever order they were made in
    text = subprocess.run(["nft", "list", "table", "ip", "calico"], capture_output=True, text=True, check=True).stdout
    return sorted(block.strip() for block in text.split("\n", 1)[1].rsplit("}", 1)[0].split("\n\n"))

tables = ruleset.Tables(policy.REPLACE)
hows = [tables.apply(text(range(50)))]
tables.rest()  # a resync found nothing to apply: the context and its cache go, the next delta makes one
assert tables.nft.context is None
hows += [tables.apply(text([*range(50), 60])), tables.apply(text([*range(1, 50), 60]))]
by_delta = listing()
tables.nft.run(policy.REPLACE + text([*range(1, 50), 60]))
assert by_delta == listing(), "a delta's table differs from the rewrite's"
subprocess.run(["nft", "delete", "element", "ip", "calico", "workloads", '{ "cali0000000003c" }'], check=True)
hows.append(tables.apply(text(range(1, 50))))  # its delta deletes what is no longer there: refused
assert listing() == (tables.nft.run(policy.REPLACE + text(range(1, 50))) or listing())
tables.rewritten_at -= tables.FULL_RESYNC
hows += [tables.apply(text(range(1, 50))), tables.apply(text(range(1, 50)))]
print(" ".join(hows))
"""


@pytest.mark.emulation
def test_deltas_leave_the_rewrites_table_and_fall_back_to_it_when_refused():
    assert in_a_throwaway_netns(CHECK).split() == ["rewrite", "delta", "delta", "rewrite", "rewrite", "unchanged"]
