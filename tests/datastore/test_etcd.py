"""calico-node's mirror of etcd (datastore.Mirror): one list at a revision, one watch from the
next, every event applied in order, views of prefixes for the agents, a full reload after a lost
watch; and the agents' skip of a pass whose keys are unchanged since their last good one.  No
root: a stand-in datastore serves the list and the watch; one emulation test uses a real etcd.
And the etcd client after an outage: a restarted etcd is answered at once, not when gRPC's
reconnect backoff (grown through the outage to seconds) next lets the channel try.  A new
client in the same process shares that backoff (gRPC pools connections by target), so without
the client's backoff options even etcd's own readiness probe waits it out."""

import asyncio
import re
import time

import pytest

from calisim.datastore import Datastore, DatastoreError, Mirror, Synchronous, Txn, keys, local_etcd
from calisim.datastore.etcd import Entry, Event, parse_endpoint
from calisim.felix import agent as felix_agent
from calisim.node import confd as confd_module
from calisim.node.confd import Confd
from calisim.node.paths import NodePaths


class FakeEtcd:
    """list_at and watch as etcd answers them: revisions, events after a start revision, a
    watch that can be broken (as when etcd restarts)."""

    def __init__(self):
        self.data: dict[str, tuple[object, int]] = {}
        self.revision = 1
        self.history: list[Event] = []
        self.watchers: list[asyncio.Queue] = []
        self.lists = 0

    def put(self, key, value):
        self.revision += 1
        self.data[key] = (value, self.revision)
        self._emit(Event(key, value, self.revision))

    def delete(self, key):
        self.revision += 1
        del self.data[key]
        self._emit(Event(key, None, self.revision))

    def _emit(self, event):
        self.history.append(event)
        for queue in self.watchers:
            queue.put_nowait(event)

    def break_watches(self):
        for queue in self.watchers:
            queue.put_nowait(DatastoreError("watch on etcd failed: etcd restarted"))
        self.watchers = []

    async def list_at(self, prefix):
        self.lists += 1
        entries = [Entry(k, v, r) for k, (v, r) in sorted(self.data.items()) if k.startswith(prefix)]
        return entries, self.revision

    async def watch(self, prefix, start_revision=None):
        queue: asyncio.Queue = asyncio.Queue()
        for event in self.history:
            if event.revision >= (start_revision or self.revision + 1) and event.key.startswith(prefix):
                queue.put_nowait(event)
        self.watchers.append(queue)
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield item


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def loaded(entries):
    """A stand-in etcd holding entries, and a loaded mirror of it with one view of /calico/."""
    store = FakeEtcd()
    for key, value in entries.items():
        store.put(key, value)
    mirror = Mirror(store)
    view = mirror.view(["/calico/"])
    await mirror.load()
    return store, mirror, view



def wakes_view(mirror, view, key, value) -> bool:
    """Whether one event on key wakes view's agent (and bumps its version by exactly one)."""
    view.changed.clear()
    version = view.version
    mirror.apply(Event(key, value, mirror.revision + 1))
    return view.changed.is_set() and view.version == version + 1

def test_events_are_applied_in_order_and_views_see_only_their_prefixes():
    async def scenario():
        store = FakeEtcd()
        store.put("/calico/a/1", {"n": 1})
        store.put("/calico/b/1", "x")
        mirror = Mirror(store)
        a, b = mirror.view(["/calico/a/"]), mirror.view(["/calico/b/"])
        await mirror.load()
        assert a.read() == {"/calico/a/1": {"n": 1}} and b.read() == {"/calico/b/1": "x"}
        a.changed.clear(), b.changed.clear()
        follower = asyncio.create_task(mirror.follow())
        try:
            store.put("/calico/a/2", {"n": 2})
            store.put("/calico/a/1", {"n": 3})
            store.delete("/calico/a/2")
            await until(lambda: mirror.revision == store.revision)
            assert a.read() == {"/calico/a/1": {"n": 3}}
            assert a.changed.is_set() and not b.changed.is_set()
            assert mirror.entries == {"/calico/a/1": {"n": 3}, "/calico/b/1": "x"}
        finally:
            follower.cancel()

    asyncio.run(scenario())


def test_a_change_between_the_list_and_the_watch_is_not_lost():
    async def scenario():
        store, mirror, view = await loaded({})
        store.put("/calico/late", 1)  # after the list, before the watch starts
        follower = asyncio.create_task(mirror.follow())
        try:
            await until(lambda: view.read() == {"/calico/late": 1})
        finally:
            follower.cancel()

    asyncio.run(scenario())


def test_a_put_that_changes_nothing_changes_no_view():
    async def scenario():
        store, mirror, view = await loaded({"/calico/a": {"same": True}})
        version = view.version
        view.changed.clear()
        mirror.apply(Event("/calico/a", {"same": True}, store.revision + 1))
        mirror.apply(Event("/calico/gone", None, store.revision + 2))  # a delete of nothing
        assert view.version == version and not view.changed.is_set()
        mirror.apply(Event("/calico/a", {"same": False}, store.revision + 3))
        assert view.version == version + 1 and view.changed.is_set()
        assert mirror.revision == store.revision + 3

    asyncio.run(scenario())


def test_a_lost_watch_reloads_the_copy_and_catches_what_it_missed():
    async def scenario():
        store, mirror, view = await loaded({"/calico/kept": 1, "/calico/dropped": 2})
        follower = asyncio.create_task(mirror.follow())
        try:
            await until(lambda: store.watchers)
            store.break_watches()
            # while no watch runs: changes a new watch from the old revision would not replay
            store.history.clear()
            store.put("/calico/new", 3)
            store.delete("/calico/dropped")
            view.changed.clear()
            await until(lambda: view.read() == {"/calico/kept": 1, "/calico/new": 3})
            assert store.lists == 2 and view.changed.is_set()
            store.put("/calico/after", 4)  # and it follows on from the reload
            await until(lambda: "/calico/after" in view.read())
        finally:
            follower.cancel()

    asyncio.run(scenario())


def test_a_reload_that_finds_the_same_keys_keeps_the_version_but_still_wakes_the_agents():
    async def scenario():
        store, mirror, view = await loaded({"/calico/a": 1})
        version = view.version
        view.changed.clear()
        await mirror.load()
        assert view.version == version and view.changed.is_set()

    asyncio.run(scenario())


def test_confd_renders_only_when_its_keys_changed_or_its_last_pass_failed(tmp_path, monkeypatch):
    """A resync (no change for RESYNC seconds) with the same keys renders nothing; a failed pass
    (bird -p refusing) is rendered again on the next one, changed keys or not."""
    monkeypatch.setattr(confd_module, "next_pass", fake_next_pass)
    rendered = []
    refuse = [True]

    def render(entries):
        rendered.append(dict(entries))
        if refuse[0]:
            raise confd_module.bird.BirdError("bird -p rejected it")
        return f"# {sorted(entries)}\n"

    monkeypatch.setattr(confd_module.bird.config, "check", lambda path: None)

    async def scenario():
        store = FakeEtcd()
        store.put("/calico/bgp/x", 1)
        mirror = Mirror(store)
        confd = Confd(mirror.view(["/calico/bgp/"]), NodePaths(tmp_path / "run", tmp_path / "log"), render)
        confd.paths.run_dir.mkdir()
        confd.control.configure = lambda: "Reconfigured"
        await mirror.load()
        task = asyncio.create_task(confd.reconcile())
        try:
            await passes(2)  # refused, then tried again though nothing changed
            assert len(rendered) == 2 and confd.rendered is None
            refuse[0] = False
            await passes(1)
            assert len(rendered) == 3 and confd.rendered == confd.view.version
            await passes(3)  # resyncs with the same keys
            assert len(rendered) == 3
            mirror.apply(Event("/calico/bgp/y", 2, store.revision + 1))
            await passes(1)
            assert len(rendered) == 4 and rendered[-1] == {"/calico/bgp/x": 1, "/calico/bgp/y": 2}
            assert confd.paths.bird_config.read_text() == "# ['/calico/bgp/x', '/calico/bgp/y']\n"
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_policy_is_recomputed_only_when_its_keys_changed_or_its_last_pass_failed(tmp_path, monkeypatch):
    """A failed pass is tried again; a resync with the same keys loads nothing; a workload endpoint
    goes into the address sets alone (no full load), anything else (a profile) loads every key again."""
    monkeypatch.setattr(felix_agent, "next_batch", lambda view: fake_next_pass(view.changed))
    monkeypatch.setattr(felix_agent.ruleset.Nft, "run", lambda nft, script: None)
    loads = []
    fail = [True]
    real_load = felix_agent.policy.Loader.load

    def load(loader, entries):
        loads.append(entries)
        if fail[0]:
            raise felix_agent.policy.PolicyError("bad profile")
        return real_load(loader, entries)


    async def scenario():
        store = FakeEtcd()
        mirror = Mirror(store)
        await mirror.load()
        paths = NodePaths(tmp_path / "run", tmp_path / "log")
        paths.run_dir.mkdir()
        felix = felix_agent.Felix(None, mirror.view, "host1", paths.run_dir)
        monkeypatch.setattr(felix_agent.policy.Loader, "load", load)
        task = asyncio.create_task(felix.program_policy())
        try:
            await passes(2)
            assert len(loads) == 2  # the failed pass is tried again
            fail[0] = False
            await passes(3)
            assert len(loads) == 3 and felix.tables.applied is not None
            mirror.apply(Event(ENDPOINT, {"name": "cali1", "ipv4_nets": ["192.168.0.1/32"]}, store.revision + 1))
            await passes(1)
            assert len(loads) == 3 and ENDPOINT in felix.addresses.workloads
            assert felix.policy_computed == felix.policy.version
            mirror.apply(Event(keys.PROFILES + "p1/rules", {"inbound_rules": [], "outbound_rules": []},
                               store.revision + 2))
            await passes(1)
            assert len(loads) == 4 and ENDPOINT in loads[-1]
        finally:
            task.cancel()

    asyncio.run(scenario())


ENDPOINT = "/calico/v1/host/host2/workload/docker/w1/endpoint/e1"


def test_policy_wakes_for_what_its_table_reads_and_other_hosts_addresses_only_with_host_endpoints(tmp_path):
    """Another host's tunnel address or bird_ip changes no table of a host without host
    endpoints (hosts joining wake no policy pass); an endpoint anywhere, a profile, a Failsafe
    setting do; with a host endpoint of its own, the host's table names every host's address."""
    async def scenario():
        mirror = Mirror(FakeEtcd())
        paths = NodePaths(tmp_path / "run", tmp_path / "log")
        felix = felix_agent.Felix(None, mirror.view, "host1", paths)
        view = felix.policy

        def wakes(key, value="x"):
            return wakes_view(mirror, view, key, value)

        assert not wakes("/calico/v1/host/host2/bird_ip", "172.16.0.2")
        assert not wakes("/calico/v1/host/host2/config/IpInIpTunnelAddr", "192.168.1.0")
        assert view.entries["/calico/v1/host/host2/bird_ip"] == "172.16.0.2"  # kept for the next pass
        assert wakes(ENDPOINT, {"name": "cali1"})
        assert wakes("/calico/v1/host/host2/endpoint/eth0", {"name": "eth0"})
        assert wakes("/calico/v1/host/host2/config/FailsafeInboundHostPorts", "22")
        assert wakes("/calico/v1/policy/profile/p/rules", {})
        felix.policy_names_host_addresses = True  # what a pass sets when host1 has a host endpoint
        assert wakes("/calico/v1/host/host3/bird_ip", "172.16.0.3")

    asyncio.run(scenario())


def test_policy_names_host_addresses_only_for_a_host_with_host_endpoints():
    model = felix_agent.policy.Model((felix_agent.policy.Endpoint("host2", "eth0", (), (), on_host=True),
                                      felix_agent.policy.Endpoint("host1", "cali1", (), ())))
    assert not felix_agent.policy.names_host_addresses(model, "host1")
    assert felix_agent.policy.names_host_addresses(model, "host2")


def test_without_the_mesh_another_node_joining_wakes_no_confd_and_with_it_every_node_does(tmp_path):
    async def scenario():
        mirror = Mirror(FakeEtcd())
        view = Confd.for_node(mirror.view, "host1", NodePaths(tmp_path / "run", tmp_path / "log")).view

        def wakes(key, value="x"):
            return wakes_view(mirror, view, key, value)

        assert wakes("/calico/bgp/v1/host/host2/ip_addr_v4", "172.16.0.2")  # no node_mesh key: the mesh is on
        assert wakes("/calico/bgp/v1/global/node_mesh", {"enabled": False})
        assert not wakes("/calico/bgp/v1/host/host3/ip_addr_v4", "172.16.0.3")
        assert wakes("/calico/bgp/v1/host/host1/ip_addr_v4", "172.16.0.1")
        assert wakes("/calico/bgp/v1/global/peer_v4/172.16.1.1", {"ip": "172.16.1.1", "as_num": 64512})
        assert wakes("/calico/bgp/v1/global/node_mesh", {"enabled": True})
        assert wakes("/calico/bgp/v1/host/host3/ip_addr_v4", "172.16.0.33")

    asyncio.run(scenario())


def test_without_a_vxlan_pool_other_hosts_wake_no_vxlan_pass(tmp_path):
    async def scenario():
        mirror = Mirror(FakeEtcd())
        felix = felix_agent.Felix(None, mirror.view, "host1", tmp_path / "run")
        view = felix.vxlan

        def wakes(key, value="x"):
            return wakes_view(mirror, view, key, value)

        assert not wakes("/calico/v1/host/host2/bird_ip", "172.16.0.2")
        assert wakes("/calico/v1/host/host1/bird_ip", "172.16.0.1")
        assert wakes("/calico/v1/ipam/v4/pool/10.0.0.0-16", {"cidr": "10.0.0.0/16", "vxlan": True})
        felix.vxlan_active = True  # what the pass a VXLAN pool woke sets
        assert wakes("/calico/v1/host/host2/config/VXLANTunnelMACAddr", "02:00:00:00:00:02")

    asyncio.run(scenario())


PASSES: list[asyncio.Future] = []


async def fake_next_pass(changed, *_rhythm):
    """The agents' rhythm with the clock taken out: each pass waits for the test to allow it."""
    gate = asyncio.get_running_loop().create_future()
    PASSES.append(gate)
    await gate
    changed.clear()
    return True


async def passes(count):
    """Let the agent make count passes; return once it waits for the next."""
    for _ in range(count):
        await until(lambda: PASSES and not PASSES[-1].done())
        PASSES[-1].set_result(None)
    await until(lambda: not PASSES[-1].done())


@pytest.fixture(autouse=True)
def no_gates_left():
    PASSES.clear()


@pytest.mark.emulation
def test_a_real_etcd_watch_from_the_listed_revision_misses_nothing(etcd):
    async def scenario():
        ds = Datastore(etcd)
        try:
            await ds.put("/calico/one", 1)
            mirror = Mirror(ds)
            view = mirror.view(["/calico/"])
            await mirror.load()
            await ds.commit(Txn().put("/calico/two", 2).put("/calico/three", 3).delete("/calico/one"))
            follower = asyncio.create_task(mirror.follow())
            try:
                await until(lambda: view.read() == {"/calico/two": 2, "/calico/three": 3})
                await ds.put("/calico/one", 4)
                await until(lambda: view.read().get("/calico/one") == 4)
            finally:
                follower.cancel()
        finally:
            await ds.close()

    asyncio.run(scenario())


@pytest.mark.emulation
def test_read_at_reads_keys_and_prefixes_at_one_revision_and_keys_lists_names_only(etcd):
    async def scenario():
        ds = Datastore(etcd)
        try:
            await ds.commit(Txn().put("/calico/a/1", 1).put("/calico/a/2", 2).put("/calico/b", "b").put("/calico/c", 3))
            entries, revision = await ds.read_at(["/calico/b", "/calico/missing"], ["/calico/a/"])
            assert {e.key: e.value for e in entries} == {"/calico/b": "b", "/calico/a/1": 1, "/calico/a/2": 2}
            assert revision == (await ds.list_at("/calico/"))[1] == entries[0].revision
            assert await ds.read_at(["/calico/missing"], ["/calico/none/"]) == ([], 0)
            assert await ds.keys("/calico/a/") == {"/calico/a/1", "/calico/a/2"}
        finally:
            await ds.close()

    asyncio.run(scenario())


OUTAGE = 10.0  # seconds of refused requests: gRPC's default backoff has grown to ~4-6 s by then
ANSWERED_WITHIN = 2.5  # seconds from etcd's start to the old client's answer (~0.5 s here; ~5 s with gRPC's defaults)


@pytest.mark.emulation
def test_a_restarted_etcd_answers_the_first_request_after_an_outage(tmp_path):
    directory = tmp_path / "etcd"
    with local_etcd(directory) as endpoint:
        client = Synchronous(Datastore(endpoint))
        client.put("/calico/v1/config/Probe", "before")
    try:
        down = time.monotonic()
        while time.monotonic() - down < OUTAGE:
            with pytest.raises(DatastoreError, match="etcd cluster is unavailable"):
                client.get("/calico/v1/config/Probe")
        starting = time.monotonic()
        with local_etcd(directory):
            assert client.value("/calico/v1/config/Probe") == "before"
            answered = time.monotonic() - starting
        assert answered < ANSWERED_WITHIN, f"answered {answered:.1f} s after etcd was started"
    finally:
        client.close()


@pytest.mark.parametrize("endpoints, target", [
    ("http://192.168.3.229:2379", ("192.168.3.229", 2379)),  # one endpoint: as ever
    ("unix:///run/etcd/etcd.sock:2379", ("unix:/run/etcd/etcd.sock", 2379)),
    ("http://10.0.0.1:2379,http://10.0.0.2:2379, http://10.0.0.3:2379",
     ("ipv4:10.0.0.1:2379,10.0.0.2:2379,10.0.0.3", 2379)),
    ("unix:///a/etcd.sock:2379,unix:///b/etcd.sock:2379", ("unix:/a/etcd.sock:2379,/b/etcd.sock", 2379)),
])
def test_every_endpoint_is_one_grpc_target_that_fails_over(endpoints, target):
    assert parse_endpoint(endpoints) == target


@pytest.mark.parametrize("endpoints, says", [
    ("http://10.0.0.1:2379,unix:///a/etcd.sock:2379", "all unix sockets or all http, not both"),
    ("http://etcd1:2379,http://etcd2:2379", "several endpoints must be IPv4 addresses"),
    ("https://10.0.0.1:2379", "expected http://host:port"),
    (",", "expected http://host:port[,...]"),
])
def test_bad_endpoint_lists_are_refused_in_one_line(endpoints, says):
    with pytest.raises(DatastoreError, match=re.escape(says)):
        parse_endpoint(endpoints)
