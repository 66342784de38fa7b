"""The daemons' unix-socket servers: a shutdown ends the serving loop (woken by a connection of
its own), and the answers before it still arrive."""

import socket
import socketserver
import threading

from calisim.process.unix_server import ThreadingUnixServer


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


def test_shutdown_ends_the_idle_loop_after_serving(tmp_path):
    path = str(tmp_path / "echo.sock")
    server = ThreadingUnixServer(path, Echo)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 60})
    serving.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        client.sendall(b"hello\n")
        assert client.recv(16) == b"hello\n"
    server.shutdown()  # with a 60 s poll, only the wake-up connection ends the loop in time
    serving.join(timeout=10)
    assert not serving.is_alive()
    server.server_close()
