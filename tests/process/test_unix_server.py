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
    serving = threading.Thread(target=server.serve_forever)  # an idle loop that never wakes by itself
    serving.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        client.sendall(b"hello\n")
        assert client.recv(16) == b"hello\n"
    server.shutdown()  # only the wake-up connection ends the loop
    serving.join(timeout=10)
    assert not serving.is_alive()
    server.server_close()


class CountingLoops(ThreadingUnixServer):
    loops = 0

    def service_actions(self) -> None:  # socketserver calls it once a turn of its loop
        self.loops += 1


def test_an_idle_server_does_not_wake_until_a_client_comes(tmp_path):
    path = str(tmp_path / "echo.sock")
    server = CountingLoops(path, Echo)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    threading.Event().wait(1.2)  # socketserver's own loop would have turned twice by now
    idle_loops = server.loops
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        client.sendall(b"hello\n")
        assert client.recv(16) == b"hello\n"
    server.shutdown()
    serving.join(timeout=10)
    server.server_close()
    assert idle_loops == 0
    assert server.loops >= 1
