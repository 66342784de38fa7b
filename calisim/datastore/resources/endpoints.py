"""Endpoint resources: workloadEndpoint (written by the libnetwork plugin, only read by calicoctl)
and hostEndpoint (a host's own interface under policy, written by calicoctl, read by Felix)."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .. import keys
from .base import (Resource, ValidationError, check_fields, parse_interface_name, parse_ip, parse_labels, parse_name,
                   parse_string_list)

if TYPE_CHECKING:  # annotations only: validation must not import the etcd client
    from ..etcd import Datastore


@functools.lru_cache(maxsize=16384)
def network_address(network: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address of a stored a.b.c.d/32 or x::y/128.  Felix's every policy pass reads every
    endpoint's addresses, each parsed anew: at 100 hosts, three quarters of a pass's Python, on
    every host at once after each change."""
    return ipaddress.ip_interface(network).ip


@dataclass(frozen=True)
class WorkloadEndpoint(Resource):
    """A workload's endpoint, as the libnetwork plugin stored it: shown, never written by calicoctl.
    Felix programs the interface from it and matches its addresses in policy."""

    kind: ClassVar[str] = "workloadEndpoint"
    aliases: ClassVar[tuple[str, ...]] = ("workloadendpoint", "workloadendpoints", "wep", "weps")
    ps_columns: ClassVar[tuple[str, ...]] = ("NODE", "ORCHESTRATOR", "WORKLOAD", "NAME")
    wide_columns: ClassVar[tuple[str, ...]] = ps_columns + ("NETWORKS", "NATS", "INTERFACE", "PROFILES")
    columns: ClassVar[tuple[str, ...]] = ps_columns + ("NETWORKS", "NATS", "IPV4GATEWAY", "IPV6GATEWAY", "PROFILES",
                                                       "INTERFACE", "MAC")

    node: str
    orchestrator: str
    workload: str
    endpoint: str
    networks: tuple[str, ...] = ()  # a.b.c.d/32 and x::y/128: ipv4_nets, then ipv6_nets
    interface: str = ""
    mac: str = ""
    profiles: tuple[str, ...] = ()
    state: str = "active"

    @classmethod
    def from_document(cls, doc: dict) -> "WorkloadEndpoint":
        raise ValidationError("workloadEndpoint resources are managed by the libnetwork plugin; "
                              "calicoctl only reads them")

    def document(self) -> dict:
        return self._wrap({"node": self.node, "orchestrator": self.orchestrator, "workload": self.workload,
                           "name": self.endpoint, "labels": {}},
                          {"interfaceName": self.interface, "mac": self.mac, "ipNetworks": list(self.networks),
                           "profiles": list(self.profiles)})

    @property
    def ident(self) -> str:
        return f"WorkloadEndpoint(node={self.node}, name={self.endpoint})"

    @property
    def name(self) -> str:
        return self.endpoint

    @property
    def primary_key(self) -> str:
        return keys.workload_endpoint(self.node, self.orchestrator, self.workload, self.endpoint)

    @property
    def active(self) -> bool:
        """Felix programs and matches only active endpoints (Calico v1's state field)."""
        return self.state == "active"

    @property
    def addresses(self) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        return tuple(network_address(net) for net in self.networks)

    @property
    def ipv4_nets(self) -> list[str]:
        return [net for net in self.networks if ":" not in net]

    @property
    def ipv6_nets(self) -> list[str]:
        return [net for net in self.networks if ":" in net]

    def to_value(self) -> dict:
        """The stored value, as libnetwork-plugin v1.0 writes it."""
        return {"state": self.state, "name": self.interface, "mac": self.mac, "profile_ids": list(self.profiles),
                "ipv4_nets": self.ipv4_nets, "ipv6_nets": self.ipv6_nets}

    @classmethod
    def from_value(cls, node: str, orchestrator: str, workload: str, endpoint: str, value: dict) -> "WorkloadEndpoint":
        return cls(node, orchestrator, workload, endpoint,
                   (*(value.get("ipv4_nets") or ()), *(value.get("ipv6_nets") or ())),
                   value.get("name", ""), value.get("mac", ""), tuple(value.get("profile_ids") or ()),
                   value.get("state", "active"))

    def writes(self) -> dict[str, Any]:
        raise ValidationError("workloadEndpoint resources are read-only")

    def cells(self, context: dict) -> dict[str, str]:
        return {"NODE": self.node, "ORCHESTRATOR": self.orchestrator, "WORKLOAD": self.workload, "NAME": self.endpoint,
                "NETWORKS": ",".join(self.networks), "NATS": "", "IPV4GATEWAY": "<nil>", "IPV6GATEWAY": "<nil>",
                "PROFILES": ",".join(self.profiles), "INTERFACE": self.interface, "MAC": self.mac}

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["WorkloadEndpoint"]:
        """Every workload endpoint stored in these keys, in key order (others are ignored): what
        calicoctl and Felix read."""
        endpoints = []
        for key in sorted(k for k in entries if "/workload/" in k and k.startswith(keys.HOSTS)):
            parts = keys.split_host_key(key)
            if len(parts) == 6 and parts[1] == "workload" and parts[4] == "endpoint" and entries[key]:
                endpoints.append(cls.from_value(parts[0], parts[2], parts[3], parts[5], entries[key]))
        return endpoints

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["WorkloadEndpoint"]:
        return cls.from_entries({entry.key: entry.value for entry in await ds.list(keys.HOSTS)})


@dataclass(frozen=True)
class HostEndpoint(Resource):
    """One of a host's own interfaces (or its expected addresses) under Calico policy: Felix
    applies the policies selecting it and its profiles to traffic into and out of the host."""

    kind: ClassVar[str] = "hostEndpoint"
    aliases: ClassVar[tuple[str, ...]] = ("hostendpoint", "hostendpoints", "hep", "heps")
    ps_columns: ClassVar[tuple[str, ...]] = ("NODE", "NAME")
    wide_columns: ClassVar[tuple[str, ...]] = ("NODE", "NAME", "INTERFACE", "IPS", "PROFILES")
    columns: ClassVar[tuple[str, ...]] = wide_columns

    node: str
    endpoint: str
    interface: str = ""
    expected_ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    profiles: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_document(cls, doc: dict) -> "HostEndpoint":
        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("name", "node", "labels"), "hostEndpoint metadata", required=("name", "node"))
        check_fields(spec, ("interfaceName", "expectedIPs", "profiles"), "hostEndpoint spec")
        interface = spec.get("interfaceName") or ""
        expected = parse_string_list(spec.get("expectedIPs"), "hostEndpoint spec.expectedIPs")
        if not interface and not expected:
            raise ValidationError("hostEndpoint spec: either interfaceName or expectedIPs must be specified")
        return cls(parse_name(metadata["node"], "hostEndpoint metadata.node"),
                   parse_name(metadata["name"], "hostEndpoint metadata.name"),
                   parse_interface_name(interface, "hostEndpoint spec.interfaceName") if interface else "",
                   tuple(parse_ip(ip, "hostEndpoint spec.expectedIPs") for ip in expected),
                   tuple(parse_name(p, "hostEndpoint spec.profiles")
                         for p in parse_string_list(spec.get("profiles"), "hostEndpoint spec.profiles")),
                   tuple(sorted(parse_labels(metadata.get("labels"), "hostEndpoint metadata.labels").items())))

    def document(self) -> dict:
        metadata: dict[str, Any] = {"name": self.endpoint, "node": self.node}
        if self.labels:
            metadata["labels"] = dict(self.labels)
        spec: dict[str, Any] = {}
        if self.interface:
            spec["interfaceName"] = self.interface
        if self.expected_ips:
            spec["expectedIPs"] = [str(ip) for ip in self.expected_ips]
        if self.profiles:
            spec["profiles"] = list(self.profiles)
        return self._wrap(metadata, spec)

    @property
    def ident(self) -> str:
        return f"HostEndpoint(node={self.node}, name={self.endpoint})"

    @property
    def name(self) -> str:
        return self.endpoint

    @property
    def primary_key(self) -> str:
        return keys.host_endpoint(self.node, self.endpoint)

    def to_value(self) -> dict:
        """Felix's form of the endpoint (the v1 datastore's field names)."""
        return {"name": self.interface,
                "expected_ipv4_addrs": [str(ip) for ip in self.expected_ips if ip.version == 4],
                "expected_ipv6_addrs": [str(ip) for ip in self.expected_ips if ip.version == 6],
                "profile_ids": list(self.profiles), "labels": dict(self.labels)}

    @classmethod
    def from_value(cls, node: str, name: str, value: dict) -> "HostEndpoint":
        addresses = value.get("expected_ipv4_addrs", []) + value.get("expected_ipv6_addrs", [])
        return cls(node, name, value.get("name") or "", tuple(ipaddress.ip_address(a) for a in addresses),
                   tuple(value.get("profile_ids", [])), tuple(sorted((value.get("labels") or {}).items())))

    def writes(self) -> dict[str, Any]:
        return {self.primary_key: self.to_value()}

    def cells(self, context: dict) -> dict[str, str]:
        return {"NODE": self.node, "NAME": self.endpoint, "INTERFACE": self.interface,
                "IPS": ",".join(str(ip) for ip in self.expected_ips), "PROFILES": ",".join(self.profiles)}

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["HostEndpoint"]:
        """Every host endpoint stored in these keys (others are ignored): what calicoctl and Felix read."""
        endpoints = []
        for key in sorted(k for k in entries if "/endpoint/" in k and k.startswith(keys.HOSTS)):
            parts = keys.split_host_key(key)
            if len(parts) == 3 and parts[1] == "endpoint" and isinstance(entries[key], dict):
                endpoints.append(cls.from_value(parts[0], parts[2], entries[key]))
        return endpoints

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["HostEndpoint"]:
        return cls.from_entries({entry.key: entry.value for entry in await ds.list(keys.HOSTS)})
