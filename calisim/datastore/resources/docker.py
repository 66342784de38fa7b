"""Docker's records in its cluster store (dockerd --cluster-store: the same etcd): networks, which
every host's dockerd and Calico's network driver read, and endpoints, which the embedded DNS reads.

Stored as dockerd writes them here (the dataclass's fields, JSON), decoded here for every reader."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .. import keys


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

    @property
    def key(self) -> str:
        return keys.docker_network(self.id)

    def to_value(self) -> dict:
        return asdict(self)

    @classmethod
    def from_value(cls, value: dict) -> "Network":
        return cls(**value)

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["Network"]:
        """Every network stored in these keys (others are ignored)."""
        return [cls.from_value(value) for key, value in entries.items() if key.startswith(keys.DOCKER_NETWORKS)]


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
        return keys.docker_endpoints(self.network_id) + self.id

    @property
    def addresses(self) -> list[str]:
        """Its addresses without their prefix: IPv4, then IPv6 if it has one."""
        return [address.split("/")[0] for address in (self.address, self.address6) if address]

    def to_value(self) -> dict:
        return asdict(self)

    @classmethod
    def from_value(cls, value: dict) -> "Endpoint":
        return cls(**value)

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["Endpoint"]:
        """Every endpoint stored in these keys (others are ignored)."""
        return [cls.from_value(value) for key, value in entries.items() if key.startswith(keys.DOCKER_ENDPOINTS)]
