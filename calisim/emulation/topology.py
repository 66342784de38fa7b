"""Mininet glue: what an emulated Calico host and network segment are.

A host is a Mininet host (its shell process holds the network and mount namespaces) that also
has a UTS namespace of its own, so `hostname` prints its name as on the seed's machines, its own
copy-on-write /etc and /var/lib (overlay.py; its /etc/hostname and /etc/hosts name it), and
Calico's and Docker's directories (/var/run/calico, /var/log/calico, /run/docker with the
plugin sockets and docker.sock) bind-mounted from the run directory.
A segment is a Linux bridge living in a namespace of its own: no Open vSwitch, and nothing in
the namespace calisim was started from.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from mininet.link import Link
from mininet.net import Mininet
from mininet.node import Host
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

from . import overlay


class NamespacedBridge(LinuxBridge):
    """A Linux bridge inside its own network namespace (Mininet would put it in the root one)."""

    def __init__(self, name: str, **params):
        params["inNamespace"] = True  # Mininet passes inNamespace=False explicitly for switches
        super().__init__(name, **params)

    def mountPrivateDirs(self) -> None:
        """The machine's /etc and /var/lib read-only in the bridge's mount namespace: nothing runs
        there, but Mininet's CLI can (`s1 touch /etc/x`), and it must not write the machine's files."""
        mount_in(self, [f"mount --bind -o ro {directory} {directory}" for directory in overlay.COPY_ON_WRITE],
                 "a read-only /etc and /var/lib")


def mount_in(node, steps: list[str], what: str) -> None:
    """steps, shell commands, one after another in node's shell (one round trip): OverlayError
    saying what node cannot get, with the failing command's first line, if one fails."""
    output = node.cmd("{ " + " && ".join(steps) + "; } 2>&1; echo \"status $?\"").strip().splitlines()
    if not output or output[-1] != "status 0":
        node.terminate()  # not yet one of the network's nodes: nothing else would stop its shell
        why = output[0] if len(output) > 1 else "no answer from its shell"
        raise overlay.OverlayError(f"{node.name} cannot get {what}: {why}")


def write_step(path: str, text: str) -> str:
    """A shell step writing text to path with the shell's builtin printf: no process, one line
    (text's newlines become printf's, so a shell reading a terminal sees a single line)."""
    pieces = text.split("\n")
    layout = "%s\\n" * (len(pieces) - 1) + "%s"
    return f"printf {shlex.quote(layout)} {shlex.join(pieces)} > {shlex.quote(path)}"


# every veth end of this process's networks gets its own index, far above the few the kernel
# numbers itself in a namespace (lo, tunl0, docker0, ...)
VETH_INDEXES = itertools.count(1000)


class VethLink(Link):
    """Mininet's veth link, left to go with its namespaces at teardown.  Every node of a calisim
    network (hosts, routers, the bridges) has a namespace of its own, and the kernel destroys a
    namespace's veths with it, in one batch; Mininet's `ip link del` of each end waits for the
    kernel a link at a time (~27 ms each: 2.7 s of a 100-host teardown)."""

    @classmethod
    def makeIntfPair(cls, intfname1, intfname2, addr1=None, addr2=None, node1=None, node2=None,
                     deleteIntfs=True) -> None:
        """Mininet's pair, made from node1's namespace into node2's, with an interface index of
        its own for each end.  Left to the kernel, both ends of a node's first link get index 2
        (the first after lo in each fresh namespace); a veth whose index equals its peer's looks
        to the kernel like its own lower device, so its carrier changes are not urgent and are
        applied at most once a second: host1's bridge port stayed disabled up to a second after
        the build, and host2's first SYNs to etcd in host1 were dropped on the bridge."""
        del deleteIntfs  # the namespaces are new: nothing to delete
        ends = [f"name {name} index {next(VETH_INDEXES)}" + (f" address {addr}" if addr else "")
                for name, addr in ((intfname1, addr1), (intfname2, addr2))]
        output = node1.cmd(f"ip link add {ends[0]} type veth peer {ends[1]} netns {node2.pid}").strip()
        if output:
            raise RuntimeError(f"Error creating interface pair ({intfname1},{intfname2}): {output}")

    def delete(self) -> None:
        for intf in (self.intf1, self.intf2):
            intf.node.delIntf(intf)
        self.intf1 = self.intf2 = None


HOST_STARTS = 8  # hosts begun at once (each mostly waits on its shell: its prompt, its mounts, its config)


def begin_hosts(topo: Topo, build: Callable[..., Host]) -> Callable[..., Host]:
    """Mininet's host constructor for topo: every host that names its address (every calisim
    node does) is begun now, HOST_STARTS at once (a host's start is mostly round trips to its new
    shell, and a server's ssh session for a remote one: made one after another as Mininet adds
    hosts, 100 local ones took ~1.9 s), and handed over when Mininet adds it, made with the
    topology's own parameters (what Mininet then passes); any other is built then.  If one
    fails, those begun but never to be added are stopped before it is raised."""
    names = [name for name in topo.hosts() if "ip" in topo.nodeInfo(name)]
    pool = ThreadPoolExecutor(max_workers=max(1, min(HOST_STARTS, len(names))))
    pending = {name: pool.submit(build, name, **topo.nodeInfo(name)) for name in names}
    pool.shutdown(wait=False)

    def make(name: str, **params) -> Host:
        if name not in pending:
            return build(name, **params)
        try:
            return pending.pop(name).result()
        except BaseException:
            for begun in pending.values():
                if begun.exception() is None:
                    begun.result().terminate()
            raise
    return make


def local_hosts(topo: Topo, state_dir: Callable[[str], Path]) -> Callable[..., Host]:
    """Mininet's host constructor for hosts on this machine: CalicoHosts (state_dir(name) holds a
    host's state), begun at once."""
    return begin_hosts(topo, lambda name, **params: CalicoHost(name, state_dir=state_dir(name), **params))


class ConcurrentMininet(Mininet):
    """Mininet whose hosts are configured HOST_STARTS at once: each host's addresses, default
    route and loopback are round trips to its own shell (~7 ms a host, one after another)."""

    def configHosts(self) -> None:
        with ThreadPoolExecutor(max_workers=HOST_STARTS) as pool:
            list(pool.map(configure_host, self.hosts))


def configure_host(host: Host) -> None:
    """Mininet's configHosts for one host: its parameters, or none on a host without interfaces."""
    if host.defaultIntf():
        host.configDefault()
    else:
        host.configDefault(ip=None, mac=None)


class CalicoHost(Host):
    """A Mininet host that looks like one of the seed's machines."""

    def __init__(self, name: str, state_dir: Path, **params):
        self.state_dir = Path(state_dir)
        params.setdefault("privateDirs", [("/var/run/calico", str(self.state_dir / "run")),
                                          ("/var/log/calico", str(self.state_dir / "log")),
                                          ("/run/docker", str(self.state_dir / "docker"))])
        self.views = overlay.views(self.state_dir)
        super().__init__(name, **params)

    def mountPrivateDirs(self) -> None:
        """The host's own views and directories, listed in its fstab (in its run directory) and
        mounted by one `mount` (Mininet runs three commands a directory, each a few milliseconds,
        for one host after another): the overlays first, so bind mounts below /etc or /var/lib
        land on top of them and their mount points are made in the host's view; then its name
        (the shell's builtin echo: no process) and its /etc/hostname and /etc/hosts, written into its
        view by the shell's builtin printf in the same round trip (a host on another server would
        pay a session each).  OverlayError, with mount's reason, if any fails."""
        fstab_text = "".join([view.fstab_line() for view in self.views] + [
            overlay.fstab_line(private_dir, mount_point, "none", "bind,X-mount.mkdir")
            for mount_point, private_dir in self.privateDirs])
        mount_in(self, [*self.prepare_state(fstab_text), overlay.mount_all_command(self.state_dir / "fstab"),
                        f"echo {shlex.quote(self.name)} > /proc/sys/kernel/hostname",
                        write_step("/etc/hostname", f"{self.name}\n"),
                        write_step("/etc/hosts", overlay.etc_hosts(self.name))],
                 "its own /etc, /var/lib and private directories")

    def state_subdirectories(self) -> list[str]:
        return [str(self.state_dir / sub) for sub in ("run", "log", "home", "docker/plugins")]

    def prepare_state(self, fstab_text: str) -> list[str]:
        """The host's directories and fstab, made here; the shell steps that would make them
        on the host's server (none: this is its server)."""
        for directory in self.state_subdirectories():
            os.makedirs(directory, exist_ok=True)
        for view in self.views:
            view.prepare()
        for _, private_dir in self.privateDirs:
            os.makedirs(private_dir, exist_ok=True)
        (self.state_dir / "fstab").write_text(fstab_text)
        return []

    def unmountPrivateDirs(self) -> None:
        """The bind mounts, then the views (a host's files vanish from its view at exit; they stay
        in its run directory)."""
        self.cmd("umount " + " ".join([mount_point for mount_point, _ in self.privateDirs]
                                      + [view.directory for view in reversed(self.views)]))

    def view_path(self, path: str) -> Path:
        """path as this host sees it (through its own mount namespace), for reading or writing
        from outside the host: a write lands in the host's view, never in the machine's file."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")

    def write_file(self, path: str, text: str) -> None:
        self.view_path(path).write_text(text)

    def popen(self, *args, **kwargs):
        """Mininet's popen (the host's network and mount namespaces), in its UTS namespace too:
        a daemon started here (etcd, dockerd, a router's BIRD) asking its host's name gets it."""
        kwargs.setdefault("mncmd", ["mnexec", "-da", str(self.pid), "nsenter", "-t", str(self.pid), "-u", "--"])
        return super().popen(*args, **kwargs)

    def _popen(self, cmd, **params):
        if self.shell is None and cmd and cmd[0] == "mnexec":
            cmd = own_uts(cmd)
        return super()._popen(cmd, **params)

    @property
    def home(self) -> Path:
        return self.state_dir / "home"

    def enter_command(self, argv: list[str]) -> list[str]:
        """argv run inside this host's network, mount and UTS namespaces, from its home directory."""
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-u", f"--wd={self.home}", "--", *argv]

    def shell_command(self, argv: list[str], environment: dict[str, str],
                      terminal: bool = False) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run argv in this host (as Cluster.run does); a
        terminal is the caller's own here."""
        return self.enter_command(argv), environment

    def netns_inode(self) -> int:
        return os.stat(f"/proc/{self.pid}/ns/net").st_ino


def own_uts(cmd: list[str]) -> list[str]:
    """A host's shell command with a UTS namespace of its own: unshare execs in place, so the
    shell's PID (which Mininet attaches to) also holds the host's UTS namespace."""
    return cmd[:2] + ["unshare", "--uts", "--"] + cmd[2:]


class CalicoTopo(Topo):
    """A Mininet topology whose Calico hosts are host1, host2, ...; etcd runs in ``etcd_host``."""

    name = "custom"
    etcd_host = "host1"  # where etcd runs alone; a cluster's members get nodes of their own (add_etcd_members)

    def add_segment(self, name: str) -> str:
        return self.addSwitch(name, cls=NamespacedBridge)

    def add_calico_host(self, name: str, ip: str, segment: str, default_route: str | None = None,
                        ip6: str | None = None) -> str:
        ipaddress.ip_interface(ip)  # fail early on a malformed address
        params = {"ip": ip, "calico": True}
        if default_route:
            params["defaultRoute"] = f"via {default_route}"
        self.addHost(name, **params)
        self.addLink(name, segment)
        if ip6:
            self.add_ipv6(name, segment, ip6)
        return name

    def add_ipv6(self, node: str, segment: str, address: str, default_route: str | None = None) -> None:
        """An IPv6 address on node's link to segment (Mininet configures IPv4 only; the cluster adds
        these once the links exist), and optionally node's IPv6 default route."""
        if ipaddress.ip_interface(address).version != 6:
            raise ValueError(f"{address} is not an IPv6 address")
        info = self.nodeInfo(node)
        info.setdefault("ipv6", []).append((segment, address))
        if default_route:
            info["ipv6_default_route"] = default_route

    def add_router(self, name: str, addresses: dict[str, str], bird_config: str | None = None,
                   underlay: bool = False) -> str:
        """A plain IP router (not a Calico host) with one address on each segment given; with
        bird_config (rendered from bird_configs/), the cluster runs BIRD in it (a ToR, a spine).
        An underlay router peers only with routers: the cluster waits for all its sessions."""
        self.addHost(name, ip=None, calico=False, router=True, bird=bird_config, underlay=underlay)
        for segment, address in addresses.items():
            ipaddress.ip_interface(address)
            self.addLink(name, segment, params1={"ip": address})
        return name

    def add_point_to_point(self, left: str, left_ip: str, right: str, right_ip: str) -> None:
        """A direct link between two routers (no bridge), one address on each end."""
        ipaddress.ip_interface(left_ip), ipaddress.ip_interface(right_ip)
        self.addLink(left, right, params1={"ip": left_ip}, params2={"ip": right_ip})

    def add_reflector_host(self, name: str, ip: str, segment: str, default_route: str | None = None) -> str:
        """A machine that is not a Calico node, for `routereflector run` (its BIRD is the reflector's)."""
        ipaddress.ip_interface(ip)
        params = {"ip": ip, "calico": False, "reflector": True}
        if default_route:
            params["defaultRoute"] = f"via {default_route}"
        self.addHost(name, **params)
        self.addLink(name, segment)
        return name

    def add_outside_host(self, name: str, ip: str, segment: str, default_route: str) -> str:
        """An ordinary machine outside the cluster (the Internet of nat-outgoing): no Calico, no
        route to any pool, so only masqueraded traffic gets answers back."""
        ipaddress.ip_interface(ip)
        self.addHost(name, ip=ip, calico=False, defaultRoute=f"via {default_route}")
        self.addLink(name, segment)
        return name

    def routers(self) -> list[str]:
        return [h for h in self.hosts(sort=True) if self.nodeInfo(h).get("router")]

    def bgp_routers(self) -> list[str]:
        """Routers the cluster starts BIRD in, with the config the topology rendered."""
        return [h for h in self.routers() if self.nodeInfo(h).get("bird")]

    def underlay_routers(self) -> list[str]:
        return [h for h in self.bgp_routers() if self.nodeInfo(h).get("underlay")]

    def reflector_hosts(self) -> list[str]:
        return [h for h in self.hosts(sort=True) if self.nodeInfo(h).get("reflector")]

    def node_run_command(self, host: str) -> str:
        """What `--start-nodes` runs on a Calico host (a fabric gives each host its AS)."""
        return "calicoctl node run"

    def reflector_run_command(self, host: str) -> str:
        """What starts the route reflector of a reflector host (after_node_run's, and `fault start`'s)."""
        return f"routereflector run --ip {self.host_ip(host)}"

    def after_node_run(self) -> list[tuple[str, str]]:
        """(host, command) steps `--start-nodes` runs in order once every node runs, as Calico's
        docs tell a user (mesh off, bgpPeers, route reflectors); none for a plain mesh."""
        return []

    def add_etcd_members(self, count: int) -> list[str]:
        """Nodes etcd1..etcdN for an etcd cluster, on etcd_host's segment with its subnet and default
        route (so every host reaches them as it reached etcd_host), at the subnet's last addresses
        below the broadcast and the one before it (etcd1 = .253 of a /24)."""
        interface = ipaddress.ip_interface(self.nodeInfo(self.etcd_host)["ip"])
        segment = next(node for node in self.g.edge[self.etcd_host] if self.isSwitch(node))
        taken = {address.split("/")[0] for address in self._addresses()}
        names = []
        for index in range(1, count + 1):
            ip = str(interface.network[-2 - index])
            if ip in taken:
                raise ValueError(f"etcd{index}'s address {ip} is taken in the {self.name} topology")
            params = {"ip": f"{ip}/{interface.network.prefixlen}", "calico": False, "etcd_member": True}
            if self.nodeInfo(self.etcd_host).get("defaultRoute"):
                params["defaultRoute"] = self.nodeInfo(self.etcd_host)["defaultRoute"]
            names.append(self.addHost(f"etcd{index}", **params))
            self.addLink(names[-1], segment)
        return names

    def _addresses(self) -> list[str]:
        """Every IPv4 address the topology plans: its hosts' and its routers' (on their links)."""
        planned = [self.nodeInfo(name).get("ip") for name in self.hosts(sort=True)]
        for _, _, info in self.links(sort=True, withInfo=True):
            planned += [info.get(side, {}).get("ip") for side in ("params1", "params2")]
        return [address for address in planned if address]

    def etcd_members(self) -> list[str]:
        """The nodes of an etcd cluster's members (none when etcd runs alone in etcd_host)."""
        return [h for h in self.hosts(sort=True) if self.nodeInfo(h).get("etcd_member")]

    def etcd_nodes(self) -> list[str]:
        """Where etcd runs: its members' nodes, or etcd_host alone."""
        return self.etcd_members() or [self.etcd_host]

    def calico_hosts(self) -> list[str]:
        return [h for h in self.hosts(sort=True) if self.nodeInfo(h).get("calico")]

    def host_ip(self, name: str) -> str:
        return self.nodeInfo(name)["ip"].split("/")[0]


def add_ipv6_addresses(net) -> None:
    run_ip_batches(ipv6_commands(net))


def ipv6_commands(net) -> dict[object, list[str]]:
    """Per node, the `ip -batch` lines giving it the IPv6 addresses (and default route) its
    topology planned (``add_ipv6``).  nodad: BIRD and etcd may bind them at once."""
    batches: dict[object, list[str]] = {}
    for node in net.hosts:
        planned = net.topo.nodeInfo(node.name).get("ipv6", [])
        for segment, address in planned:
            intf = next(i for i in node.intfList()
                        if getattr(i, "link", None) and segment in (i.link.intf1.node.name, i.link.intf2.node.name))
            batches.setdefault(node, []).append(f"addr add {address} dev {intf.name} nodad")
        gateway = net.topo.nodeInfo(node.name).get("ipv6_default_route")
        if gateway:
            batches.setdefault(node, []).append(f"route add ::/0 via {gateway}")
    return batches


def pin_segment_neighbours(net) -> None:
    """Give every host a permanent ARP entry for each other host on its segments.

    The kernel's ARP table is one table for all namespaces, capped by the machine's
    gc_thresh3 (1024 by default, not ours to raise): a full BGP mesh of 50 hosts needs 2450
    entries, and past the cap new ones cannot be created, so connections silently stall.
    Permanent entries do not count against the cap (Linux >= 5.0), and they also spare the
    bridge the ARP broadcast storm of every host connecting to every other at once.  The
    underlay's ARP is not part of what calisim emulates; Calico's own workload entries are
    permanent too.
    """
    batches: dict[object, list[str]] = {}
    for switch in net.switches:
        members = [intf.link.intf2 if intf.link.intf1 is intf else intf.link.intf1
                   for intf in switch.intfList() if getattr(intf, "link", None)]
        members = [intf for intf in members if intf.IP()]
        for intf in members:
            batches.setdefault(intf.node, []).extend(
                f"neigh replace {other.IP()} lladdr {other.MAC()} dev {intf.name} nud permanent"
                for other in members if other is not intf)
    run_ip_batches(batches)


def run_ip_batches(batches: dict[object, list[str]]) -> None:
    """Each node's lines through one `ip -batch`, a few nodes at once (the kernel work of a
    hundred hosts' neighbour tables spreads over the cores)."""
    # iproute2 in each node's namespace, not pyroute2 sockets opened into it: those were seen
    # landing in the wrong namespace (the device then "does not exist") on a busy machine.
    def run(node, lines: list[str]) -> None:
        if getattr(node, "isRemote", False):  # a node on another server: its pid is its server's
            output = node.cmd(f"printf '%s\\n' {' '.join(map(shlex.quote, lines))} | ip -batch - 2>&1").strip()
            if output:
                raise subprocess.CalledProcessError(1, f"{node.name}: ip -batch", output=output)
            return
        subprocess.run(["nsenter", "-t", str(node.pid), "-n", "ip", "-batch", "-"], input="\n".join(lines) + "\n",
                       text=True, check=True, capture_output=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(run, node, lines) for node, lines in batches.items()]:
            future.result()
