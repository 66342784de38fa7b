"""What the plugin tests share: both plugins served over their unix sockets as the node agent
serves them, against a real etcd holding one pool and one Docker network."""

import asyncio
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from calisim.datastore import Datastore
from calisim.datastore.resources import IPPool
from calisim.datastore import keys
from calisim.datastore.resources.docker import Network
from calisim.libnetwork import IpamDriver, NetworkDriver, PluginServer, call_plugin

ENDPOINT = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2"


NETWORK = "9f8e7d6c5b4a"


POOL = IPPool(__import__("ipaddress").ip_network("10.10.0.0/16"), ipip=True, nat_outgoing=True)


@dataclass
class Plugins:
    driver_socket: Path
    ipam_socket: Path

    def driver(self, method: str, request: dict | None = None) -> tuple[int, dict]:
        return call_plugin(self.driver_socket, method, request)

    def ipam(self, method: str, request: dict | None = None) -> tuple[int, dict]:
        return call_plugin(self.ipam_socket, method, request)


@pytest.fixture
def plugins(etcd, ds):
    """Both plugins served as the node agent serves them: HTTP threads, handlers on an event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    directory = Path(tempfile.mkdtemp(prefix="cs-plugins-", dir="/tmp"))
    client = Datastore(etcd)
    servers = [PluginServer(directory / "calico.sock", NetworkDriver(client, "host1"), loop),
               PluginServer(directory / "calico-ipam.sock", IpamDriver(client, "host1"), loop)]
    for server in servers:
        server.start()
    ds.put(POOL.primary_key, POOL.to_value())
    ds.put(keys.docker_network(NETWORK), Network(NETWORK, "net1", "calico", "calico-ipam", "CalicoPoolIPv4", "0.0.0.0/0",
                                                 "0.0.0.0/0").to_value())
    try:
        yield Plugins(servers[0].path, servers[1].path)
    finally:
        for server in servers:
            server.stop()
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        shutil.rmtree(directory)

