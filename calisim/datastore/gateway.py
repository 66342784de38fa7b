"""etcd's watch over its JSON gateway: `POST /v3/watch` on a client listener (etcd serves HTTP/1.1
beside gRPC on each), its events streamed back one JSON object a line in a chunked response,
read on the event loop's own socket.

Why not gRPC's watch: calico-node follows /calico/ with one watch, and every host's wakes for the
same change at once.  Through grpcio each message went through its EventEngine's pool of threads
(several of them woken a message) before the event loop saw it: ~1 ms of CPU a host at 100 hosts
on 2 cores, paid by every host at once, against ~0.1 ms read and decoded here.  Calico v1's Felix
watched etcd over HTTP too (etcd v2's long poll).  Requests (lists, transactions) stay on gRPC.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import AsyncIterator

HANDSHAKE_TIMEOUT = 10.0  # seconds a member has to answer the request (a frozen one never does)


class GatewayError(RuntimeError):
    """The watch could not be made, or ended (etcd stopped, the revision was compacted)."""


Address = tuple[str, int]  # ("unix:/path/name", port) for etcd's unix listener name:port, or (ip, port)


async def connect(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address
    if host.startswith("unix:"):
        return await asyncio.open_unix_connection(f"{host[len('unix:'):]}:{port}")
    return await asyncio.open_connection(host, port)


def request(key: bytes, range_end: bytes, start_revision: int | None) -> bytes:
    create = {"key": base64.b64encode(key).decode(), "range_end": base64.b64encode(range_end).decode()}
    if start_revision:
        create["start_revision"] = start_revision
    body = json.dumps({"create_request": create}).encode()
    return (b"POST /v3/watch HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class Watch:
    """One watch of a key range: the first member of addresses that answers the request, then its
    events as (key, value or None for a deletion, mod_revision) until it ends (GatewayError) or
    is closed."""

    def __init__(self, addresses: list[Address], key: bytes, range_end: bytes, start_revision: int | None):
        self.addresses = addresses
        self.request = request(key, range_end, start_revision)
        self.writer: asyncio.StreamWriter | None = None
        self.closed = False

    def close(self) -> None:
        """End the watch: a reader waiting on it sees the connection end (a member frozen mid-watch
        would otherwise keep it waiting for ever)."""
        self.closed = True
        if self.writer is not None:
            self.writer.close()

    async def open(self) -> asyncio.StreamReader:
        failures = []
        for address in self.addresses:
            try:
                reader, self.writer = await asyncio.wait_for(connect(address), HANDSHAKE_TIMEOUT)
                self.writer.write(self.request)
                await asyncio.wait_for(self.answered(reader), HANDSHAKE_TIMEOUT)
                return reader
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, GatewayError) as error:
                failures.append(f"{address[0]}:{address[1]}: {error or type(error).__name__}")
                if self.writer is not None:
                    self.writer.close()
        raise GatewayError("; ".join(failures))

    @staticmethod
    async def answered(reader: asyncio.StreamReader) -> None:
        """The response's status line and headers: 200 with a chunked body."""
        status = await reader.readline()
        headers = []
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            headers.append(line.lower())
        if b" 200 " not in status or not any(h.startswith(b"transfer-encoding:") and b"chunked" in h for h in headers):
            raise GatewayError(f"etcd answered the watch with {status.strip().decode(errors='replace')!r}")

    async def __aiter__(self) -> AsyncIterator[tuple[str, bytes | None, int]]:
        reader = await self.open()
        if self.closed:
            raise GatewayError("watch closed")
        try:
            async for line in lines(reader):
                for event in events(json.loads(line)):
                    yield event
        except (OSError, ValueError, asyncio.IncompleteReadError) as error:
            raise GatewayError(str(error) or type(error).__name__) from error
        finally:
            self.close()


async def lines(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """A chunked body's lines (each chunk: its size in hex, CRLF, the data, CRLF), however the
    chunks split them; GatewayError at its end."""
    pending = b""
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise GatewayError("etcd closed the watch")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            raise GatewayError("etcd ended the watch")
        pending += (await reader.readexactly(size + 2))[:-2]
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line


def events(message: dict) -> list[tuple[str, bytes | None, int]]:
    """A watch response's events; GatewayError for an error, a cancelled watch or a compacted revision."""
    if "error" in message:
        raise GatewayError(f"etcd: {message['error'].get('message', message['error'])}")
    result = message.get("result", {})
    if result.get("canceled") or int(result.get("compact_revision", 0)):
        raise GatewayError(f"watch cancelled: {result.get('cancel_reason') or 'required revision has been compacted'}")
    found = []
    for event in result.get("events", ()):
        kv = event["kv"]
        value = base64.b64decode(kv.get("value", "")) if event.get("type", "PUT") == "PUT" else None
        found.append((base64.b64decode(kv["key"]).decode(), value, int(kv.get("mod_revision", 0))))
    return found
