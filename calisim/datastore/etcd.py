"""The datastore: a real etcd, holding Calico v1's key layout (values are JSON) on the v3 API.

``EtcdServer`` says how to start etcd inside an emulated host; ``Datastore`` is the one client
implementation (asyncio, over aetcd; its watches over etcd's JSON gateway, datastore.gateway)
and ``Synchronous`` gives it a blocking face for short-lived callers such as calicoctl.  Every
multi-key change goes through one ``Txn`` so that writers racing on other hosts either win whole
or retry.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import json
import logging
import os
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit

# Read by gRPC when it is first imported, and every calisim process imports it here.  No process
# forks a child that uses a parent's gRPC state (calico-node's agents open their own clients), and
# with fork support on, every fork of a process holding a client (the controller's Mininet popens,
# dockerd's containers) runs gRPC's fork handlers, or logs "Other threads are currently calling
# into gRPC, skipping fork() handlers" into the child's output.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# gRPC's EventEngine client wakes its pool's threads each call: ~0.1 ms of CPU a request beside
# the loop's ~0.2; its older poller does not (README, IPAM benchmark).
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")

import aetcd  # noqa: E402
import aetcd.exceptions  # noqa: E402
from aetcd import transactions as ops  # noqa: E402

from ..process.daemon import Daemon  # noqa: E402
from . import gateway  # noqa: E402
from .health import healthy  # noqa: E402

CLIENT_PORT = 2379
RPC_TIMEOUT = 10  # seconds; a dead etcd must fail a call, not hang it
DEBOUNCE = 0.2  # seconds to gather a burst of etcd changes into one pass of an agent
SETTLE_MAX = 1.0  # while changes keep coming (hosts joining), a pass waits for quiet at most this long
RESYNC = 5.0  # seconds between an agent's passes without any change, so a failed pass heals itself
RECONNECT_GRACE = 3.0  # seconds a refused request is tried again (see Datastore._call)
# gRPC backs a channel's reconnects off up to 120 s after refusals; an etcd back after an outage
# would then go unanswered for seconds to minutes.  Calico v1's etcd client opened a connection a
# request, so the next request after a restart was answered: reconnect at least every 250 ms.
# A channel of its own per client (not gRPC's process-wide pool of connections by target): a
# client that closes its channel after a request timed out (see Datastore._call) then really
# connects anew, instead of being handed the same connection to a frozen member again.
RECONNECT_BACKOFF = {"grpc.initial_reconnect_backoff_ms": 100, "grpc.min_reconnect_backoff_ms": 100,
                     "grpc.max_reconnect_backoff_ms": 250, "grpc.use_local_subchannel_pool": 1}
UNAVAILABLE = "client: etcd cluster is unavailable or misconfigured"  # Calico's (etcd client's) words
# What a member answers a request that was waiting on a leader that is gone (lost, cut off) once
# another is elected: etcd's own client retries such a request, and so does Datastore._call, once.
LEADER_CHANGED = "etcdserver: leader changed"
# What a member answers a request whose deadline passed while it waited for a quorum (a majority
# of members down): gRPC's UNKNOWN code, which aetcd leaves a plain ClientError.
DEADLINE_EXCEEDED = "context deadline exceeded"
log = logging.getLogger("calico-node")


class DatastoreError(RuntimeError):
    """etcd could not be reached or refused the request."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: Any
    revision: int  # etcd mod_revision: the compare-and-swap token


@dataclass(frozen=True)
class Event:
    key: str
    value: Any  # None when the key was deleted
    revision: int


@dataclass
class Txn:
    """A compare-then-write transaction, built up before being committed in one request."""

    compares: list = field(default_factory=list)
    writes: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)  # the writes made instead when a compare fails

    def require_absent(self, key: str) -> "Txn":
        self.compares.append(ops.Version(key.encode()) == 0)
        return self

    def require_present(self, key: str) -> "Txn":
        self.compares.append(ops.Version(key.encode()) > 0)
        return self

    def require_revision(self, key: str, revision: int) -> "Txn":
        """The key is unchanged since it was read at ``revision`` (0: it is still absent)."""
        self.compares.append(ops.Mod(key.encode()) == revision)
        return self

    def require_unchanged_since(self, prefix: str, revision: int) -> "Txn":
        """No key under prefix was created or modified after revision (a deletion is not seen)."""
        self.compares.append(ops.Mod(prefix.encode(), range_end=_prefix_end(prefix)) < revision + 1)
        return self

    def put(self, key: str, value: Any) -> "Txn":
        self.writes.append(ops.Put(key.encode(), encode(value)))
        return self

    def put_otherwise(self, key: str, value: Any) -> "Txn":
        """Write key only if a compare fails (commit still answers False then)."""
        self.otherwise.append(ops.Put(key.encode(), encode(value)))
        return self

    def delete(self, key: str) -> "Txn":
        self.writes.append(ops.Delete(key.encode()))
        return self

    def delete_prefix(self, prefix: str) -> "Txn":
        self.writes.append(ops.Delete(prefix.encode(), range_end=_prefix_end(prefix)))
        return self


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


_DECODER = json.JSONDecoder()


def decode(raw: bytes) -> Any:
    """A stored value back (etcd's values are UTF-8 JSON: json.loads would first sniff the
    encoding of each; at a few hundred hosts every node decodes every host's keys)."""
    return _DECODER.decode(raw.decode()) if raw else None


def _prefix_end(prefix: str) -> bytes:
    return aetcd.utils.prefix_range_end(prefix.encode())


def parse_endpoint(endpoints: str) -> tuple[str, int]:
    """ETCD_ENDPOINTS (``http://ip:port[,...]`` or ``unix:///path/name:port[,...]``) -> aetcd host, port.

    Several endpoints become one gRPC target listing every address (``ipv4:a:p,b:p`` or
    ``unix:/a:p,/b:p``; aetcd appends the last port): gRPC's pick_first connects to the first
    member that answers and, when that connection fails (a member killed), to the next, as
    Calico's etcd client tries each endpoint of ETCD_ENDPOINTS in turn."""
    addresses = endpoint_addresses(endpoints)
    if not addresses:
        raise DatastoreError(f"bad etcd endpoints {endpoints!r}: expected http://host:port[,...]")
    if len(addresses) == 1:
        return addresses[0]
    kinds = {host.startswith("unix:") for host, _ in addresses}
    if len(kinds) > 1:
        raise DatastoreError(f"bad etcd endpoints {endpoints!r}: all unix sockets or all http, not both")
    if kinds == {True}:
        listed = ",".join(f"{host[len('unix:'):]}:{port}" for host, port in addresses)
        return f"unix:{listed.rpartition(':')[0]}", addresses[-1][1]
    for host, _ in addresses:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise DatastoreError(f"bad etcd endpoint {host!r}: several endpoints must be IPv4 addresses") from None
    listed = ",".join(f"{host}:{port}" for host, port in addresses)
    return f"ipv4:{listed.rpartition(':')[0]}", addresses[-1][1]


def endpoint_addresses(endpoints: str) -> list[tuple[str, int]]:
    """ETCD_ENDPOINTS -> each endpoint's aetcd host and port, in order."""
    return [_address(endpoint.strip()) for endpoint in endpoints.split(",") if endpoint.strip()]


def _address(endpoint: str) -> tuple[str, int]:
    """One endpoint -> aetcd host, port."""
    if endpoint.startswith("unix://"):
        path, _, port = endpoint[len("unix://"):].rpartition(":")
        if not path or not port.isdigit():
            raise DatastoreError(f"bad unix etcd endpoint {endpoint!r}: expected unix:///path/name:port")
        return f"unix:{path}", int(port)
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if parts.scheme != "http" or not parts.hostname:
        raise DatastoreError(f"bad etcd endpoint {endpoint!r}: expected http://host:port")
    return parts.hostname, parts.port or CLIENT_PORT


def _timed_out(error: aetcd.exceptions.ClientError) -> bool:
    """Whether a request went unanswered in time: the client's deadline, or the member's own
    while it waited for a quorum; both are an unavailable cluster to Calico's etcd client."""
    return isinstance(error, aetcd.exceptions.ConnectionTimeoutError) or DEADLINE_EXCEEDED in str(error)


class Datastore:
    """Calico's keys in etcd, JSON-valued, with revisions for compare-and-swap."""

    def __init__(self, endpoints: str):
        self.endpoints = endpoints
        host, port = parse_endpoint(endpoints)
        self._client = aetcd.Client(host=host, port=port, timeout=RPC_TIMEOUT, options=RECONNECT_BACKOFF)
        self._watches: set[gateway.Watch] = set()

    @classmethod
    def from_env(cls) -> "Datastore":
        endpoints = os.environ.get("ETCD_ENDPOINTS") or os.environ.get("ETCD_AUTHORITY")
        if not endpoints:
            raise DatastoreError("ETCD_ENDPOINTS is not set (e.g. ETCD_ENDPOINTS=http://192.168.3.229:2379)")
        return cls(endpoints)

    async def _call(self, method: Callable, *args: Any, retry: bool = True, **kwargs: Any):
        """One etcd request.  A refused connection is tried again for RECONNECT_GRACE seconds, as
        etcd's own client waits for its connection (gRPC's wait-for-ready) instead of failing fast:
        an etcd that has just restarted is answered, while gRPC's channel is still backing off from
        the refusals it met while etcd was down (and once more after a cluster elected a new
        leader while the request waited on the old one).  Not for transactions (retry=False): one refused
        mid-flight may have been applied, and its compares would then fail the second time.
        A request that times out closes the channel: a member frozen or cut off keeps its TCP
        connection open and would be sent every later request too; the next one connects anew,
        to the first member that completes gRPC's handshake (a cluster's other members)."""
        give_up = time.monotonic() + (RECONNECT_GRACE if retry else 0)
        elected = False
        while True:
            try:
                return await method(*args, **kwargs)
            except aetcd.exceptions.ConnectionFailedError as error:
                if retry and not elected and LEADER_CHANGED in str(error):
                    elected, give_up = True, time.monotonic() + RECONNECT_GRACE  # a new leader answers now
                if time.monotonic() < give_up:
                    await asyncio.sleep(0.25)
                    continue
                raise DatastoreError(f"{UNAVAILABLE}; error #0: {self.endpoints}: {error}") from error
            except aetcd.exceptions.ClientError as error:
                if not _timed_out(error):
                    raise DatastoreError(f"etcd at {self.endpoints}: {type(error).__name__}: {error}") from error
                await self.close()
                raise DatastoreError(f"{UNAVAILABLE}; error #0: {self.endpoints}: {error}") from error

    async def get(self, key: str) -> Entry | None:
        kv = await self._call(self._client.get, key.encode())
        return None if kv is None else Entry(key, decode(kv.value), kv.mod_revision)

    async def value(self, key: str, default: Any = None) -> Any:
        entry = await self.get(key)
        return default if entry is None else entry.value

    async def list(self, prefix: str) -> list[Entry]:
        result = await self._call(self._client.get_prefix, prefix.encode(), sort_order="ascend")
        return [Entry(kv.key.decode(), decode(kv.value), kv.mod_revision) for kv in result]

    async def list_at(self, prefix: str) -> tuple[list[Entry], int]:
        """The entries under prefix and the etcd revision they were read at."""
        result = await self._call(self._client.get_prefix, prefix.encode(), sort_order="ascend")
        return [Entry(kv.key.decode(), decode(kv.value), kv.mod_revision) for kv in result], result.header.revision

    async def keys(self, prefix: str) -> set[str]:
        """The keys under prefix, without their values (which blocks exist, say, without reading them)."""
        result = await self._call(self._client.get_prefix, prefix.encode(), keys_only=True)
        return {kv.key.decode() for kv in result}

    async def read_at(self, keys: list[str], prefixes: list[str]) -> tuple[list[Entry], int]:
        """The entries at these keys and under these prefixes, read in one request at one revision
        (a transaction without compares), and that revision (0 when nothing was found: a compare
        that nothing changed since then holds only while nothing is there)."""
        reads = [ops.Get(key.encode()) for key in keys]
        reads += [ops.Get(prefix.encode(), range_end=_prefix_end(prefix)) for prefix in prefixes]
        _, responses = await self._call(self._client.transaction, compare=[], success=reads, failure=[])
        found = [(value, got) for response in responses for value, got in response]
        revision = found[0][1].header.revision if found else 0
        return [Entry(got.key.decode(), decode(value), got.mod_revision) for value, got in found], revision

    async def put(self, key: str, value: Any) -> None:
        await self._call(self._client.put, key.encode(), encode(value))

    async def create(self, key: str, value: Any) -> bool:
        """Store value only if the key does not exist yet; True if it was stored."""
        return await self.commit(Txn().require_absent(key).put(key, value))

    async def delete_prefix(self, prefix: str) -> None:
        await self._call(self._client.delete_prefix, prefix.encode())

    async def commit(self, txn: Txn) -> bool:
        """Apply every write if every compare holds; False (nothing written) otherwise."""
        return await self.commit_revision(txn) is not None

    async def commit_revision(self, txn: Txn) -> int | None:
        """commit, returning the revision the writes were stored at (None if a compare failed)."""
        succeeded, responses = await self._call(
            self._client.transaction, compare=txn.compares, success=txn.writes, failure=txn.otherwise, retry=False)
        if not succeeded:
            return None
        for response in responses:
            for kind in ("response_put", "response_delete_range"):
                if response.HasField(kind):
                    return getattr(response, kind).header.revision
        return 0

    async def watch(self, prefix: str, start_revision: int | None = None) -> AsyncIterator[Event]:
        """Events under prefix (from start_revision on, if given: none lost after a list_at), over
        etcd's JSON gateway (datastore.gateway says why not gRPC); raises DatastoreError when
        the watch dies (etcd restarted, that revision compacted, a request timed out: its member
        may be frozen, and the watch is ended with the channel)."""
        watch = gateway.Watch(endpoint_addresses(self.endpoints), prefix.encode(), _prefix_end(prefix), start_revision)
        self._watches.add(watch)
        try:
            async for key, raw, revision in watch:
                yield Event(key, None if raw is None else decode(raw), revision)
        except gateway.GatewayError as error:
            raise DatastoreError(f"watch on etcd at {self.endpoints} failed: {error}") from error
        finally:
            self._watches.discard(watch)
            watch.close()

    async def leader(self) -> str | None:
        """The name of the member leading the cluster, as the member answering sees it (None: no leader)."""
        status = await self._call(self._client.status)
        return status.leader.name if status.leader is not None else None

    async def close(self) -> None:
        """The channel closed and every watch ended (the next request or watch connects anew)."""
        for watch in list(self._watches):
            watch.close()
        await self._client.close()


class Synchronous:
    """A blocking face for an asyncio object: every coroutine method runs on a private loop."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop | None = None):
        self.target = target
        self._owns_loop = loop is None
        self._loop = loop or asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attribute(*args, **kwargs))

        return blocking

    def run(self, coroutine_function: Callable, *args: Any) -> Any:
        """Run an async function that takes the target as its first argument."""
        return self._loop.run_until_complete(coroutine_function(self.target, *args))

    def wrap(self, other: Any) -> "Synchronous":
        """A blocking face for another asyncio object on this one's loop (e.g. IPAM over this datastore)."""
        return Synchronous(other, self._loop)

    def close(self) -> None:
        if self._owns_loop and not self._loop.is_closed():
            self._loop.run_until_complete(self.target.close())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())  # as asyncio.run: aetcd's status
            self._loop.close()                                                 # leaves its members() open

    def __enter__(self) -> "Synchronous":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def next_pass(changed: asyncio.Event, quiet: Callable[[], float] = lambda: DEBOUNCE,
                    settle_max: float = SETTLE_MAX) -> bool:
    """An agent's rhythm: wait for a change (or RESYNC seconds: Calico's agents resync), let a
    burst settle (quiet() seconds without a change, DEBOUNCE unless the agent says otherwise once
    the change came; at most settle_max: a hundred hosts joining one after another are a few
    passes, not a hundred), go.  True for a resync (no change came)."""
    try:
        await asyncio.wait_for(changed.wait(), timeout=RESYNC)
    except asyncio.TimeoutError:
        return True
    give_up = asyncio.get_running_loop().time() + settle_max
    silence = quiet()
    while True:
        changed.clear()
        await asyncio.sleep(silence)
        if not changed.is_set() or asyncio.get_running_loop().time() >= give_up:
            break
    changed.clear()
    return False


PEER_PORT = 2380
# A member of a cluster runs etcd's default timers: a follower calls an election after 1-2 s
# without its leader's heartbeat (the pause a leader's loss costs), and a member slowed by a
# busy machine does not trigger elections for nothing.
CLUSTER_TIMERS = ("--heartbeat-interval", "100", "--election-timeout", "1000")
# The lone member elects itself after a random 1-10 heartbeats (raft's randomised election
# timeout, less the 9 ticks etcd fast-forwards); at etcd's 100 ms that was up to 0.9 s of every
# start.  With no peers, the timers decide nothing else.
SINGLE_TIMERS = ("--heartbeat-interval", "25", "--election-timeout", "250")


@dataclass(frozen=True)
class EtcdServer(Daemon):
    """How calisim runs etcd: one member inside an emulated host, plus a unix socket for the
    controller.  Alone (``initial_cluster`` empty) it is the member "calisim" with its peer URL
    on loopback; in a cluster, member ``member`` with its peer URL on its node's address and
    ``initial_cluster`` naming every member (``name=http://ip:2380,...``, etcd's flag)."""

    listen_ip: str
    directory: Path  # holds the unix socket and the log (and the data, unless given elsewhere)
    member: str = "calisim"
    initial_cluster: str = ""
    data: Path | None = None  # the data directory (default: directory/data)
    name = "etcd"
    start_timeout = 20.0

    @property
    def socket_name(self) -> str:
        return f"etcd.sock:{CLIENT_PORT}"  # etcd names the socket file NAME:PORT in its working directory

    @property
    def unix_endpoint(self) -> str:
        return f"unix://{self.directory / self.socket_name}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.listen_ip}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.listen_ip if self.initial_cluster else '127.0.0.1'}:{PEER_PORT}"

    @property
    def log(self) -> Path:
        return self.directory / "etcd.log"

    @property
    def data_dir(self) -> Path:
        return self.data or self.directory / "data"

    def command(self) -> list[str]:
        peer = self.peer_url
        return [
            "etcd", "--name", self.member, "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"{self.endpoint},unix://{self.socket_name}",
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster or f"{self.member}={peer}", "--initial-cluster-state", "new",
            *(CLUSTER_TIMERS if self.initial_cluster else SINGLE_TIMERS),
            "--log-outputs", "stderr",
        ]

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / self.socket_name).unlink(missing_ok=True)  # left by a killed etcd

    def restore(self, snapshot: Path) -> None:
        """Its data directory made anew from an etcd snapshot (`etcdctl snapshot restore`, which
        checks the snapshot's hash), as this member with its peer URL: started next, it serves
        the snapshot's keys.  DatastoreError with etcdctl's words if it refuses."""
        data = self.data_dir
        if data.exists():
            raise DatastoreError(f"{data} exists: a snapshot is restored only into a new member")
        self.directory.mkdir(parents=True, exist_ok=True)
        peer = self.peer_url
        done = subprocess.run(["etcdctl", "snapshot", "restore", str(snapshot), "--name", self.member,
                               "--data-dir", str(data), "--initial-advertise-peer-urls", peer,
                               "--initial-cluster", self.initial_cluster or f"{self.member}={peer}"],
                              env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True, text=True)
        if done.returncode != 0:
            raise DatastoreError(f"etcdctl snapshot restore: {(done.stderr or done.stdout).strip()}")

    def start(self, popen=subprocess.Popen, **options) -> subprocess.Popen:
        """In its directory: the unix socket's path is relative to it."""
        return super().start(popen, cwd=str(self.directory), **options)

    def ready(self) -> bool:
        """Its unix socket answers etcd's /health with true (calisim.datastore.health says why not a read)."""
        return healthy(self.directory / self.socket_name)


@contextmanager
def local_etcd(directory: Path) -> Iterator[str]:
    """A real etcd for tests and benchmarks (run it inside calisim's sandbox: it also listens on
    127.0.0.1 there); yields the unix endpoint and stops etcd on the way out."""
    server = EtcdServer("127.0.0.1", directory)
    process = server.start()
    try:
        server.wait_ready(process)
        yield server.unix_endpoint
    finally:
        server.stop(process)
