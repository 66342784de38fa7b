"""confd's job in calico/node (and calico/routereflector): keep BIRD's config equal to what etcd says.

Watches nothing itself: it reads etcd's keys from its view of the process's mirror of etcd
(datastore.Mirror), which is kept current by one watch.  After each burst of changes to those
keys, and every RESYNC seconds, it renders the config (calisim.node.bird's model and template),
writes it only if ``bird -p`` accepts it, and reloads BIRD through its control socket; a resync
whose keys are unchanged since the last good pass has nothing to render.  It also runs BIRD (the
daemon of calisim.node.bird) as a child and restarts it when it dies, as runit does in Calico's
container.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Awaitable, Callable

from ..datastore import DatastoreError, View, keys, next_pass
from ..ipam import ConflictError, IPAMError
from ..process import pids
from ..process.daemon import DaemonError
from . import bird
from .paths import NodePaths

log = logging.getLogger("calico-node")
BIRD_STOP_TIMEOUT = 5.0
KERNEL_PROTOCOL = "kernel1"  # BIRD's name for the template's unnamed `protocol kernel`
# The rhythm of confd's passes while hosts join (a cluster's bring-up).  Each pass renders every
# peer, runs `bird -p` and has BIRD parse it all again (~10 ms of CPU at 100 peers), so a pass for
# each host that joins is O(N^2) work: at 100 hosts on a loaded machine, where joins came ~0.4 s
# apart (more than the 0.2 s debounce), every node passed once a join.  A node's change that comes within
# STORM_GAP of the last pass is taken for part of such a stream: the pass then waits for
# STORM_QUIET without a change, at most STORM_SETTLE_MAX.  Any other change (a pool, whose IPIP
# tunnel Felix makes as it lands, a peer, a block) and a lone join wait only LONE_QUIET: Calico's
# confd renders on each watch event, and a command's keys (`calicoctl create -f` of a few
# resources, a node's registration) land within it.  (At the agents' 0.2 s debounce, the seed
# demo's BIRDs took the new pool 0.15 s later, and host1's BIRD its peer host2.)
STORM_GAP = 1.5
STORM_QUIET = 0.6
STORM_SETTLE_MAX = 3.0
LONE_QUIET = 0.05


def node_config_depends_on(name: str) -> Callable[[str, dict[str, Any]], bool]:
    """Which changes a node's BIRD config depends on (bird.bird_config): every key of its view but
    another node's while the node-to-node mesh is off (it then names only this node, its global
    and node-specific peers, pools and blocks), so behind route reflectors a node joining
    re-renders no other node's config; with the mesh on, every node is a peer."""
    own = keys.bgp_host(name)

    def depends_on(key: str, entries: dict[str, Any]) -> bool:
        if not key.startswith(keys.BGP_HOSTS) or key.startswith(own):
            return True
        return bird.mesh_enabled(entries)

    return depends_on


class Confd:
    """Runs BIRD as a child and keeps its config equal to what etcd says."""

    def __init__(self, view: View, paths: NodePaths, render: Callable[[dict[str, Any]], str],
                 before_render: Callable[[], Awaitable[object]] | None = None):
        self.view = view  # the etcd keys the config is computed from
        self.paths = paths
        self.render = render  # those keys -> BIRD's config text (a node's, or a route reflector's)
        self.before_render = before_render  # e.g. Felix's tunnel, whose address BIRD's config names
        self.prepared: object = None  # what before_render last returned, once BIRD's kernel routes followed it
        self.daemon = bird.Bird(paths)
        self.control = self.daemon.control
        self.bird: asyncio.subprocess.Process | None = None
        self.rendered: int | None = None  # the view's version of the last good pass
        self.last_pass = float("-inf")  # the event loop's time when the last pass began

    @classmethod
    def for_node(cls, view_of: Callable[..., View], name: str, paths: NodePaths,
                 before_render: Callable[[], Awaitable[object]] | None = None) -> "Confd":
        return cls(view_of(bird.datastore_prefixes(name), node_config_depends_on(name)), paths,
                   lambda entries: bird.render(bird.bird_config(entries, name)), before_render)

    async def render_config(self) -> bool:
        """Render from etcd's keys and write the file if `bird -p` accepts it; True if it changed."""
        return self.daemon.configure(self.render(self.view.read()))

    async def start_bird(self, recovery: bool = False) -> None:
        daemon = dataclasses.replace(self.daemon, recovery=recovery)
        self.bird = await daemon.start_async(stdin=asyncio.subprocess.DEVNULL)
        await daemon.await_ready(self.bird)
        log.info("BIRD started (pid %d)", self.bird.pid)

    async def reconcile(self) -> None:
        """Re-render after each burst of changes (and every RESYNC seconds, as Calico's agents resync);
        a failed pass keeps BIRD on its last good config and is tried again."""
        while True:
            await next_pass(self.view.changed, self.quiet, STORM_SETTLE_MAX)
            self.last_pass = asyncio.get_running_loop().time()
            try:
                if self.before_render is not None:
                    self.follow_tunnel(await self.before_render())  # pools may have come, gone or changed IPIP
                version = self.view.version
                if version == self.rendered:
                    continue  # BIRD runs the config these keys give
                if await self.render_config():
                    log.info("BIRD config changed; reloading: %s", self.control.configure())
                self.rendered = version
            except (bird.BirdError, DatastoreError, IPAMError, ConflictError, OSError) as error:
                log.error("kept the last good BIRD config: %s", error)
            except Exception:  # e.g. netlink refusing tunl0's address: log it, try again next pass
                log.exception("kept the last good BIRD config")

    def follow_tunnel(self, prepared: object) -> None:
        """BIRD's kernel routes of an IPIP pool name tunl0: one exported while tunl0 was absent or
        not yet up failed calico_kernel's `gw` ("Invalid gw address") and was dropped, and BIRD
        exports a route again only when it or the filter changes, not when an interface comes.  So
        whenever Felix's tunnel changes (made, or given another address) the kernel protocol's
        routes are exported again, as they are after a `configure` that changes the filter."""
        if prepared != self.prepared:
            self.control.command(f"reload out {KERNEL_PROTOCOL}")
            log.info("tunnel now %s: BIRD's kernel routes exported again", prepared)
            self.prepared = prepared

    def quiet(self) -> float:
        """How long a pass waits for silence: longer while nodes' changes keep following passes."""
        since = asyncio.get_running_loop().time() - self.last_pass
        joining = (self.view.last_woken or "").startswith(keys.BGP_HOSTS)
        return STORM_QUIET if joining and since < STORM_GAP else LONE_QUIET

    async def keep_bird_running(self) -> None:
        """As runsv: whenever BIRD exits, a 1 s pause and BIRD again (with -R), also when the
        new one dies before its socket answers (it is then started again, not given up on)."""
        while True:
            assert self.bird is not None
            code = await self.bird.wait()
            log.error("BIRD exited with code %s; restarting it", code)
            await asyncio.sleep(1)
            try:
                await self.start_bird(recovery=True)
            except DaemonError as error:
                log.error("BIRD did not start: %s", error)

    async def stop_bird(self) -> None:
        if self.bird is not None and self.bird.returncode is None:
            pids.stop([self.bird.pid], BIRD_STOP_TIMEOUT)
            await self.bird.wait()
        self.paths.bird_pid_file.unlink(missing_ok=True)
