"""Docker's hijacked streams (calisim.docker.streams) over a socket pair: what an attached client
reads of a run's output, and what it writes to the container's stdin (no root, no container)."""

import socket
import threading

import pytest

from calisim.docker.containers import Stdin
from calisim.docker.errors import APIError
from calisim.docker.runtime import Output
from calisim.docker.streams import copy_stdin, detach_keys, read_by_peer, send_output, subscribe, unread


def received(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def test_output_is_framed_without_a_tty_and_raw_with_one():
    for tty, expected in ((False, b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n\x02\x00\x00\x00\x00\x00\x00\x04err\n"),
                          (True, b"hi\nerr\n")):
        output, partial = Output(), {}
        listening = subscribe(output)  # before the run: nothing it writes can slip past
        output.begin()
        output.publish(1, b"hi\n", partial)
        output.publish(2, b"err\n", partial)
        output.finish(partial)
        server, client = socket.socketpair()
        with server, client:
            send_output(output, listening, tty, server)
            server.shutdown(socket.SHUT_WR)
            assert received(client) == expected
        assert output.subscribers == []


def test_a_client_that_has_gone_ends_the_stream_and_its_subscription():
    output, partial = Output(), {}
    listening = subscribe(output)
    server, client = socket.socketpair()
    client.close()
    output.publish(1, b"lost\n", partial)
    with server:
        send_output(output, listening, False, server)  # returns (EPIPE), does not raise
    assert output.subscribers == []


def test_stdin_gets_the_clients_bytes_and_is_closed_by_its_half_close():
    written, closed, asked = [], threading.Event(), []

    def target() -> Stdin:
        asked.append(True)  # only once the first bytes (or the EOF) came: attach may precede start
        return Stdin(written.append, closed.set)

    server, client = socket.socketpair()
    with server, client:
        copying = threading.Thread(target=copy_stdin, args=(server, target))
        copying.start()
        client.sendall(b"echo hi\n")
        client.shutdown(socket.SHUT_WR)
        copying.join(5)
    assert not copying.is_alive() and closed.is_set() and asked == [True]
    assert b"".join(written) == b"echo hi\n"


def test_no_stdin_to_write_to_drops_the_clients_bytes():
    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"ignored")
        client.shutdown(socket.SHUT_WR)
        copy_stdin(server, lambda: None)  # returns at the client's EOF


class Reads:
    """A connection whose reads return these chunks, then EOF: one read a chunk, as a terminal sends keys."""

    def __init__(self, *chunks: bytes):
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_detach_keys_each_read_alone_detach_and_any_other_way_reach_the_process():
    assert detach_keys("") == b"\x10\x11" and detach_keys("ctrl-x,a,ctrl-[") == b"\x18a\x1b"
    with pytest.raises(APIError, match=r"^Invalid escape keys \(ctrl-1\) provided$"):
        detach_keys("ctrl-1")
    for reads, detached, expected in (((b"ls\n", b"\x10", b"\x11", b"more"), True, b"ls\n"),
                                      ((b"\x10\x11", b"x"), False, b"\x10\x11x"),  # one read: passed through
                                      ((b"\x10", b"y", b"\x11"), False, b"\x10y\x11")):
        written, detaches = [], []
        copy_stdin(Reads(*reads), lambda: Stdin(written.append, lambda: None), b"\x10\x11",
                   lambda: detaches.append(True))
        assert (bool(detaches), b"".join(written)) == (detached, expected), reads


def test_a_stream_knows_when_its_peer_has_read_what_was_sent():
    daemon, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with daemon, client:
        assert unread(daemon) == 0 and read_by_peer(daemon, 0.01)
        daemon.sendall(b"HTTP/1.1 101 UPGRADED\r\n\r\n")
        assert unread(daemon) > 0 and not read_by_peer(daemon, 0.01)
        reader = threading.Thread(target=client.recv, args=(4096,))
        reader.start()
        assert read_by_peer(daemon, 5)
        reader.join()
        assert unread(daemon) == 0
