"""`calisim web`: a lab's live page, served by aiohttp on 127.0.0.1 only.

Routes: ``/`` and ``/static/`` (the page, cytoscape.js vendored beside it), ``/events`` (the
server-sent events every open page listens to: ``state``, ``down``, ``viewers``, ``probe``),
``/api/verbs`` (the form's `calisim fault` verbs), ``POST /api/fault`` (one fault command line,
carried out and validated by the lab as `calisim fault` is), ``/api/hosts/NAME`` (a host's
routes, BIRD protocols, nftables ruleset and counters, interfaces and workloads) and
``POST /api/probe`` (``{source, destination, seconds[, address]}``: a stream between two
workloads, to the destination's IPv4 address or the one given, e.g. its IPv6 one; see probe.py).
Everything reaches the lab through its control socket, as `calisim inspect` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import socket
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from ..emulation.lab import LabError, LabRecord
from . import view
from .feed import LabFeed
from .probe import ProbeError, ProbeStream, choose

STATIC = Path(__file__).parent / "static"
HEARTBEAT = 5.0  # seconds: an idle stream gets a comment, so a closed tab is noticed (and uncounted) soon
MAX_WORDS = 16  # a fault command line is a verb and a few values
HOST_VIEWS = {  # what a click on a host shows, each one command on the host
    "routes": "ip route show; ip -6 route show | grep -v '^fe80\\|^multicast'",
    "bird": "birdc -s /var/run/calico/bird.ctl show protocols",
    "nftables": "nft list ruleset",
    "interfaces": "ip -s link",
}


def listening_socket(port: int) -> socket.socket:
    """127.0.0.1:port bound and listening (LabError, one line, if it cannot be)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise LabError(f"port {port} on 127.0.0.1 is in use (choose another with --port)") from None
        raise LabError(f"cannot listen on 127.0.0.1:{port}: {error.strerror}") from None
    return sock


class WebApp:
    """The routes of one lab's page."""

    def __init__(self, record: LabRecord, topo, fault_parser: argparse.ArgumentParser):
        self.record = record
        self.topo = topo
        self.verbs = view.fault_verbs(fault_parser)
        self.feed: LabFeed | None = None
        self.probe: asyncio.Task | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/events", self.events)
        app.router.add_get("/api/verbs", self.fault_verbs)
        app.router.add_post("/api/fault", self.fault)
        app.router.add_get("/api/hosts/{name}", self.host)
        app.router.add_post("/api/probe", self.start_probe)
        app.router.add_post("/api/probe/stop", self.stop_probe)
        app.cleanup_ctx.append(self.polling)
        app.on_shutdown.append(self.end_streams)
        return app

    async def polling(self, _app: web.Application):
        self.feed = LabFeed(self.record, lambda document: view.snapshot(self.topo, document))
        task = asyncio.create_task(self.feed.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def end_streams(self, _app: web.Application) -> None:
        self.feed.close()

    async def index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        queue = self.feed.subscribe()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT)
                except asyncio.TimeoutError:
                    await response.write(b": still here\n\n")
                    continue
                if event is None:
                    break
                name, data = event
                await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.feed.unsubscribe(queue)
        return response

    async def fault_verbs(self, _request: web.Request) -> web.Response:
        return web.json_response(self.verbs)

    async def fault(self, request: web.Request) -> web.Response:
        """One `calisim fault` command line: the lab parses and checks it as the CLI's, and refuses
        bad values with one line before anything changes."""
        argv = (await self.body(request)).get("argv")
        if not (isinstance(argv, list) and 0 < len(argv) <= MAX_WORDS and all(isinstance(w, str) for w in argv)):
            return refused("a fault is a list of words: a verb and its values")
        return await self.lab_call(lambda: {"message": self.record.client().call("fault", argv=argv)},
                                   then=self.feed.poll_now)

    async def host(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in {host["name"] for host in self.record.hosts}:
            return refused(f"no host {name!r} in lab {self.record.name}", status=404)

        def run(command: str) -> str:
            done = self.record.client().call("run", host=name, command=command, timeout=20)
            return done["stdout"] or done["stderr"]

        async def shown() -> dict[str, str]:
            outputs = await asyncio.gather(*(asyncio.to_thread(run, command) for command in HOST_VIEWS.values()))
            return dict(zip(HOST_VIEWS, outputs))

        try:
            return web.json_response({"ok": True, "host": name, **await shown()})
        except LabError as error:
            return refused(str(error), status=502)

    async def start_probe(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        state = self.feed.latest.get("state", ("", {}))[1]
        try:
            source, destination, seconds = choose(state.get("workloads", []), body.get("source"),
                                                  body.get("destination"), body.get("seconds", 10),
                                                  body.get("address"))
        except ProbeError as error:
            return refused(str(error))
        await self.stop_probe(request)
        stream = ProbeStream(self.record.client(), source, destination, seconds, self.feed.publish)
        self.probe = asyncio.create_task(stream.run())
        return web.json_response({"ok": True, **stream.header()})

    async def stop_probe(self, _request: web.Request) -> web.Response:
        if self.probe and not self.probe.done():
            self.probe.cancel()
            self.feed.publish("probe", {"state": "stopped"})
        return web.json_response({"ok": True})

    @staticmethod
    async def body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @staticmethod
    async def lab_call(call: Callable[[], dict[str, Any]], then: Callable[[], None]) -> web.Response:
        try:
            answer = await asyncio.to_thread(call)
        except LabError as error:
            return refused(str(error))
        then()
        return web.json_response({"ok": True, **answer})


def refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


def serve(record: LabRecord, topo, fault_parser: argparse.ArgumentParser, port: int,
          announce: Callable[[str], None]) -> None:
    """Serve the lab's page on 127.0.0.1:port until Ctrl-C or SIGTERM (LabError if the port is taken)."""
    sock = listening_socket(port)
    announce(f"http://127.0.0.1:{sock.getsockname()[1]}/")
    web.run_app(WebApp(record, topo, fault_parser).application(), sock=sock, print=None, shutdown_timeout=2,
                access_log=None)
