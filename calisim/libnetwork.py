"""Calico's libnetwork plugins: the remote network driver `calico` and the IPAM driver
`calico-ipam`, speaking Docker's plugin protocol (HTTP POST + JSON over unix sockets) with
Calico v1.0's answers and error strings (calico-v1.md section 2).

The node agent serves both in each host's /run/docker/plugins.  The HTTP layer is the standard
library's server in a thread; every request runs as a coroutine on the agent's event loop, where
the datastore and IPAM clients live.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import logging
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import keys
from .datastore import Datastore, Txn
from .ipam import IPAM, IPAMError, parse_ipv4
from .resources import Profile

CONTENT_TYPE = "application/vnd.docker.plugins.v1.1+json"
ORCHESTRATOR = WORKLOAD = "libnetwork"
WORKLOAD_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY = "169.254.1.1"
ANY = "0.0.0.0/0"
CALICO_POOL_ID = "CalicoPoolIPv4"
DOCKER_NETWORKS = "/docker/network/v1.0/network/"  # where Docker's cluster-store keeps networks
REQUEST_TIMEOUT = 30.0
log = logging.getLogger("calico-libnetwork")

Handler = Callable[[dict], Awaitable[dict]]


class PluginError(Exception):
    """Answered as HTTP 500 {"Err": message}, as libnetwork expects."""


def interface_names(endpoint_id: str) -> tuple[str, str]:
    """(host side, container side) of an endpoint's veth: cali<id11>, temp<id11>."""
    return f"cali{endpoint_id[:11]}", f"temp{endpoint_id[:11]}"


def endpoint_key(host: str, endpoint_id: str) -> str:
    return f"{keys.host(host)}workload/{ORCHESTRATOR}/{WORKLOAD}/endpoint/{endpoint_id}"


def network_profile(name: str) -> Profile:
    """The profile Calico creates for a Docker network: its members may talk to each other,
    and go anywhere."""
    return Profile(name, (name,), (), ({"action": "allow", "src_tag": name},), ({"action": "allow"},))


class NetworkDriver:
    """The `calico` remote network driver."""

    implements = "NetworkDriver"

    def __init__(self, ds: Datastore, host: str):
        self.ds = ds
        self.host = host

    def handlers(self) -> dict[str, Handler]:
        nothing = self._nothing
        return {
            "NetworkDriver.GetCapabilities": self._capabilities,
            "NetworkDriver.CreateNetwork": self.create_network,
            "NetworkDriver.DeleteNetwork": nothing,
            "NetworkDriver.CreateEndpoint": self.create_endpoint,
            "NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "NetworkDriver.EndpointOperInfo": self._oper_info,
            "NetworkDriver.Join": self.join,
            "NetworkDriver.Leave": self.leave,
            "NetworkDriver.DiscoverNew": nothing,
            "NetworkDriver.DiscoverDelete": nothing,
            "NetworkDriver.ProgramExternalConnectivity": nothing,
            "NetworkDriver.RevokeExternalConnectivity": nothing,
        }

    async def _nothing(self, request: dict) -> dict:
        return {}

    async def _capabilities(self, request: dict) -> dict:
        return {"Scope": "global"}

    async def _oper_info(self, request: dict) -> dict:
        return {"Value": {}}

    async def create_network(self, request: dict) -> dict:
        generic = (request.get("Options") or {}).get("com.docker.network.generic") or {}
        if generic:
            raise PluginError("Arbitrary options are not supported")
        for data in request.get("IPv4Data") or []:
            if data.get("Gateway") != ANY:
                raise PluginError("Non-Calico IPAM driver is used")
        return {}

    async def network_name(self, network_id: str) -> str:
        network = await self.ds.value(DOCKER_NETWORKS + network_id)
        if not network or not network.get("name"):
            raise PluginError(f"Network {network_id} is not known to Docker's cluster store")
        return network["name"]

    async def create_endpoint(self, request: dict) -> dict:
        endpoint_id = require(request, "EndpointID")
        address = (request.get("Interface") or {}).get("Address")
        if not address:
            raise PluginError("No address assigned for endpoint")
        ip = ipaddress.ip_interface(address).ip
        name = await self.network_name(require(request, "NetworkID"))
        txn = Txn().put(endpoint_key(self.host, endpoint_id), {
            "state": "active", "name": interface_names(endpoint_id)[0], "mac": WORKLOAD_MAC,
            "profile_ids": [name], "ipv4_nets": [f"{ip}/32"], "ipv6_nets": []})
        await self.ds.commit(txn)
        profile = network_profile(name)
        if await self.ds.get(profile.primary_key) is None:
            create = Txn().require_absent(profile.primary_key)
            for key, value in profile.writes().items():
                create.put(key, value)
            await self.ds.commit(create)  # if another host won the race, its profile is the same
        return {"Interface": {"MacAddress": WORKLOAD_MAC.upper()}}

    async def delete_endpoint(self, request: dict) -> dict:
        await self.ds.commit(Txn().delete(endpoint_key(self.host, require(request, "EndpointID"))))
        return {}

    async def join(self, request: dict) -> dict:
        host_side, container_side = interface_names(require(request, "EndpointID"))
        await asyncio.to_thread(create_veth, host_side, container_side)
        return {"InterfaceName": {"SrcName": container_side, "DstPrefix": "cali"}, "Gateway": GATEWAY,
                "StaticRoutes": [{"Destination": f"{GATEWAY}/32", "RouteType": 1, "NextHop": ""}]}

    async def leave(self, request: dict) -> dict:
        await asyncio.to_thread(delete_link, interface_names(require(request, "EndpointID"))[0])
        return {}


class IpamDriver:
    """The `calico-ipam` IPAM driver."""

    implements = "IpamDriver"

    def __init__(self, ds: Datastore, host: str):
        self.ds = ds
        self.host = host
        self.ipam = IPAM(ds)

    def handlers(self) -> dict[str, Handler]:
        return {
            "IpamDriver.GetCapabilities": self._capabilities,
            "IpamDriver.GetDefaultAddressSpaces": self._address_spaces,
            "IpamDriver.RequestPool": self.request_pool,
            "IpamDriver.ReleasePool": self._nothing,
            "IpamDriver.RequestAddress": self.request_address,
            "IpamDriver.ReleaseAddress": self.release_address,
        }

    async def _nothing(self, request: dict) -> dict:
        return {}

    async def _capabilities(self, request: dict) -> dict:
        return {}

    async def _address_spaces(self, request: dict) -> dict:
        return {"LocalDefaultAddressSpace": "CalicoLocalAddressSpace",
                "GlobalDefaultAddressSpace": "CalicoGlobalAddressSpace"}

    async def request_pool(self, request: dict) -> dict:
        if request.get("SubPool"):
            raise PluginError("Calico IPAM does not support sub pool configuration on 'docker create network'. "
                              "Calico IP Pools should be configured first and IP assignment is from those "
                              "pre-configured pools.")
        if request.get("V6"):
            raise PluginError("IPv6 isn't supported")
        data = {"com.docker.network.gateway": ANY}
        if not request.get("Pool"):
            return {"PoolID": CALICO_POOL_ID, "Pool": ANY, "Data": data}
        pools = {str(p.cidr) for p in await self.ipam.pools(enabled_only=False)}
        if request["Pool"] not in pools:
            raise PluginError("The requested subnet must match the CIDR of a configured Calico IP Pool.")
        return {"PoolID": request["Pool"], "Pool": request["Pool"], "Data": data}

    async def request_address(self, request: dict) -> dict:
        pool_id = request.get("PoolID") or CALICO_POOL_ID
        try:
            if request.get("Address"):
                assigned = [await self.ipam.assign_ip(parse_ipv4(request["Address"]), self.host)]
            else:
                pools = None
                if pool_id != CALICO_POOL_ID:
                    cidr = ipaddress.ip_network(pool_id)
                    if cidr not in {p.cidr for p in await self.ipam.pools()}:
                        raise PluginError("The network references a Calico pool which has been deleted. "
                                          "Please re-instate the Calico pool before using the network.")
                    pools = [cidr]
                assigned = await self.ipam.auto_assign(self.host, 1, pools)
        except IPAMError as error:
            raise PluginError(str(error)) from None
        if len(assigned) != 1:
            raise PluginError("Unexpected number of assigned IP addresses. A single address should be "
                              f"assigned. Got [{' '.join(map(str, assigned))}]")
        return {"Address": f"{assigned[0]}/32", "Data": {}}

    async def release_address(self, request: dict) -> dict:
        try:
            await self.ipam.release_ips([ipaddress.ip_interface(require(request, "Address")).ip])
        except (IPAMError, ValueError) as error:
            raise PluginError(f"Invalid address {request.get('Address')!r}: {error}") from None
        return {}


def require(request: dict, field: str) -> str:
    value = request.get(field)
    if not value or not isinstance(value, str):
        raise PluginError(f"Missing or invalid {field} in request")
    return value


def create_veth(host_side: str, container_side: str) -> None:
    """The endpoint's veth pair in this namespace: host side up, container side with Calico's MAC."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=host_side, kind="veth", peer={"ifname": container_side, "address": WORKLOAD_MAC})
        ipr.link("set", index=ipr.link_lookup(ifname=host_side)[0], state="up")


def delete_link(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if indexes:
            ipr.link("del", index=indexes[0])


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 refuses the docker CLI's parallel requests (rm -f a b c ...)


class PluginServer:
    """One plugin on one unix socket: standard-library HTTP in a thread, handlers on the loop."""

    def __init__(self, path: Path, plugin: NetworkDriver | IpamDriver, loop: asyncio.AbstractEventLoop):
        self.path = Path(path)
        self.plugin = plugin
        self.loop = loop
        self.handlers = {"Plugin.Activate": self._activate, **plugin.handlers()}
        self._server: _UnixHTTPServer | None = None

    async def _activate(self, request: dict) -> dict:
        return {"Implements": [self.plugin.implements]}

    def answer(self, url: str, body: bytes) -> tuple[int, dict]:
        """(HTTP status, JSON answer) for a POST of body to url; called from the server's threads."""
        handler = self.handlers.get(url.lstrip("/"))
        if handler is None:
            return 404, {"Err": f"404 page not found: {url}"}
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise PluginError("The request body must be a JSON object")
            future = asyncio.run_coroutine_threadsafe(handler(request), self.loop)
            return 200, future.result(REQUEST_TIMEOUT)
        except json.JSONDecodeError as error:
            return 500, {"Err": f"Invalid JSON in request: {error}"}
        except PluginError as error:
            log.warning("%s: %s", url, error)
            return 500, {"Err": str(error)}
        except Exception as error:  # a broken request must get an answer, and the plugin must live on
            log.exception("%s failed", url)
            return 500, {"Err": f"{type(error).__name__}: {error}"}

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = server.answer(self.path, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.path, *args)

        self._server = _UnixHTTPServer(str(self.path), Handler)
        threading.Thread(target=self._server.serve_forever, name=f"plugin {self.path.name}", daemon=True).start()
        os.chmod(self.path, 0o660)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.path.unlink(missing_ok=True)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def call_plugin(path: Path, method: str, request: dict | None = None, timeout: float = REQUEST_TIMEOUT) -> tuple[int, dict]:
    """POST a plugin request as libnetwork does; returns (HTTP status, decoded answer)."""
    connection = _UnixConnection(path, timeout)
    try:
        body = json.dumps(request or {}).encode()
        connection.request("POST", f"/{method}", body, {"Content-Type": "application/json",
                                                         "Accept": CONTENT_TYPE})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()
