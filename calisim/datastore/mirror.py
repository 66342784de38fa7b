"""One process's copy of etcd's keys (``Mirror``), kept current by a watch, and the views of it
that its agents compute from (``View``): etcd listed once and followed, not listed by every agent
on every pass."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from .etcd import DatastoreError, Event

if TYPE_CHECKING:
    from .etcd import Datastore

log = logging.getLogger("calico-node")


Wakes = Callable[[str, dict[str, Any]], bool]  # (changed key, the view's entries) -> does its agent's output read it


def every_key(key: str, entries: dict[str, Any]) -> bool:
    return True


class View:
    """The entries of a Mirror under some prefixes (what one agent computes from), a version that
    grows whenever one of them that the agent's output depends on changes, and ``changed``, set
    then (what the agent waits on).  ``wakes`` says which changes those are (Calico's confd
    watches only the keys its templates use; Felix recomputes only what a change touches): a
    node's BIRD config without the mesh, say, names no other node, so other nodes joining are
    kept in the entries but wake nobody.  With tracks_keys the view also keeps which keys woke it
    since the agent last took them (``take_touched``), for an agent that recomputes only those."""

    def __init__(self, prefixes: list[str] | tuple[str, ...], wakes: Wakes = every_key, tracks_keys: bool = False):
        self.prefixes = tuple(prefixes)
        self.wakes = wakes
        self.entries: dict[str, Any] = {}
        self.version = 0
        self.changed = asyncio.Event()
        self.last_woken: str | None = None  # the key of the latest change that woke the agent
        self.tracks_keys = tracks_keys
        self.touched: set[str] | None = None  # with tracks_keys: the keys that woke it; None: every key (a reload)

    def read(self) -> dict[str, Any]:
        """A copy of the entries, the agent's to keep while it awaits."""
        return dict(self.entries)

    def _update(self, key: str, value: Any) -> None:
        if value is None:
            del self.entries[key]
        else:
            self.entries[key] = value
        if self.wakes(key, self.entries):
            self.version += 1
            self.last_woken = key
            self.changed.set()
            if self.tracks_keys and self.touched is not None:
                self.touched.add(key)

    def _reload(self, entries: dict[str, Any]) -> None:
        mine = {key: value for key, value in entries.items() if key.startswith(self.prefixes)}
        if mine != self.entries:
            self.entries = mine
            self.version += 1
        self.touched = None  # any key may have changed
        self.changed.set()  # a pass after every reload, whatever it found

    def take_touched(self) -> set[str] | None:
        """The keys that woke the agent since it last took them (None: any key may have, since a
        reload); the next call starts afresh."""
        touched, self.touched = self.touched, set()
        return touched


class Mirror:
    """One process's copy of every key under a prefix (calico-node: /calico/), so that its agents
    read etcd's state from memory instead of each listing its prefixes over gRPC on every pass.

    ``load`` lists the prefix at one revision; ``follow`` watches from the next revision, so that
    no change between the list and the watch is lost, applies every event in order and, when
    the watch is lost (etcd restarted, its history compacted), loads the copy again and follows
    on from there.  Each event is decoded once, here, for every agent.  An agent asks for a
    ``view`` of the prefixes it computes from; a put that does not change a value changes no view."""

    def __init__(self, ds: Datastore, prefix: str = "/calico/"):
        self.ds = ds
        self.prefix = prefix
        self.entries: dict[str, Any] = {}
        self.revision = 0  # the etcd revision the copy is current to
        self.views: list[View] = []

    def view(self, prefixes: list[str] | tuple[str, ...], wakes: Wakes = every_key,
             tracks_keys: bool = False) -> View:
        view = View(prefixes, wakes, tracks_keys)
        view._reload(self.entries)
        self.views.append(view)
        return view

    async def load(self) -> None:
        listed, self.revision = await self.ds.list_at(self.prefix)
        self.entries = {entry.key: entry.value for entry in listed}
        for view in self.views:
            view._reload(self.entries)

    def apply(self, event: Event) -> None:
        self.revision = max(self.revision, event.revision)
        if event.value is None:
            if self.entries.pop(event.key, _ABSENT) is _ABSENT:
                return
        elif self.entries.get(event.key, _ABSENT) == event.value:
            return
        else:
            self.entries[event.key] = event.value
        for view in self.views:
            if event.key.startswith(view.prefixes):
                view._update(event.key, event.value)

    async def follow(self) -> None:
        """Keep the copy current until cancelled (``load`` it first)."""
        backoff = 0.5
        while True:
            try:
                async for event in self.ds.watch(self.prefix, start_revision=self.revision + 1):
                    backoff = 0.5
                    self.apply(event)
            except DatastoreError as error:
                log.warning("etcd watch lost (%s); reloading in %.1fs", error, backoff)
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                try:
                    await self.load()
                    break
                except DatastoreError as error:
                    log.warning("etcd not listed (%s); retrying in %.1fs", error, backoff)


_ABSENT = object()
