"""Docker's records in its cluster store (dockerd --cluster-store: the same etcd): networks, which
every host's dockerd and Calico's network driver read, and endpoints, which the embedded DNS reads.

Stored as dockerd writes them here (the dataclass's fields, JSON), decoded here for every reader."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from .. import keys

R = TypeVar("R", bound="Record")


class Record:
    """A dataclass stored as its fields, under its kind's prefix."""

    prefix: ClassVar[str]

    def to_value(self) -> dict:
        return asdict(self)

    @classmethod
    def from_value(cls: type[R], value: dict) -> R:
        return cls(**value)

    @classmethod
    def from_entries(cls: type[R], entries: dict[str, Any]) -> list[R]:
        """Every record of the kind stored in these keys (others are ignored)."""
        return [cls.from_value(value) for key, value in entries.items() if key.startswith(cls.prefix)]


@dataclass(frozen=True)
class Network(Record):
    prefix: ClassVar[str] = keys.DOCKER_NETWORKS

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
    user_subnet: bool = False  # --subnet given: Docker's built-in IPAM takes --ip only then (a bridge network)

    @property
    def key(self) -> str:
        return keys.docker_network(self.id)


@dataclass(frozen=True)
class Endpoint(Record):
    prefix: ClassVar[str] = keys.DOCKER_ENDPOINTS

    id: str
    network_id: str
    container: str
    address: str  # a.b.c.d/32
    mac: str
    sandbox_pid: int
    address6: str = ""  # <ipv6>/128 on an --ipv6 network
    aliases: tuple[str, ...] = ()  # --network-alias, and the container's short ID: names it also answers to

    @classmethod
    def from_value(cls, value: dict) -> "Endpoint":
        return cls(**{**value, "aliases": tuple(value.get("aliases") or ())})

    @property
    def names(self) -> list[str]:
        """Every name the embedded DNS server answers for it: the container's, then its aliases."""
        return [self.container, *self.aliases]

    @property
    def key(self) -> str:
        """Where Docker's cluster store keeps the endpoint."""
        return keys.docker_endpoints(self.network_id) + self.id

    @property
    def addresses(self) -> list[str]:
        """Its addresses without their prefix: IPv4, then IPv6 if it has one."""
        return [address.split("/")[0] for address in (self.address, self.address6) if address]
