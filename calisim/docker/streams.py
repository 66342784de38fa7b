"""Docker's hijacked streams once the Engine API has answered 101 (api.py): a run's output to the
client, framed as Docker multiplexes it (8-byte headers) unless there is a TTY (raw bytes), and
the client's bytes to the process's stdin."""

from __future__ import annotations

import array
import fcntl
import queue
import socket
import termios
import time
from typing import Callable

from . import runtime
from .containers import Stdin
from .errors import APIError


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream: [stream, 0, 0, 0, length (big endian)] + data."""
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def unread(connection: socket.socket) -> int:
    """Bytes sent on a unix stream socket that its peer has not read yet (SIOCOUTQ: the kernel
    charges them to the sender until the receiver takes them)."""
    queued = array.array("i", [0])
    try:
        fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, queued)
    except OSError:
        return 0
    return queued[0]


def read_by_peer(connection: socket.socket, timeout: float = 0.5) -> bool:
    """Wait until the peer has read what was sent (at most timeout).  A client that reads the 101
    through a buffered reader and then takes the raw socket (the Docker SDK does) loses whatever
    came in the same read: a process started only once the 101 is read cannot race it."""
    deadline = time.monotonic() + timeout
    while unread(connection):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    return True


def subscribe(output: runtime.Output, replay: bool = False, follow: bool = True) -> tuple[queue.Queue, Callable]:
    """Subscribe to output before anything can be missed; chunks come as (stream, bytes), then (0, None).
    replay: the log so far first (attach's logs=1), joined to what follows without a gap or a repeat;
    without follow, only that (attach's stream=0)."""
    chunks: queue.Queue = queue.Queue()

    def write(stream: int, chunk: bytes | None) -> None:
        chunks.put((stream, chunk))

    with output.lock:
        for _, stream, line in output.log if replay else []:
            chunks.put((stream, line))
        if follow:
            output.subscribers.append(write)
        else:
            chunks.put((0, None))
    return chunks, write


def send_output(output: runtime.Output, listening: tuple[queue.Queue, Callable], tty: bool,
                connection: socket.socket) -> None:
    """Send output as it comes (framed unless tty) until its run ends or the client goes."""
    chunks, write = listening
    try:
        while (item := chunks.get())[1] is not None:
            connection.sendall(item[1] if tty else frame(*item))
    except OSError:
        pass
    finally:
        output.unsubscribe(write)


DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q: Docker's default
CONTROL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def detach_keys(spec: str) -> bytes:
    """Docker's --detach-keys: a comma list of single characters and ctrl-<a-z@[\\]^_>."""
    keys = []
    for key in spec.split(",") if spec else []:
        name = key.lower().removeprefix("ctrl-")
        if len(key) == 1:
            keys.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(name) == 1 and ("a" <= name <= "z" or name in CONTROL):
            keys.append(ord(name) - ord("a") + 1 if "a" <= name <= "z" else CONTROL[name])
        else:
            raise APIError(400, f"Invalid escape keys ({spec}) provided")
    return bytes(keys) or DETACH_KEYS


def copy_stdin(connection: socket.socket, target: Callable[[], Stdin | None], detach: bytes = b"",
               on_detach: Callable[[], None] = lambda: None) -> None:
    """The client's bytes to the container's stdin; the client's half-close closes it (StdinOnce).
    With detach keys (a TTY's), the client detaches by sending them, each key a read of its own, as
    dockerd matches them: on_detach is called and the process keeps its stdin; keys read any other
    way reach the process."""
    stdin: Stdin | None = None
    first = True
    held = b""  # the detach keys read so far
    while True:
        try:
            chunk = connection.recv(65536)
        except OSError:
            chunk = b""
        if first:
            stdin, first = target(), False
        if detach and len(chunk) == 1 and chunk[0] == detach[len(held)]:
            held += chunk
            if held == detach:
                return on_detach()
            continue
        chunk, held = held + chunk, b""
        try:
            if not chunk:
                if stdin is not None:
                    stdin.close()
                return
            if stdin is not None:
                stdin.write(chunk)
        except (OSError, ValueError):  # the process has gone
            return
