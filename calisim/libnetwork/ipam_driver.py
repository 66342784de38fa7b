"""Calico's IPAM driver `calico-ipam` (libnetwork-plugin v1.0's answers):
one address space, Calico's pools behind one PoolID per IP version (IPv6 as libnetwork-plugin
v1.1.1 added it: CalicoPoolIPv6, "::/0", /128 addresses), addresses from calisim.ipam."""

from __future__ import annotations

import ipaddress
import logging

from ..datastore import Datastore
from ..ipam import IPAM, IPAMError, parse_ip
from .driver import ADDRESS_SPACE, ANY, ANY6
from .protocol import Handler, PluginError, require

CALICO_POOL_ID = "CalicoPoolIPv4"
CALICO_POOL_ID6 = "CalicoPoolIPv6"
log = logging.getLogger("calico-libnetwork")


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
                "GlobalDefaultAddressSpace": ADDRESS_SPACE}

    async def request_pool(self, request: dict) -> dict:
        if request.get("SubPool"):
            raise PluginError("Calico IPAM does not support sub pool configuration on 'docker create network'. "
                              "Calico IP Pools should be configured first and IP assignment is from those "
                              "pre-configured pools.")
        version = 6 if request.get("V6") else 4
        any_address = ANY6 if version == 6 else ANY
        data = {"com.docker.network.gateway": any_address}
        if not request.get("Pool"):
            return {"PoolID": CALICO_POOL_ID6 if version == 6 else CALICO_POOL_ID, "Pool": any_address, "Data": data}
        pools = {str(p.cidr) for p in await self.ipam.pools(enabled_only=False, version=version)}
        if request["Pool"] not in pools:
            raise PluginError("The requested subnet must match the CIDR of a configured Calico IP Pool.")
        return {"PoolID": request["Pool"], "Pool": request["Pool"], "Data": data}

    async def request_address(self, request: dict) -> dict:
        pool_id = request.get("PoolID") or CALICO_POOL_ID
        version = 6 if pool_id == CALICO_POOL_ID6 or ":" in pool_id else 4
        try:
            if request.get("Address"):
                assigned = [await self.ipam.assign_ip(parse_ip(request["Address"]), self.host)]
            else:
                pools = None
                if pool_id not in (CALICO_POOL_ID, CALICO_POOL_ID6):
                    cidr = ipaddress.ip_network(pool_id)
                    if cidr not in {p.cidr for p in await self.ipam.pools(version=version)}:
                        raise PluginError("The network references a Calico pool which has been deleted. "
                                          "Please re-instate the Calico pool before using the network.")
                    pools = [cidr]
                assigned = await self.ipam.auto_assign(self.host, 1, pools, version=version)
        except IPAMError as error:
            raise PluginError(str(error)) from None
        if len(assigned) != 1:
            raise PluginError("Unexpected number of assigned IP addresses. A single address should be "
                              f"assigned. Got [{' '.join(map(str, assigned))}]")
        return {"Address": f"{assigned[0]}/{assigned[0].max_prefixlen}", "Data": {}}

    async def release_address(self, request: dict) -> dict:
        try:
            await self.ipam.release_ips([ipaddress.ip_interface(require(request, "Address")).ip])
        except (IPAMError, ValueError) as error:
            raise PluginError(f"Invalid address {request.get('Address')!r}: {error}") from None
        return {}
