"""The daemons' servers on unix sockets (dockerd's Engine API, the libnetwork plugins, a lab's
control socket): a thread a connection, an idle loop that sleeps until a client comes, and a
shutdown that wakes it."""

from __future__ import annotations

import socket
import socketserver
import threading


class ThreadingUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 refuses the docker CLI's parallel requests (rm -f a b c ...)

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """socketserver wakes every half second to look for a shutdown: two plugins and a dockerd a
        host, at a hundred hosts 600 wake-ups a second of idle servers.  Here select blocks until a
        client, or `shutdown`'s own connection, comes."""
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        """The serving loop notices a shutdown only when its select returns: connections of our own
        wake it, so a daemon stops in milliseconds (a calico-node has two plugins
        to stop, a hundred hosts' dockerds stop at once)."""
        stopping = threading.Thread(target=super().shutdown, name="server shutdown")
        stopping.start()
        while stopping.is_alive():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                try:
                    wake.connect(self.server_address)
                except OSError:
                    pass
            stopping.join(0.01)
