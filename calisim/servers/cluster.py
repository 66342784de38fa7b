"""Mininet's cluster edition on calisim's servers: remote hosts over the run's ssh, VXLAN links.

The engine is Debian's ``mininet.examples.cluster`` (mininet 2.3.0, with upstream's Python 3
fixes that PyPI's 2.3.0.dev6 lacks), loaded from Debian's dist-packages.  Two things are changed
around it, not in it: its clean-up hook runs ``mn -c`` (kill by name, machine-wide) on every
server, so it is never registered; and its gretap links cannot work here (no GRE in the kernel),
so cross-server links are VXLAN (``links.py``).
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from .links import VxlanEnd, link_ends

DEBIAN_CLUSTER = Path("/usr/lib/python3/dist-packages/mininet/examples/cluster.py")


class ClusterError(RuntimeError):
    """Mininet's cluster edition is missing or a remote node could not be made."""


def load_engine() -> ModuleType:
    """Debian's cluster module, with its ``mn -c`` clean-up hook made a no-op."""
    if "calisim_mininet_cluster" in sys.modules:
        return sys.modules["calisim_mininet_cluster"]
    if not DEBIAN_CLUSTER.exists():
        raise ClusterError(f"Mininet's cluster edition is missing: {DEBIAN_CLUSTER} (Debian's mininet: make setup)")
    spec = importlib.util.spec_from_file_location("calisim_mininet_cluster", DEBIAN_CLUSTER)
    engine = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = engine
    spec.loader.exec_module(engine)
    engine.ClusterCleanup.add = classmethod(lambda cls, server, user="": None)  # never `mn -c` on a server
    return engine


class OwnProcessGroup:
    """Placed after Mininet's RemoteMixin: its ssh clients get their own process group from
    Popen's ``process_group=0`` instead of its ``preexec_fn`` calling ``os.setpgrp``.  A preexec_fn
    makes Python fork the controller and run Python and every at-fork handler in the child of a
    threaded process (the etcd client's gRPC threads): there the child could die before ssh
    started (SIGSEGV, SIGABRT with gRPC's fork support on: 12 of 100 sessions), an empty answer
    and no command run.  Without one, Python vforks and the child execs ssh at once."""

    def _popen(self, cmd, **params):
        if params.get("preexec_fn") is self._ignoreSignal:
            del params["preexec_fn"]
            params["process_group"] = 0
        return super()._popen(cmd, **params)


def remote_bases(node_class: type) -> tuple[type, ...]:
    """The bases of a node of node_class on another server: Mininet's RemoteMixin, forking safely."""
    return load_engine().RemoteMixin, OwnProcessGroup, node_class


def remote_host_class(ssh_options: list[str]) -> type:
    """Mininet's RemoteHost reaching its server with these ssh options (the run's key, host
    keys and one multiplexed connection a server) instead of the user's defaults."""
    return type("CalisimRemoteHost", remote_bases(load_engine().Node), {"sshbase": [*ssh_options, "-tt"]})


def vxlan_link_class(controller_ip: str | None = None, same_server: type | None = None,
                     underlay_mtu: int = 1500) -> type:
    """Mininet's RemoteLink whose cross-server tunnel is a VXLAN pair, one VNI a link.  An end on
    the controller's own machine (a local node: no server of its own) is made here, at
    controller_ip, and moved into its node's namespace.  A link within one server is made by
    same_server's makeIntfPair (Mininet's veth pair without one)."""
    engine = load_engine()

    class RemoteVxlanLink(engine.RemoteLink):
        vni = 0

        def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None, node1=None, node2=None,  # noqa: N802
                         deleteIntfs=True):
            node1, node2 = node1 or self.node1, node2 or self.node2
            servers = {getattr(node, "server", "localhost") for node in (node1, node2)}  # as Mininet's
            if same_server is not None and len(servers) == 1:
                return same_server.makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2)
            return super().makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2, deleteIntfs)

        def makeTunnel(self, node1, node2, intfname1, intfname2, addr1=None, addr2=None):  # noqa: N802 (Mininet's)
            """Both ends at once, each in one round trip: a remote end through its node's own
            shell (an ssh session of its own an end, four of them one end after the other,
            were most of a remote host's build)."""
            RemoteVxlanLink.vni += 1
            addresses = [node.serverIP if _remote(node) else controller_ip for node in (node1, node2)]
            ends = [(node, replace(end, device=intfname), addr) for (node, intfname, addr), end in zip(
                ((node1, intfname1, addr1), (node2, intfname2, addr2)),
                link_ends(intfname1, RemoteVxlanLink.vni, *addresses, underlay_mtu))]
            with ThreadPoolExecutor(max_workers=2) as pool:
                for future in [pool.submit(_make_end, *end) for end in ends]:
                    future.result()
            self.tunnel = None
            return None

        def stop(self):
            self.intf1.delete()
            self.intf2.delete()

    return RemoteVxlanLink


def _make_end(node, end: VxlanEnd, addr: str | None) -> None:
    """One end of a cross-server link made on node's server: its commands in one round trip
    there (each on its own here, where a command costs none)."""
    commands = end.create_commands(netns_pid=node.pid)
    for command in [" && ".join(commands)] if _remote(node) else commands:
        failure = _on_server_of(node, command)
        if failure is not None:
            raise ClusterError(f"{getattr(node, 'server', 'localhost')}: {command}: {failure}")
    if addr:
        node.cmd(f"ip link set {end.device} address {addr}")


def _remote(node) -> bool:
    return getattr(node, "isRemote", False)


def _on_server_of(node, command: str) -> str | None:
    """command run on node's server, in the server's network namespace: None if it succeeded,
    else what it printed.  A remote node's is typed into its own shell (an ssh session already
    open, where a new one costs a round trip and a few processes on each side), entering the
    namespace of the server's PID 1 (the server's own: where its sshd and underlay address are);
    judged by its exit status, not by silence."""
    if _remote(node):
        lines = node.cmd(f'nsenter -t 1 -n sh -c {shlex.quote(command)} 2>&1; echo "status $?"').strip().splitlines()
        if lines and lines[-1].strip().startswith("status "):
            return None if lines[-1].strip() == "status 0" else "\n".join(lines[:-1]).strip() or lines[-1].strip()
        return "no answer from its shell"
    done = subprocess.run(shlex.split(command), capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip()
