"""Calico's remote network driver `calico` (libnetwork-plugin v1.0's answers and error strings,
README "Docker in the hosts"): networks become profiles, endpoints become workloadEndpoints in etcd
and a veth pair whose host side Felix programs.  IPv6 as libnetwork-plugin v1.1.1 (PR 142):
`--ipv6` networks, AddressIPv6 on endpoints, and in Join the host side's link-local address as
the container's IPv6 gateway."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import Awaitable, Callable

from ..datastore import Datastore, Txn, keys
from ..datastore.resources import Profile, WorkloadEndpoint
from ..datastore.resources.docker import Network
from .protocol import Handler, PluginError, require

Programmed = Callable[[str, float], Awaitable[bool]]  # (host side interface, timeout) -> its dataplane is complete

ORCHESTRATOR = WORKLOAD = "libnetwork"
WORKLOAD_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY = "169.254.1.1"
ANY = "0.0.0.0/0"
ANY6 = "::/0"
ADDRESS_SPACE = "CalicoGlobalAddressSpace"  # the IPAM driver's only (global) address space
LINK_LOCAL_WAIT = 5.0  # seconds Join waits for the kernel to give the host side its fe80:: address
DATAPLANE_WAIT = 10.0  # seconds the endpoint waits for Felix's programming (then the container starts anyway)
log = logging.getLogger("calico-libnetwork")


def interface_names(endpoint_id: str) -> tuple[str, str]:
    """(host side, container side) of an endpoint's veth: cali<id11>, temp<id11>."""
    return f"cali{endpoint_id[:11]}", f"temp{endpoint_id[:11]}"


def endpoint_key(host: str, endpoint_id: str) -> str:
    return keys.workload_endpoint(host, ORCHESTRATOR, WORKLOAD, endpoint_id)


def network_profile(name: str) -> Profile:
    """The profile Calico creates for a Docker network: its members may talk to each other,
    and go anywhere."""
    return Profile(name, (name,), (), ({"action": "allow", "src_tag": name},), ({"action": "allow"},))


def profile_if_absent(profile: Profile) -> Txn:
    """A transaction that creates the profile if it is absent (if another host won the race to
    create it, its profile is the same); the caller adds what it writes either way."""
    create = Txn().require_absent(profile.primary_key)
    for key, value in profile.writes().items():
        create.put(key, value)
    return create


class NetworkDriver:
    """The `calico` remote network driver."""

    implements = "NetworkDriver"

    def __init__(self, ds: Datastore, host: str, programmed: Programmed | None = None):
        self.ds = ds
        self.host = host
        self.programmed = programmed  # this host's Felix, when it runs beside the plugin
        self.network_names: dict[str, str] = {}  # network ID -> name: an ID is never reused, nor its name changed
        self.ipv6_endpoints: dict[str, bool] = {}  # endpoint ID -> has an IPv6 address, from its CreateEndpoint
        self.dataplanes: dict[str, asyncio.Task] = {}  # endpoint ID -> the wait for Felix begun by its Join

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
            "NetworkDriver.ProgramExternalConnectivity": self.program_external_connectivity,
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
        if (request.get("Options") or {}).get("com.docker.network.internal") is True:
            raise PluginError("Calico driver does not support the --internal flag.")
        for data in request.get("IPv4Data") or []:
            if data.get("Gateway") != ANY:
                raise PluginError("Non-Calico IPAM driver is used")
        for data in request.get("IPv6Data") or []:
            if data.get("AddressSpace") != ADDRESS_SPACE:
                raise PluginError("Non-Calico IPAM driver is used")
        return {}

    async def network_name(self, network_id: str) -> str:
        """The network's name from the cluster store, read once per network: a round trip fewer
        on each of its later endpoints' way to running."""
        if network_id not in self.network_names:
            value = await self.ds.value(keys.docker_network(network_id))
            name = Network.from_value(value).name if value else ""
            if not name:
                raise PluginError(f"Network {network_id} is not known to Docker's cluster store")
            self.network_names[network_id] = name
        return self.network_names[network_id]

    async def create_endpoint(self, request: dict) -> dict:
        endpoint_id = require(request, "EndpointID")
        interface = request.get("Interface") or {}
        addresses = [ipaddress.ip_interface(a).ip
                     for a in (interface.get("Address"), interface.get("AddressIPv6")) if a]
        if not addresses:
            raise PluginError("No address assigned for endpoint")
        name = await self.network_name(require(request, "NetworkID"))
        endpoint = WorkloadEndpoint(self.host, ORCHESTRATOR, WORKLOAD, endpoint_id,
                                    tuple(f"{ip}/{ip.max_prefixlen}" for ip in addresses),
                                    interface_names(endpoint_id)[0], WORKLOAD_MAC, (name,))
        key, value = endpoint.primary_key, endpoint.to_value()
        await self.ds.commit(profile_if_absent(network_profile(name)).put(key, value).put_otherwise(key, value))
        self.ipv6_endpoints[endpoint_id] = bool(endpoint.ipv6_nets)
        return {"Interface": {"MacAddress": WORKLOAD_MAC.upper()}}

    async def delete_endpoint(self, request: dict) -> dict:
        endpoint_id = require(request, "EndpointID")
        self.ipv6_endpoints.pop(endpoint_id, None)
        await self.ds.commit(Txn().delete(endpoint_key(self.host, endpoint_id)))
        return {}

    async def has_ipv6(self, endpoint_id: str) -> bool:
        """Whether the endpoint has an IPv6 address: known from its CreateEndpoint, or (a plugin
        restarted between the two) read back from etcd."""
        if endpoint_id not in self.ipv6_endpoints:
            stored = await self.ds.value(endpoint_key(self.host, endpoint_id))
            endpoint = WorkloadEndpoint.from_value(self.host, ORCHESTRATOR, WORKLOAD, endpoint_id, stored or {})
            self.ipv6_endpoints[endpoint_id] = bool(endpoint.ipv6_nets)
        return self.ipv6_endpoints[endpoint_id]

    async def join(self, request: dict) -> dict:
        endpoint_id = require(request, "EndpointID")
        host_side, container_side = interface_names(endpoint_id)
        ipv6 = await self.has_ipv6(endpoint_id)
        await asyncio.to_thread(create_veth, host_side, container_side)
        self.dataplanes[endpoint_id] = asyncio.create_task(self.wait_for_dataplane(host_side))
        answer = {"InterfaceName": {"SrcName": container_side, "DstPrefix": "cali"}, "Gateway": GATEWAY,
                  "StaticRoutes": [{"Destination": f"{GATEWAY}/32", "RouteType": 1, "NextHop": ""}]}
        if ipv6:
            gateway6 = await asyncio.to_thread(link_local_address, host_side, container_side)
            answer["GatewayIPv6"] = gateway6
            answer["StaticRoutes"].append({"Destination": f"{gateway6}/128", "RouteType": 1, "NextHop": ""})
        return answer

    async def program_external_connectivity(self, request: dict) -> dict:
        """Answered only once Felix has programmed the endpoint (route, proxy ARP, policy and
        nat-outgoing): dockerd calls it after moving the interface into the container and before
        the container's command runs, so its first packet is neither delayed nor dropped nor sent
        un-NATed.  The wait began at Join, so Felix programs while dockerd moves the interface."""
        endpoint_id = request.get("EndpointID")
        if endpoint_id:
            waiting = self.dataplanes.pop(endpoint_id, None)  # none: this plugin restarted since the Join
            await (waiting or self.wait_for_dataplane(interface_names(endpoint_id)[0]))
        return {}

    async def wait_for_dataplane(self, host_side: str) -> None:
        """Until Felix has programmed the endpoint; a Felix that is late delays the container by
        DATAPLANE_WAIT at most."""
        if self.programmed is not None and not await self.programmed(host_side, DATAPLANE_WAIT):
            log.warning("Felix had not programmed %s within %.0fs; the container starts anyway",
                        host_side, DATAPLANE_WAIT)

    async def leave(self, request: dict) -> dict:
        endpoint_id = require(request, "EndpointID")
        waiting = self.dataplanes.pop(endpoint_id, None)  # a Join undone before the container started
        if waiting is not None:
            waiting.cancel()
        await asyncio.to_thread(delete_link, interface_names(endpoint_id)[0])
        return {}


def create_veth(host_side: str, container_side: str) -> None:
    """The endpoint's veth pair in this namespace: host side up, container side with Calico's MAC."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=host_side, kind="veth", peer={"ifname": container_side, "address": WORKLOAD_MAC})
        skip_duplicate_address_detection(host_side)
        ipr.link("set", index=ipr.link_lookup(ifname=host_side)[0], state="up")


def skip_duplicate_address_detection(name: str) -> None:
    """The host side's link-local address is the container's IPv6 gateway: left to DAD it stays
    tentative for a second or more and answers no neighbour solicitation, so a new container's
    IPv6 traffic waited that long.  Only this namespace has the address, so there is nothing to detect."""
    try:
        Path(f"/proc/sys/net/ipv6/conf/{name}/accept_dad").write_text("0")
    except FileNotFoundError:  # IPv6 disabled in this host
        pass


def link_local_address(name: str, peer_name: str) -> str:
    """The fe80:: address the kernel gives the host side once the veth has carrier (the other end
    is set up for that here, as libnetwork-plugin does; moving it into the container sets it down)."""
    import time

    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        (index,) = ipr.link_lookup(ifname=name)
        (peer,) = ipr.link_lookup(ifname=peer_name)
        ipr.link("set", index=peer, state="up")
        deadline = time.monotonic() + LINK_LOCAL_WAIT
        while time.monotonic() < deadline:
            for address in ipr.get_addr(family=10, index=index):
                if ipaddress.ip_address(address.get_attr("IFA_ADDRESS")).is_link_local:
                    return address.get_attr("IFA_ADDRESS")
            time.sleep(0.02)
    raise PluginError(f"{name} got no IPv6 link-local address within {LINK_LOCAL_WAIT:.0f}s")


def delete_link(name: str) -> None:
    """Delete the host side of an endpoint's veth.  Gone already is fine: when a container's
    network namespace goes (its last process exited), the kernel deletes the pair itself, and
    that may happen between the lookup and the delete."""
    import errno

    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        try:
            if indexes:
                ipr.link("del", index=indexes[0])
        except NetlinkError as error:
            if error.code != errno.ENODEV:
                raise
