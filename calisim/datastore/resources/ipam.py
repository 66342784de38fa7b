"""IPAM's stored values (as libcalico-go v1.0 stores them): allocation blocks, handles
and the IPAM config.  calisim.ipam changes them; Felix's VXLAN part reads blocks' affinities."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .base import IPNetwork

BLOCK_PREFIXES = {4: 26, 6: 122}  # Calico's block sizes: 64 addresses in either version
BLOCK_SIZE = 64


@dataclass
class AllocationBlock:
    """One block as stored: who it is affine to, which ordinals are taken (an index into
    attributes each), the FIFO of free ones."""

    cidr: IPNetwork
    affinity: str | None  # "host:<name>", or None
    allocations: list[int | None]
    unallocated: list[int]
    attributes: list[dict] = field(default_factory=list)  # {"handle_id", "secondary"}

    @classmethod
    def new(cls, cidr: IPNetwork, host: str | None):
        return cls(cidr, f"host:{host}" if host else None, [None] * BLOCK_SIZE, list(range(BLOCK_SIZE)))

    @classmethod
    def from_value(cls, value: dict):
        return cls(ipaddress.ip_network(value["cidr"]), value.get("affinity"), list(value["allocations"]),
                   list(value["unallocated"]), list(value.get("attributes") or []))

    def to_value(self) -> dict:
        return {"cidr": str(self.cidr), "affinity": self.affinity, "allocations": self.allocations,
                "unallocated": self.unallocated, "attributes": self.attributes}

    @staticmethod
    def host_of(value: dict) -> str | None:
        """The affine host of a stored block, without decoding the rest (Felix reads every block)."""
        affinity = value.get("affinity")
        return affinity[len("host:"):] if affinity and affinity.startswith("host:") else None

    @property
    def host(self) -> str | None:
        return self.host_of({"affinity": self.affinity})

    @property
    def empty(self) -> bool:
        return len(self.unallocated) == BLOCK_SIZE

    def ip(self, ordinal: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.cidr.network_address + ordinal

    def ordinal(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
        return int(ip) - int(self.cidr.network_address)

    def attributes_of(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> dict | None:
        index = self.allocations[self.ordinal(ip)]
        return None if index is None else self.attributes[index]


@dataclass(frozen=True)
class IPAMConfig:
    """/calico/ipam/v2/config; Calico's defaults when it is not stored."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True

    def to_value(self) -> dict:
        return {"strict_affinity": self.strict_affinity, "auto_allocate_blocks": self.auto_allocate_blocks}

    @classmethod
    def from_value(cls, value: Any) -> "IPAMConfig":
        value = value or {}
        return cls(bool(value.get("strict_affinity", False)), bool(value.get("auto_allocate_blocks", True)))


def handle_to_value(blocks: dict[str, int]) -> dict:
    """A handle (/calico/ipam/v2/handle/<id>) as stored: how many of its addresses each block holds."""
    return {"block": blocks}


def handle_from_value(value: Any) -> dict[str, int]:
    return dict((value or {}).get("block", {}))
