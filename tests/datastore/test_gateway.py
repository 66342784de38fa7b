"""etcd's watch over its JSON gateway (datastore.gateway): a chunked body read back as its lines
however the chunks split them, events decoded (a put's value, a deletion's none, revisions), and
an error, a cancelled watch or a compacted revision ending the watch; a response other than a
chunked 200 refused.  With a real etcd (root): a watch from a revision replays what came after
it, one from a compacted revision is refused, a closed Datastore ends its watches at once (as
after a request timed out, its member perhaps frozen), and a dead first endpoint is passed over."""

import asyncio
import base64
import json

import pytest

from calisim.datastore import Datastore, DatastoreError, Txn
from calisim.datastore import gateway
from calisim.datastore.etcd import Event


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def chunked(*chunks: bytes, end: bool = True) -> bytes:
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + (b"0\r\n\r\n" if end else b"")


async def read_lines(data: bytes) -> tuple[list[bytes], str]:
    found = []
    with pytest.raises(gateway.GatewayError) as ended:
        async for line in gateway.lines(reader_of(data)):
            found.append(line)
    return found, str(ended.value)


def test_a_chunked_body_is_read_back_as_its_lines_however_the_chunks_split_them():
    body = b'{"result": 1}\n{"result": 2}\n\n{"result": 3}\n'
    split = chunked(body[:5], body[5:20], body[20:21], body[21:])
    assert asyncio.run(read_lines(split)) == ([b'{"result": 1}', b'{"result": 2}', b'{"result": 3}'],
                                              "etcd ended the watch")
    assert asyncio.run(read_lines(chunked(body[:20], end=False))) == ([b'{"result": 1}'], "etcd closed the watch")


def kv(key: str, value: bytes | None = None, revision: int = 7) -> dict:
    found = {"key": base64.b64encode(key.encode()).decode(), "mod_revision": str(revision)}
    return found | ({"value": base64.b64encode(value).decode()} if value is not None else {})


def test_events_decode_puts_and_deletions_and_an_error_a_cancel_or_a_compaction_ends_the_watch():
    message = {"result": {"header": {"revision": "9"}, "events": [
        {"kv": kv("/calico/a", b'{"x": 1}', 8)}, {"type": "DELETE", "kv": kv("/calico/b", revision=9)},
        {"kv": kv("/calico/empty")}]}}
    assert gateway.events(message) == [("/calico/a", b'{"x": 1}', 8), ("/calico/b", None, 9), ("/calico/empty", b"", 7)]
    assert gateway.events({"result": {"header": {}, "created": True}}) == []
    for ending, says in (({"error": {"grpc_code": 14, "message": "etcdserver: no leader"}}, "no leader"),
                         ({"result": {"canceled": True, "cancel_reason": "gone"}}, "gone"),
                         ({"result": {"compact_revision": "5", "canceled": True}}, "compacted")):
        with pytest.raises(gateway.GatewayError, match=says):
            gateway.events(ending)


@pytest.mark.parametrize("response", [b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                                      b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"])
def test_a_watch_answered_with_anything_but_a_chunked_200_is_refused(response):
    async def answer():
        await gateway.Watch.answered(reader_of(response))

    with pytest.raises(gateway.GatewayError, match="etcd answered the watch"):
        asyncio.run(answer())


async def first_events(ds: Datastore, prefix: str, revision: int, count: int) -> list[Event]:
    found = []
    async for event in ds.watch(prefix, start_revision=revision):
        found.append(event)
        if len(found) == count:
            return found
    return found


@pytest.mark.emulation
def test_a_real_watch_replays_from_its_revision_and_one_from_a_compacted_revision_is_refused(etcd):
    async def scenario():
        ds = Datastore(etcd)
        try:
            start = await ds.commit_revision(Txn().put("/calico/one", 1))
            await ds.commit(Txn().put("/calico/two", {"b": [2]}).delete("/calico/one"))
            assert await asyncio.wait_for(first_events(ds, "/calico/", start, 3), 10) == [
                Event("/calico/one", 1, start), Event("/calico/two", {"b": [2]}, start + 1),
                Event("/calico/one", None, start + 1)]
            await ds._client.compact(start + 1)
            with pytest.raises(DatastoreError, match="compacted"):
                await asyncio.wait_for(first_events(ds, "/calico/", start, 1), 10)
        finally:
            await ds.close()

    asyncio.run(scenario())


@pytest.mark.emulation
def test_a_closed_datastore_ends_its_watches_and_a_dead_first_endpoint_is_passed_over(etcd):
    async def scenario():
        ds = Datastore(f"unix:///nonexistent/etcd.sock:2379,{etcd}")
        try:
            revision = await ds.commit_revision(Txn().put("/calico/one", 1))
            assert await asyncio.wait_for(first_events(ds, "/calico/", revision, 1), 10) == [
                Event("/calico/one", 1, revision)]
            waiting = asyncio.create_task(first_events(ds, "/calico/", revision + 1, 1))
            await asyncio.sleep(0.5)  # the watch is made and waits for an event
            await ds.close()
            with pytest.raises(DatastoreError, match="closed"):
                await asyncio.wait_for(waiting, 5)
        finally:
            await ds.close()

    asyncio.run(scenario())


def test_the_watch_request_names_the_range_and_its_revision():
    head, body = gateway.request(b"/calico/", b"/calico0", 42).split(b"\r\n\r\n")
    assert head.startswith(b"POST /v3/watch HTTP/1.1\r\n") and b"Content-Length: %d" % len(body) in head
    assert json.loads(body) == {"create_request": {"key": "L2NhbGljby8=", "range_end": "L2NhbGljbzA=",
                                                   "start_revision": 42}}
