"""Partitions: a host cut off in the underlay (on the switch side of its uplink, never in
Felix's nftables table), from everything, from etcd's client port, or from some hosts; the eBPF
impair program on its links drops the traffic."""

from __future__ import annotations

from .base import FaultError, Partition
from .bpf import BpfImpairments


class PartitionFaults(BpfImpairments):
    """Hosts partitioned, and healed."""

    def partition(self, host: str, peers: list[str] | None = None, from_etcd: bool = False) -> None:
        """Cut host (a Calico host or an etcd member) off in the underlay: from everything, from
        etcd's client port, or from peers."""
        self._partitionable(host)
        peers = list(peers or [])
        if from_etcd and peers:
            raise FaultError("partition from etcd or from hosts, not both")
        if from_etcd and host in self.cluster.topo.etcd_nodes():
            raise FaultError(f"{host} runs etcd itself: partition it from the other hosts instead")
        for peer in peers:
            self._node(peer)
            if peer == host:
                raise FaultError(f"cannot partition {host} from itself")
        self.partitions[host] = Partition(peers, from_etcd)
        self._apply_partition(host)
        self._record(f"partition {host}" + (" --from etcd" if from_etcd else "".join(f" {p}" for p in peers)))

    def heal(self, host: str | None = None) -> None:
        """Lift the partition of host, or of every host."""
        if host is not None:
            self._partitionable(host)
            if host not in self.partitions:
                raise FaultError(f"{host} is not partitioned")
        for name in [host] if host else list(self.partitions):
            del self.partitions[name]
            self._apply_partition(name)
        self._record(f"heal {host or 'all'}")

    def _partitionable(self, host: str) -> None:
        if host not in self.cluster.topo.etcd_members():
            self._calico_host(host)

    def _apply_partition(self, host: str) -> None:
        for link in self._node_links(host):
            self._apply_bpf(self._impaired_end(link))
