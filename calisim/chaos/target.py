"""What chaos acts on: a running lab, reached only as every other lab command reaches it (its
control socket for commands, faults and `inspect`), plus the lab's etcd over the unix sockets
in its run directory, for the datastore's side of the invariants."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import topologies

from ..datastore import Datastore, Synchronous
from ..datastore.etcd import CLIENT_PORT
from ..emulation import lab
from ..emulation.cluster import CommandResult

LEADER = re.compile(r"\((\S+) led the etcd cluster\)")


@dataclass
class LabTarget:
    """One lab: its Calico hosts, each host's uplink (the link a link or loss fault breaks) and
    its etcd members."""

    record: lab.LabRecord
    hosts: list[str] = field(init=False)
    uplinks: dict[str, str] = field(init=False)
    etcd_host: str = field(init=False)
    etcd_members: list[str] = field(init=False)

    def __post_init__(self) -> None:
        topo = topologies.load(self.record.topology, **self.record.options)
        self.client = self.record.client()
        self.hosts = topo.calico_hosts()
        self.uplinks = {}  # its first link: a segment's switch (flat, two_host), a router (routed, fabric)
        for a, b in topo.links(sort=True):
            for host, other in ((a, b), (b, a)):
                if host in self.hosts:
                    self.uplinks.setdefault(host, other)
        self.etcd_host, self.etcd_members = topo.etcd_host, topo.etcd_members()

    @property
    def run_dir(self) -> Path:
        return Path(self.record.run_dir)

    def run(self, host: str, command: str, timeout: float = 60.0) -> CommandResult:
        return self.client.run(host, command, timeout)

    def fault(self, argv: list[str]) -> str:
        """One `calisim fault` command line, carried out by the lab (LabError if it refuses)."""
        return self.client.call("fault", argv=argv)

    def inspect(self) -> dict:
        return self.client.call("inspect", wait=60)

    def datastore(self) -> Synchronous:
        """The lab's etcd over its members' unix sockets (etcd names each NAME:PORT in its data directory)."""
        sockets = sorted((self.run_dir / "etcd").glob(f"**/etcd.sock:{CLIENT_PORT}"))
        return Synchronous(Datastore(",".join(f"unix://{path}" for path in sockets)))

    def kill_etcd(self) -> str:
        """Kill etcd (the leader, with a cluster); the node whose etcd is now down."""
        if not self.etcd_members:
            self.fault(["kill", self.etcd_host, "etcd"])
            return self.etcd_host
        said = self.fault(["kill", "--leader", "etcd"])
        match = LEADER.search(said)
        if not match:
            raise lab.LabError(f"cannot tell which etcd member was killed from {said!r}")
        return match.group(1)
