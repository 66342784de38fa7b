"""Felix's word to the plugin that a new workload's dataplane is complete, its rhythm, and its
tunnel following the pools (no root: the kernel passes are stood in for; the emulation test is
tests/felix/test_ipip.py's nat-outgoing property)."""

import asyncio
import ipaddress
import threading

import pytest

from calisim.datastore import DEBOUNCE, Mirror, keys
from calisim.datastore.resources import IPPool
from calisim.felix import agent as felix_agent, policy
from calisim.felix.endpoints import WorkloadInterface
from calisim.libnetwork.driver import NetworkDriver, network_profile

POOL = IPPool(ipaddress.ip_network("10.70.0.0/16"), nat_outgoing=True)
ENDPOINT = keys.workload_endpoint("host1", "libnetwork", "libnetwork", "e1")
WORKLOAD = {"state": "active", "name": "cali1", "mac": "ee:ee:ee:ee:ee:ee", "profile_ids": ["net1"],
            "ipv4_nets": ["10.70.14.0/32"], "ipv6_nets": []}


def nft_scripts(monkeypatch) -> list[str]:
    """Stand in for the kernel: what Felix's nft context would run, recorded."""
    scripts: list[str] = []
    monkeypatch.setattr(felix_agent.ruleset.Nft, "run", lambda nft, script: scripts.append(script))
    return scripts


def felix_with(tmp_path, entries: dict) -> felix_agent.Felix:
    mirror = Mirror(None)
    mirror.entries = dict(entries)
    return felix_agent.Felix(None, mirror.view, "host1", tmp_path)


def test_programmed_waits_for_the_workload_pass_and_the_policy_pass_with_nat_outgoing(tmp_path, monkeypatch):
    """Both passes run as in calico-node (their kernel calls recorded instead): the endpoint is
    ready only once its routes are programmed and a table with its chains and its pool's
    masquerade is loaded; the wait wakes the workload pass at once rather than at its next poll."""
    loaded = nft_scripts(monkeypatch)
    felix = felix_with(tmp_path, {ENDPOINT: WORKLOAD, POOL.primary_key: POOL.to_value()})
    routed: list[set] = []

    def program(wanted):
        routed.append(set(wanted))
        felix.workload_dataplane.programmed.update(wanted)
        return set()

    monkeypatch.setattr(felix.workload_dataplane, "apply", program)

    async def scenario():
        assert not felix.ready("cali1")
        tasks = [asyncio.create_task(felix.program_policy()), asyncio.create_task(felix.program_workloads())]
        try:
            assert await felix.programmed("cali1", 10)
        finally:
            for task in tasks:
                task.cancel()
        assert routed and "cali1" in routed[-1]
        assert "iifname vmap @from_workload" in loaded[-1] and '{ "cali1" : jump from_cali1 }' in loaded[-1]
        assert "elements = { 10.70.0.0/16 }" in loaded[-1].split("set nat_pools {")[1].split("}")[0] + "}"
        assert "ip saddr @nat_pools ip daddr != @all_pools masquerade" in loaded[-1]

    asyncio.run(scenario())


def test_a_burst_of_changes_is_one_policy_pass_and_an_endless_one_still_gets_passes(tmp_path, monkeypatch):
    """1000 endpoint changes landing one per turn of the event loop (as a watch delivers them) are
    one batch: one table loaded, with every endpoint; changes that never stop still let a waiting
    Join's pass through (COALESCE_MAX), with no debounce timer in either case."""
    loaded = nft_scripts(monkeypatch)
    # The burst is one batch however slow this machine is: only the endless stream below needs the
    # bound (on a loaded machine 1000 turns of the loop can outlast COALESCE_MAX itself).
    bound = felix_agent.COALESCE_MAX
    monkeypatch.setattr(felix_agent, "COALESCE_MAX", 600.0)
    felix = felix_with(tmp_path, {POOL.primary_key: POOL.to_value()})
    felix.workload_dataplane.programmed["cali1"] = WorkloadInterface("cali1", "ee:ee:ee:ee:ee:ee", ())
    burst = [(ENDPOINT.replace("e1", f"e{n}"), {**WORKLOAD, "name": f"cali{n}", "ipv4_nets": [f"10.70.{n // 250}.{n % 250}/32"]})
             for n in range(1, 1001)]

    async def land(events, forever=False):
        for n, (key, value) in enumerate(events):
            felix.policy._update(key, {**value, "mac": f"ee:ee:ee:ee:ee:{n % 256:02x}"} if forever else value)
            await asyncio.sleep(0)

    async def scenario():
        task = asyncio.create_task(felix.program_policy())
        try:
            await land(burst)
            assert await felix.programmed("cali1", 10)
            assert len(loaded) == 1 and all(f"from_cali{n} " in loaded[0] for n in range(1, 1001))
            felix_agent.COALESCE_MAX = bound
            endless = asyncio.create_task(land(iter(lambda: burst[0], None), forever=True))
            felix.policed = frozenset()
            started = asyncio.get_running_loop().time()
            assert await felix.programmed("cali1", 10)
            assert asyncio.get_running_loop().time() - started < 5 and len(loaded) == 1  # unchanged table: no nft
            endless.cancel()
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_a_delta_runs_on_the_event_loop_and_a_rewrite_or_a_new_context_in_a_worker(tmp_path, monkeypatch):
    """A delta through a kept libnftables context (sub-millisecond) is applied in place, without a
    hand-off to a thread and back; a rewrite, and the first delta after a rest (a new context
    filling its cache) go to a worker.  policy.nft holds each table loaded, shorter or longer."""
    ran: list[tuple[str, bool]] = []

    def run(nft, script):
        nft.open()  # a real context, as a transaction leaves it
        ran.append(("rewrite" if script.startswith(policy.REPLACE) else "delta", threading.current_thread() is threading.main_thread()))

    monkeypatch.setattr(felix_agent.ruleset.Nft, "run", run)
    felix = felix_with(tmp_path, {POOL.primary_key: POOL.to_value()})

    async def next_pass(change):
        progress = felix.progress
        change()
        await asyncio.wait_for(progress.wait(), 10)
        assert (tmp_path / "policy.nft").read_text() == felix.tables.applied

    def add(n):
        return lambda: felix.policy._update(ENDPOINT.replace("e1", f"e{n}"),
                                            {**WORKLOAD, "name": f"cali{n}", "ipv4_nets": [f"10.70.14.{n}/32"]})

    async def scenario():
        task = asyncio.create_task(felix.program_policy())
        try:
            await next_pass(lambda: None)  # the first pass: a rewrite
            await next_pass(add(1))
            felix.tables.rest()
            await next_pass(add(2))
            await next_pass(add(3))
            await next_pass(lambda: felix.policy._update(ENDPOINT.replace("e1", "e2"), None))
            assert "cali2" not in felix.tables.applied and "cali3" in felix.tables.applied
        finally:
            task.cancel()

    asyncio.run(scenario())
    felix.tables.rest()
    assert ran == [("rewrite", False), ("delta", True), ("delta", False), ("delta", True), ("delta", True)]


def test_programmed_is_false_when_a_part_is_missing_at_the_deadline(tmp_path):
    felix = felix_with(tmp_path, {})

    async def scenario():
        felix.workload_dataplane.programmed["cali1"] = WorkloadInterface("cali1", "ee:ee:ee:ee:ee:ee", ())
        waiting = asyncio.create_task(felix.programmed("cali1", 0.3))
        await asyncio.sleep(0)
        assert felix.workloads.changed.is_set()  # the workload pass is woken for the new interface
        felix.passed()  # a pass that did not load its policy chains
        assert not await waiting
        felix.policed = frozenset({"cali1"})
        assert await felix.programmed("cali1", 0)

    asyncio.run(scenario())


@pytest.mark.parametrize("ready", [True, False])
def test_join_waits_for_felix_and_says_so_when_felix_is_late(ready, caplog):
    asked: list[tuple[str, float]] = []

    async def programmed(interface: str, timeout: float) -> bool:
        asked.append((interface, timeout))
        return ready

    asyncio.run(NetworkDriver(None, "host1", programmed).wait_for_dataplane("cali1"))
    assert asked == [("cali1", 10.0)]
    late = [r.getMessage() for r in caplog.records if "had not programmed" in r.getMessage()]
    assert late == ([] if ready else ["Felix had not programmed cali1 within 10s; the container starts anyway"])


def test_the_policy_throttle_lets_a_burst_of_ten_through_at_once_then_ten_a_second():
    async def scenario():
        throttle = felix_agent.Throttle()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(10):
            await throttle.admit()
        burst = loop.time() - started
        for _ in range(5):
            await throttle.admit()
        return burst, loop.time() - started

    burst, total = asyncio.run(scenario())
    assert burst < 0.05 and 0.45 <= total < 2


def test_a_pools_change_programs_the_tunnel_at_once_one_pass_at_a_time(tmp_path, monkeypatch):
    """An IPIP pool landing starts the tunnel's pass at once (no debounce: confd's pass waits for
    its burst to settle); a pass confd asks for meanwhile waits for it: never two at once."""
    felix = felix_with(tmp_path, {})
    ipip_pool = IPPool(ipaddress.ip_network("10.10.0.0/16"), ipip=True)
    passes: list[tuple[float, float]] = []
    overlapping = asyncio.Event()

    async def one_pass():
        if passes and passes[-1][1] == 0.0:
            overlapping.set()
        passes.append((asyncio.get_running_loop().time(), 0.0))
        await asyncio.sleep(0.05)
        passes[-1] = (passes[-1][0], asyncio.get_running_loop().time())

    monkeypatch.setattr(felix, "_program_tunnel", one_pass)

    async def scenario():
        following = asyncio.create_task(felix.follow_pools())
        try:
            landed = asyncio.get_running_loop().time()
            felix.tunnels._update(ipip_pool.primary_key, ipip_pool.to_value())
            await asyncio.sleep(0)  # the pools' pass starts
            await asyncio.wait_for(felix.program_tunnel(), 5)  # confd's, behind it
            assert len(passes) == 2 and not overlapping.is_set()
            assert passes[0][0] - landed < DEBOUNCE and passes[1][0] >= passes[0][1]
        finally:
            following.cancel()

    asyncio.run(scenario())


def test_other_hosts_endpoints_alone_are_passed_twice_a_second_and_our_own_ends_the_wait(tmp_path, monkeypatch):
    """A stream of other hosts' workload endpoints (50 a second) is a few passes, each taking what
    came meanwhile into the address sets; this host's own endpoint, whose Join waits, is programmed
    at once, with the others that were waiting."""
    loaded = nft_scripts(monkeypatch)
    felix = felix_with(tmp_path, {POOL.primary_key: POOL.to_value(), **network_profile("net1").writes()})
    felix.workload_dataplane.programmed["cali1"] = WorkloadInterface("cali1", "ee:ee:ee:ee:ee:ee", ())

    def remote(n):
        return (keys.workload_endpoint("host2", "libnetwork", "libnetwork", f"r{n}"),
                {**WORKLOAD, "name": f"calir{n}", "ipv4_nets": [f"10.70.9.{n}/32"]})

    async def scenario():
        progress = felix.progress
        task = asyncio.create_task(felix.program_policy())
        try:
            await asyncio.wait_for(progress.wait(), 10)  # the first (full) pass
            first, streaming = len(loaded), asyncio.get_running_loop().time()
            for n in range(50):
                felix.policy._update(*remote(n))
                await asyncio.sleep(0.02)
            passes, took = len(loaded) - first, asyncio.get_running_loop().time() - streaming
            assert 1 <= passes <= felix_agent.ELEMENTS_RATE * (1 + took), (passes, took)
            felix.policy._update(*remote(50))
            started = asyncio.get_running_loop().time()
            felix.policy._update(ENDPOINT, WORKLOAD)  # ours: its chains come, and the Join waits for them
            assert await felix.programmed("cali1", 10)
            assert asyncio.get_running_loop().time() - started < 0.3
            assert "10.70.9.50" in loaded[-1] and "add chain ip calico to_cali1" in loaded[-1]
            assert all(f"10.70.9.{n}" in felix.addresses.in_kernel[policy.set_name("tag", "net1")] for n in range(51))
        finally:
            task.cancel()

    asyncio.run(scenario())
