"""Endpoint resources: workloadEndpoint, written by the libnetwork plugin and only read by calicoctl."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .. import keys
from ..etcd import Datastore
from .base import Resource, ValidationError


@dataclass(frozen=True)
class WorkloadEndpoint(Resource):
    """A workload's endpoint, as the libnetwork plugin stored it: shown, never written by calicoctl."""

    kind: ClassVar[str] = "workloadEndpoint"
    aliases: ClassVar[tuple[str, ...]] = ("workloadendpoint", "workloadendpoints", "wep", "weps")
    ps_columns: ClassVar[tuple[str, ...]] = ("NODE", "ORCHESTRATOR", "WORKLOAD", "NAME")
    wide_columns: ClassVar[tuple[str, ...]] = ps_columns + ("NETWORKS", "NATS", "INTERFACE", "PROFILES")

    node: str
    orchestrator: str
    workload: str
    endpoint: str
    networks: tuple[str, ...] = ()
    interface: str = ""
    mac: str = ""
    profiles: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, doc: dict) -> "WorkloadEndpoint":
        raise ValidationError("workloadEndpoint resources are managed by the libnetwork plugin; calicoctl only reads them")

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
        return f"{keys.host(self.node)}workload/{self.orchestrator}/{self.workload}/endpoint/{self.endpoint}"

    def writes(self) -> dict[str, Any]:
        raise ValidationError("workloadEndpoint resources are read-only")

    def row(self, wide: bool, context: dict) -> list[str]:
        row = [self.node, self.orchestrator, self.workload, self.endpoint]
        return row + [",".join(self.networks), "", self.interface, ",".join(self.profiles)] if wide else row

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["WorkloadEndpoint"]:
        endpoints = []
        for entry in await ds.list(keys.HOSTS):
            parts = entry.key[len(keys.HOSTS):].split("/")
            if len(parts) == 6 and parts[1] == "workload" and parts[4] == "endpoint" and entry.value:
                endpoints.append(cls(parts[0], parts[2], parts[3], parts[5], tuple(entry.value.get("ipv4_nets", [])),
                                     entry.value.get("name", ""), entry.value.get("mac", ""),
                                     tuple(entry.value.get("profile_ids", []))))
        return endpoints
