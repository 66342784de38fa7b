"""The plugins' HTTP protocol over a unix socket: the content type, unknown URLs and broken
requests (libnetwork-plugin v1.0's answers)."""

import asyncio
import json
import threading
from pathlib import Path

import pytest

from calisim.libnetwork import CONTENT_TYPE, PluginServer, call_plugin
from calisim.libnetwork.protocol import _UnixConnection

from tests.libnetwork.conftest import NETWORK

pytestmark = pytest.mark.emulation


def raw_post(path: Path, url: str, body: bytes) -> tuple[int, str, dict]:
    connection = _UnixConnection(path, 10)
    try:
        connection.request("POST", url, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        connection.close()


def test_content_type_unknown_urls_and_broken_requests(plugins):
    driver = plugins.driver
    socket_path = plugins.driver_socket
    assert raw_post(socket_path, "/Plugin.Activate", b"")[:2] == (200, CONTENT_TYPE)
    assert raw_post(socket_path, "/NetworkDriver.Bogus", b"{}")[0] == 404
    status, _, answer = raw_post(socket_path, "/NetworkDriver.CreateEndpoint", b"{not json")
    assert status == 500 and answer["Err"].startswith("Invalid JSON in request")
    assert raw_post(socket_path, "/NetworkDriver.CreateEndpoint", b"[1, 2]")[2] == {
        "Err": "The request body must be a JSON object"}
    assert driver("NetworkDriver.CreateEndpoint", {"NetworkID": NETWORK}) == (
        500, {"Err": "Missing or invalid EndpointID in request"})
    assert driver("Plugin.Activate") == (200, {"Implements": ["NetworkDriver"]})  # still serving


class Named:
    """A plugin that only says what it implements."""

    def __init__(self, implements: str):
        self.implements = implements

    def handlers(self) -> dict:
        return {}


def test_a_connection_is_kept_between_requests_and_a_restarted_plugin_is_asked_anew(tmp_path):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    path = tmp_path / "kept.sock"
    first = PluginServer(path, Named("First"), loop)
    first.start()
    try:
        for _ in range(3):
            assert call_plugin(path, "Plugin.Activate") == (200, {"Implements": ["First"]})
        assert len(first._open) == 1  # one connection served all three
        first.stop()
        second = PluginServer(path, Named("Second"), loop)
        second.start()
        assert call_plugin(path, "Plugin.Activate") == (200, {"Implements": ["Second"]})  # not the stopped one
        second.stop()
        with pytest.raises(OSError):
            call_plugin(path, "Plugin.Activate")
    finally:
        first.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
