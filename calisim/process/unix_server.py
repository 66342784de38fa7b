"""The daemons' HTTP servers on unix sockets (dockerd's Engine API, the libnetwork plugins): a
thread a connection, and a shutdown that does not wait for socketserver's half-second poll."""

from __future__ import annotations

import socket
import socketserver
import threading


class ThreadingUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 refuses the docker CLI's parallel requests (rm -f a b c ...)

    def shutdown(self) -> None:
        """socketserver notices a shutdown only when its select returns, every half second when idle:
        connections of our own wake it, so a daemon stops in milliseconds (a calico-node has two plugins
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
