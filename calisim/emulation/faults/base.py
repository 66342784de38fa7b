"""What every kind of fault shares: the error, commands in a node's network namespace, whether
the kernel has netem, the record of what was done (faults.log, faults.json) and the topology's
nodes and links by name."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import time
from dataclasses import asdict, dataclass, field

NETEM_MISSING = "delay needs the kernel's sch_netem qdisc, which this kernel does not have"
log = logging.getLogger("calisim.faults")


class FaultError(ValueError):
    """A fault that cannot be injected as asked: one line saying why; nothing was changed."""


@dataclass
class Impairment:
    """What a link does to packets besides carrying them."""

    loss: float = 0.0  # percent
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate: str | None = None  # tc units, e.g. 10mbit

    def any(self) -> bool:
        return bool(self.loss or self.corrupt or self.duplicate or self.delay_ms or self.rate)


@dataclass
class Partition:
    """A host cut off in the underlay: from everything (peers empty, etcd False) or from some."""

    peers: list[str] = field(default_factory=list)
    etcd: bool = False


@functools.cache
def netem_available() -> bool:
    """Whether this kernel has sch_netem: tried once on lo of a throwaway network namespace."""
    probe = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                           capture_output=True)
    return probe.returncode == 0


def nsexec(pid: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """argv in the network namespace of pid (a Mininet node); FaultError with its stderr if check fails."""
    done = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", *argv], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise FaultError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done


class FaultState:
    """The faults in force on one cluster and how they are recorded; the kinds of fault (links,
    partitions, daemons, hosts) are the classes built on it, and Faults is all of them."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.log_path = cluster.run_dir.path / "faults.log"
        self.state_path = cluster.run_dir.path / "faults.json"
        self.pin_root = cluster.run_dir.path / "bpf"  # here, and at the same path on other servers
        self.pinned_on: dict[str, object] = {}  # another server with pins -> a node of it (its ssh)
        self.links: dict[tuple[str, str], Impairment] = {}
        self.down_links: dict[tuple[str, str], dict[str, list[str]]] = {}  # link -> per node, `ip` to put back
        self.partitions: dict[str, Partition] = {}
        self.daemons: dict[tuple[str, str], str] = {}  # (host, daemon) -> stopped | down
        self.node_commands: dict[str, str] = {}  # host -> how to start its calico-node again
        self.crashed: set[str] = set()

    def active(self) -> list[dict]:
        """The faults in force now, one dict each (what `inspect` shows)."""
        faults = [{"fault": "link-down", "link": list(k)} for k in self.down_links]
        faults += [{"fault": "impair", "link": list(k), **{n: v for n, v in asdict(i).items() if v}}
                   for k, i in self.links.items() if i.any()]
        faults += [{"fault": "partition", "host": h, "from": "etcd" if p.etcd else (p.peers or "everything")}
                   for h, p in self.partitions.items()]
        faults += [{"fault": f"daemon-{state}", "host": h, "daemon": d} for (h, d), state in self.daemons.items()]
        faults += [{"fault": "crashed", "host": h} for h in sorted(self.crashed)]
        return faults

    def _record(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        with open(self.log_path, "a") as logfile:
            logfile.write(f"{stamp} {text}\n")
        log.info("fault: %s", text)
        self._save()

    def _save(self) -> None:
        self.state_path.write_text(json.dumps(self.active(), indent=1) + "\n")

    # -- the topology -----------------------------------------------------------------------
    def _node(self, name: str):
        net = self.cluster.net
        if net is None:
            raise FaultError("the cluster is not running")
        if name not in net.nameToNode:
            raise FaultError(f"unknown host {name!r} (this topology has {', '.join(sorted(net.nameToNode))})")
        return net.nameToNode[name]

    def _calico_host(self, name: str):
        node = self._node(name)
        if name not in self.cluster.hosts:
            raise FaultError(f"{name} is not a Calico host (those are {', '.join(self.cluster.hosts)})")
        return node

    def _links_between(self, a: str, b: str) -> list:
        links = self.cluster.net.linksBetween(self._node(a), self._node(b))
        if not links:
            raise FaultError(f"no link between {a} and {b}")
        return links

    def _node_links(self, name: str) -> list:
        node = self._node(name)
        return [link for link in self.cluster.net.links if node in (link.intf1.node, link.intf2.node)]

    @staticmethod
    def _link_key(a: str, b: str) -> tuple[str, str]:
        return tuple(sorted((a, b)))

    def _impaired_end(self, link):
        """The end whose tc programs act on both directions: the switch's port where there is
        one, else the end that is not a Calico host (whose uplink carries Felix's and the eBPF
        IPIP backend's programs)."""
        switches = set(self.cluster.net.switches)
        if link.intf2.node in switches:
            return link.intf2
        if link.intf1.node in switches or link.intf1.node.name in self.cluster.hosts:
            return link.intf1 if link.intf1.node in switches else link.intf2
        return link.intf1
