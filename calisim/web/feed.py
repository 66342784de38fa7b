"""One lab's state, followed for every open page: the server polls the lab's ``inspect``
operation and pushes what changed to each page as a server-sent event.

Polled, not subscribed: what a page shows lives in BIRD (its control socket), the kernel
(netlink), etcd and each dockerd, and only etcd could push a change; the lab would have to poll
the others itself to offer a subscription.  So the server asks, and only while a page is open:
every POLL_INTERVAL (a change reaches the pages within about a second: the interval plus one
``inspect``, ~0.1-0.3 s on a few hosts), at once after a fault from the page, and one poll serves
every tab.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from ..emulation.lab import LabError, LabRecord

POLL_INTERVAL = 0.5  # seconds between two `inspect` calls while a page is open
DOWN_POLL_INTERVAL = 1.0  # a lab that does not answer is asked again less often
log = logging.getLogger("calisim.web")

Event = tuple[str, Any]  # (event name, JSON-able data)


class LabFeed:
    """Polls one lab while anyone listens and hands every listener each change as an Event."""

    def __init__(self, record: LabRecord, render: Callable[[dict[str, Any]], dict[str, Any]]):
        self.record = record
        self.render = render  # an inspect document -> the page's snapshot (view.snapshot on the lab's topology)
        self.listeners: set[asyncio.Queue[Event | None]] = set()
        self.latest: dict[str, Event] = {}  # what a new listener is told first: the state or the lab being down
        self.last_document: str | None = None
        self.wake = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        for event in self.latest.values():
            queue.put_nowait(event)
        self.listeners.add(queue)
        self.publish("viewers", len(self.listeners))
        self.wake.set()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        self.listeners.discard(queue)
        self.publish("viewers", len(self.listeners))

    def publish(self, name: str, data: Any) -> None:
        for queue in self.listeners:
            queue.put_nowait((name, data))

    def close(self) -> None:
        """End every listener's stream (the server is stopping)."""
        for queue in self.listeners:
            queue.put_nowait(None)

    def poll_now(self) -> None:
        self.wake.set()

    async def inspect(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.record.client().call, "inspect", 30)

    async def run(self) -> None:
        """Poll until cancelled; sleep while nobody listens."""
        while True:
            if not self.listeners:
                self.wake.clear()
                await self.wake.wait()
            interval = await self.poll_once()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), interval)
            except asyncio.TimeoutError:
                pass

    async def poll_once(self) -> float:
        """One `inspect`: publish the state if it changed, or that the lab is down; the seconds to the next."""
        try:
            document = await self.inspect()
        except LabError as error:
            self.lab_down(str(error))
            return DOWN_POLL_INTERVAL
        text = json.dumps(document, sort_keys=True)
        if text != self.last_document or "down" in self.latest:
            self.last_document = text
            self.latest.pop("down", None)
            event = ("state", await asyncio.to_thread(self.render, document))
            self.latest["state"] = event
            self.publish(*event)
        return POLL_INTERVAL

    def lab_down(self, error: str) -> None:
        stopped = not self.record.alive() or not self.record.socket.exists()  # a stopping lab removes its socket first
        message = f"lab {self.record.name} is down" if stopped else f"lab {self.record.name} does not answer: {error}"
        if self.latest.get("down", ("", None))[1] != message:
            log.info("%s", message)
            self.latest["down"] = ("down", message)
            self.publish("down", message)
