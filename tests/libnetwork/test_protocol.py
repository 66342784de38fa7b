"""The plugins' HTTP protocol over a unix socket: the content type, unknown URLs and broken
requests (libnetwork-plugin v1.0's answers)."""

import json
from pathlib import Path

import pytest

from calisim.libnetwork import CONTENT_TYPE
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
