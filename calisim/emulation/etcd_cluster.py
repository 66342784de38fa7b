"""The cluster's etcd: alone in the topology's etcd_host (as ever), or a real etcd cluster of 3
or 5 members on nodes etcd1..etcdN of their own (``--etcd-members``), each with its peer URL on
its node's address.  Every client is given every member: the hosts' ETCD_ENDPOINTS lists their
client URLs, the controller's datastore their unix sockets (calisim.datastore.etcd.parse_endpoint
says how a client fails over).  A mixin of Cluster, which gives it ``topo``, ``run_dir``,
``host`` and ``_await``."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from ..datastore import Datastore, DatastoreError, EtcdServer, Synchronous
from ..datastore.etcd import PEER_PORT
from ..process.daemon import stop_all
from . import sandbox

log = logging.getLogger("calisim")


class EtcdCluster:
    """etcd's members in a running cluster, by node."""

    etcd_processes: dict[str, subprocess.Popen]
    etcd_snapshot: Path | None = None  # set before start: every member begins with this snapshot's keys

    def _start_etcd(self) -> None:
        """etcd alone in etcd_host, or every member of the cluster at once (each waits for the
        others to elect a leader before it answers)."""
        nodes = self.topo.etcd_nodes()
        for node in nodes if self.etcd_snapshot is not None else ():
            self.etcd_server(node).restore(self.etcd_snapshot)
        for node in nodes:
            self.etcd_processes[node] = self.etcd_server(node).start(self.host(node).popen)
        for node in nodes:
            self._await(self.etcd_server(node), self.etcd_processes[node])
        log.info("etcd up in %s at %s", ", ".join(nodes), self.etcd_endpoint)

    @property
    def etcd_memory(self) -> Path:
        """Where every member keeps its data: a tmpfs (as kind's and CI's etcds do), so that a write
        waits on no disk's fsync; the data goes with the lab (its log stays in run_dir/etcd).
        Mounted before the hosts are made: a host's mount namespace sees the mounts it copied."""
        return self.run_dir.etcd / "memory"

    def etcd_server(self, node: str) -> EtcdServer:
        """The etcd of node: alone (in run_dir/etcd, as ever) or the cluster's member named node."""
        members = self.topo.etcd_members()
        data = self.etcd_memory / node
        if not members:
            return EtcdServer(self.topo.host_ip(node), self.run_dir.etcd, data=data)
        initial = ",".join(f"{member}=http://{self.topo.host_ip(member)}:{PEER_PORT}" for member in members)
        return EtcdServer(self.topo.host_ip(node), self.run_dir.etcd / node, member=node, initial_cluster=initial,
                          data=data)

    def start_etcd(self, node: str) -> None:
        """Start node's etcd again on its data (after a fault took it down)."""
        self.etcd_processes[node] = self.etcd_server(node).start(self.host(node).popen)
        self._await(self.etcd_server(node), self.etcd_processes[node])

    def restart_etcd(self) -> None:
        """Stop etcd (every member) and start it again on the same data: what every watcher must live through."""
        self._stop_etcd()
        self._start_etcd()

    def _stop_etcd(self, *alongside: subprocess.Popen) -> None:
        """Every member, and the processes alongside them, all signalled at once."""
        stop_all([process for process in self.etcd_processes.values() if process.poll() is None] + list(alongside))
        self.etcd_processes.clear()

    def _stop_etcd_for_good(self, *alongside: subprocess.Popen) -> None:
        """_stop_etcd at the lab's end, its data's memory given back."""
        self._stop_etcd(*alongside)
        sandbox.unmount_memory(self.etcd_memory)

    @property
    def etcd_endpoint(self) -> str:
        """ETCD_ENDPOINTS: every member's client URL."""
        return ",".join(self.etcd_server(node).endpoint for node in self.topo.etcd_nodes())

    @property
    def etcd_unix_endpoints(self) -> str:
        """Every member's unix socket, as one endpoint list (the controller never uses the network)."""
        return ",".join(self.etcd_server(node).unix_endpoint for node in self.topo.etcd_nodes())

    def etcd_leader(self) -> str | None:
        """The node whose member leads the etcd cluster now (etcd alone: etcd_host), as the first
        running member that answers sees it; None while there is no leader (or it is down)."""
        for node, process in self.etcd_processes.items():
            if process.poll() is None:
                try:
                    with Synchronous(Datastore(self.etcd_server(node).unix_endpoint)) as ds:
                        leader = ds.leader()
                except DatastoreError:
                    continue
                leader = node if leader == "calisim" else leader
                if leader is not None and self.etcd_processes[leader].poll() is None:
                    return leader  # not one just lost, that the others have not yet replaced
        return None
