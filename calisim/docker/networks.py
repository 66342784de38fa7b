"""What `docker network create` asks for, as the Engine API carries it. The networks and endpoints
dockerd keeps in its cluster store (the hosts' etcd, as the seed's `cluster-store`) are stored
values: `calisim.datastore.resources.docker` decodes them."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    internal: bool = False  # --internal

    @classmethod
    def from_api(cls, body: dict) -> "NetworkRequest":
        ipam = body.get("IPAM") or {}
        configs = ipam.get("Config") or []
        v4 = next((c for c in configs if ":" not in (c.get("Subnet") or "")), {}) or {}
        v6 = next((c for c in configs if ":" in (c.get("Subnet") or "")), {}) or {}
        return cls(body["Name"], body.get("Driver") or "bridge", ipam.get("Driver") or "default",  # Docker's defaults
                   v4.get("Subnet") or None, v4.get("IPRange") or None, v4.get("Gateway") or None,
                   v4.get("AuxiliaryAddresses") or {}, ipam.get("Options") or {}, body.get("Options") or {},
                   body.get("Labels") or {}, bool(body.get("EnableIPv6")), v6.get("Subnet") or None,
                   bool(body.get("Internal")))

    def driver_options(self) -> dict:
        """The Options of the driver's CreateNetwork, as libnetwork fills them: the --opt map,
        IPv6, and the internal flag only when it is set (NetworkOptionInternalNetwork)."""
        internal = {"com.docker.network.internal": True} if self.internal else {}
        return {"com.docker.network.enable_ipv6": self.ipv6, "com.docker.network.generic": self.options, **internal}
