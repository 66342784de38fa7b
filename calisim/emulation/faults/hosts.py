"""Faults of hosts: a crash (silent on the wire first, then every process of the host and its
containers killed at once) and the boot after it (the kernel's state and the tmpfs directories
as after a reboot)."""

from __future__ import annotations

import shlex
import shutil

from . import servers
from .base import FaultError
from .partitions import PartitionFaults


class HostFaults(PartitionFaults):
    """Hosts crashed, and booted again."""

    def crash(self, host: str) -> None:
        """A power cut: the host falls silent on the wire first (so no FIN or Cease leaves it),
        then every process of the host and of its containers is gone at once (SIGKILL)."""
        node = self._calico_host(host)
        if host in self.crashed:
            raise FaultError(f"{host} has crashed already (boot it)")
        if servers.on_other_server(node) and host in self.cluster.topo.etcd_nodes():
            raise servers.not_yet(node, "a crash of an etcd node")
        self.crashed.add(host)
        self._apply_partition(host)
        victims = servers.kill_host(node)
        if self.cluster.dockerds.get(host) is not None:
            self.cluster.dockerds.pop(host).wait()
        if self.cluster.on_servers is not None:
            self.cluster.on_servers.daemons.pop(host, None)  # its dockerd, killed on its server
        if host in self.cluster.etcd_processes:
            self.cluster.etcd_processes[host].wait()
        self._record(f"crash {host} ({victims} processes)")

    def boot(self, host: str) -> None:
        """Back from a crash: the kernel's state as after a reboot (no workload links, tunnels,
        Calico routes or rules), an empty /var/run/calico and /run/docker, dockerd (and etcd, if
        it lives here) running again, the wire live; ready for `calicoctl node run`."""
        node = self._calico_host(host)
        if host not in self.crashed:
            raise FaultError(f"{host} has not crashed")
        self._reset_kernel_state(node)
        self._empty_run_directories(node)
        if host in self.cluster.topo.etcd_nodes():
            self.cluster.start_etcd(host)
        if self.cluster.docker:
            self.cluster.start_dockerd(host)
        self.crashed.discard(host)
        self.daemons = {k: v for k, v in self.daemons.items() if k[0] != host}
        self._apply_partition(host)
        self._record(f"boot {host}")

    @staticmethod
    def _reset_kernel_state(node) -> None:
        keep = set(node.intfNames()) | {"lo"}
        shown = servers.in_node(node, "ip", "-o", "link", "show")
        for line in shown.stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name not in keep:
                servers.in_node(node, "ip", "link", "del", "dev", name, check=False)
        for proto in ("bird", "static", "80"):
            servers.in_node(node, "ip", "route", "flush", "proto", proto, check=False)
        servers.in_node(node, "nft", "flush", "ruleset", check=False)
        for intf in node.intfNames():
            servers.in_node(node, "tc", "qdisc", "del", "dev", intf, "clsact", check=False)

    @staticmethod
    def _empty_run_directories(node) -> None:
        """/var/run/calico and /run/docker are tmpfs on a real host: nothing survives a reboot
        (the eBPF IPIP backend's bpffs, mounted in the host's mount namespace, goes too)."""
        servers.in_node(node, "umount", "/var/run/calico/bpf", check=False, namespaces=("-m",))
        if servers.on_other_server(node):  # the directories are on its server
            run, docker = (shlex.quote(str(node.state_dir / name)) for name in ("run", "docker"))
            servers.run_there(node, f"find {run} {docker} -mindepth 1 -delete && mkdir {docker}/plugins")
            return
        for directory in (node.state_dir / "run", node.state_dir / "docker"):
            for entry in directory.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        (node.state_dir / "docker" / "plugins").mkdir(exist_ok=True)
