"""A probe stream between two workloads, drawn by the page as it runs.

The lab's control socket answers each request once, when it is done, so a long stream would
only be seen at its end.  Instead the stream is cut into windows: every WINDOW seconds one
``python -m calisim.probes stream`` of WINDOW seconds starts inside the source workload's
network namespace (through the lab's ``run`` operation on its host, as a transcript step would
run it), overlapping the tail of the one before, and each window's count of echoes sent and
answered is pushed to the pages as soon as it ends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shlex
from dataclasses import dataclass
from typing import Any, Callable

from ..emulation.lab import LabClient, LabError

WINDOW = 1.0  # seconds of each stream
INTERVAL_MS = 20.0  # between two echoes: 50 a window
MAX_SECONDS = 600
_ids = itertools.count(1)


@dataclass(frozen=True)
class Workload:
    host: str
    name: str
    address: str

    def label(self) -> str:
        return f"{self.host}/{self.name}"


class ProbeError(ValueError):
    """A probe that cannot start; the message is one line for the page."""


def choose(workloads: list[dict[str, Any]], source: str, destination: str, seconds: Any,
           address: str | None = None) -> tuple[Workload, Workload, int]:
    """The source and destination ("host/name" among the lab's workloads), the destination's
    address probed (its first, IPv4, unless one of its others is asked for) and the seconds, checked."""
    known = {f"{w['host']}/{w['name']}": w for w in workloads}
    for value in (source, destination):
        if value not in known:
            raise ProbeError(f"no workload {value!r} with an address (known: {', '.join(sorted(known)) or 'none'})")
    target = known[destination]
    if address is not None and address not in target.get("addresses", [target["address"]]):
        raise ProbeError(f"{destination} has no address {address!r} (it has {', '.join(target['addresses'])})")
    try:
        count = int(seconds)
    except (TypeError, ValueError):
        raise ProbeError(f"seconds must be a whole number, not {seconds!r}") from None
    if not 1 <= count <= MAX_SECONDS:
        raise ProbeError(f"seconds must be between 1 and {MAX_SECONDS}, not {count}")
    chosen = known[source]
    return (Workload(chosen["host"], chosen["name"], chosen["address"]),
            Workload(target["host"], target["name"], address or target["address"]), count)


class ProbeStream:
    """One stream from source to destination for seconds, each window published as ("probe", ...)."""

    def __init__(self, client: LabClient, source: Workload, destination: Workload, seconds: int,
                 publish: Callable[[str, Any], None]):
        self.client, self.source, self.destination, self.seconds = client, source, destination, seconds
        self.publish = publish
        self.id = next(_ids)

    def header(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source.label(), "destination": self.destination.label(),
                "address": self.destination.address, "seconds": self.seconds}

    async def run(self) -> None:
        self.publish("probe", {**self.header(), "state": "starting"})
        try:
            pid = await self.workload_pid()
            windows = []
            for _ in range(int(self.seconds / WINDOW)):
                windows.append(asyncio.create_task(self.window(pid)))
                await asyncio.sleep(WINDOW)
            results = await asyncio.gather(*windows)
        except (LabError, ProbeError) as error:
            self.publish("probe", {**self.header(), "state": "failed", "error": str(error)})
            return
        sent, received = sum(r["sent"] for r in results), sum(r["received"] for r in results)
        self.publish("probe", {**self.header(), "state": "done", "sent": sent, "received": received})

    async def workload_pid(self) -> int:
        command = f"docker inspect -f '{{{{.State.Pid}}}}' {shlex.quote(self.source.name)}"
        done = await asyncio.to_thread(self.client.call, "run", host=self.source.host, command=command, timeout=20)
        pid = done["stdout"].strip()
        if done["rc"] != 0 or not pid.isdigit() or pid == "0":
            raise ProbeError(f"{self.source.label()} is not running: {(done['stderr'] or pid).strip()}")
        return int(pid)

    async def window(self, pid: int) -> dict[str, Any]:
        command = (f"nsenter -t {pid} -n python -m calisim.probes stream {shlex.quote(self.destination.address)} "
                   f"--interval {INTERVAL_MS} --seconds {WINDOW}")
        done = await asyncio.to_thread(self.client.call, "run", host=self.source.host, command=command, timeout=30)
        try:
            result = json.loads(done["stdout"])
        except ValueError:
            raise ProbeError(f"the probe stream failed: {done['stderr'].strip()}") from None
        window = {key: result[key] for key in ("started", "ended", "sent", "received", "longest_outage_ms")}
        self.publish("probe", {**self.header(), "state": "running", "window": window})
        return window
