"""Docker's networks and endpoints as dockerd keeps them in its cluster store (the hosts' etcd,
as the seed's `cluster-store`): what `docker network create` asks for, and what the CNM flow
(cnm.py) stores and the embedded DNS server (resolver.py) reads back on every host."""

from __future__ import annotations

from dataclasses import dataclass, field

DOCKER_ENDPOINTS = "/docker/network/v1.0/endpoint/"  # where Docker's cluster store keeps endpoints


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    ipam_driver: str
    pool_id: str
    pool: str
    gateway: str
    created: str = ""  # RFC 3339, as Docker reports it
    ip_range: str = ""
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    aux_addresses: dict = field(default_factory=dict)  # name -> a.b.c.d/len, reserved in the pool
    pool_id6: str = ""  # `--ipv6`: the IPv6 pool the IPAM driver gave (empty: an IPv4-only network)
    pool6: str = ""


@dataclass(frozen=True)
class NetworkRequest:
    """`docker network create` as the Engine API carries it."""
    name: str
    driver: str = "calico"
    ipam_driver: str = "calico-ipam"
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict = field(default_factory=dict)
    ipam_options: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # --opt: the driver's generic options
    labels: dict = field(default_factory=dict)
    ipv6: bool = False
    subnet6: str | None = None  # an IPv6 --subnet: must be a Calico pool

    @classmethod
    def from_api(cls, body: dict) -> "NetworkRequest":
        ipam = body.get("IPAM") or {}
        configs = ipam.get("Config") or []
        v4 = next((c for c in configs if ":" not in (c.get("Subnet") or "")), {}) or {}
        v6 = next((c for c in configs if ":" in (c.get("Subnet") or "")), {}) or {}
        return cls(body["Name"], body.get("Driver") or "calico", ipam.get("Driver") or "calico-ipam",
                   v4.get("Subnet") or None, v4.get("IPRange") or None, v4.get("Gateway") or None,
                   v4.get("AuxiliaryAddresses") or {}, ipam.get("Options") or {}, body.get("Options") or {},
                   body.get("Labels") or {}, bool(body.get("EnableIPv6")), v6.get("Subnet") or None)


@dataclass(frozen=True)
class Endpoint:
    id: str
    network_id: str
    container: str
    address: str  # a.b.c.d/32
    mac: str
    sandbox_pid: int
    address6: str = ""  # <ipv6>/128 on an --ipv6 network

    @property
    def key(self) -> str:
        """Where Docker's cluster store keeps the endpoint."""
        return f"{DOCKER_ENDPOINTS}{self.network_id}/{self.id}"

    @property
    def addresses(self) -> list[str]:
        """Its addresses without their prefix: IPv4, then IPv6 if it has one."""
        return [address.split("/")[0] for address in (self.address, self.address6) if address]
