"""Faults: break a running cluster on purpose and put it back (``cluster.faults``).

    cluster.faults.link("host2", "s1", "down")        # both ends of every link between the two
    cluster.faults.loss("host2", "s1", 50)            # also corrupt(), duplicate(); rate("10mbit")
    cluster.faults.kill("host2", "bird")              # kill/term/stop/cont/start HOST DAEMON
    cluster.faults.kill("rr1", "routereflector")      # a route reflector's BIRD
    cluster.faults.partition("host2", from_etcd=True) # or partition("host2", ["host3"]); heal()
    cluster.faults.crash("host2"); cluster.faults.boot("host2")
    cluster.faults.active()                           # what is broken now (also in faults.json)

It talks to the emulation the way a person at the machines would: `ip link`, `tc` and `bpftool`
run in the node's network namespace, signals sent to the daemons' PIDs (from their pid files),
`calicoctl node run` in a host.  Impairments are tc programs on the links' ends: the kernel's
netem where it exists (probed once); otherwise calisim/emulation/bpf/impair.bpf.c (built by
`make setup`) drops, corrupts and duplicates packets, and delay is refused, since only netem can
hold packets back.  Rates are TBF qdiscs.  Partitions drop traffic in the underlay (on the
switch side of the host's uplink), never in Felix's nftables table.

Every fault is appended with a timestamp to faults.log in the run directory and the faults still
in force are kept in faults.json there.  Bad input raises FaultError (one line) before anything
changes.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..node import NodePaths
from ..process import pids

BPF_OBJECT = Path(__file__).parent / "bpf" / "impair.bpf.o"  # built by `make setup`
FILTER_PREF = 10  # before any other tc filter on the device (eBPF IPIP's decap)
DAEMONS = ("bird", "calico-node", "dockerd", "etcd", "routereflector")
SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "stop": signal.SIGSTOP, "cont": signal.SIGCONT}
ETCD_CLIENT_PORT = 2379
RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$", re.IGNORECASE)
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


def parse_percent(value: float | str, what: str) -> float:
    try:
        percent = float(value)
    except (TypeError, ValueError):
        raise FaultError(f"{what} must be a percentage between 0 and 100, not {value!r}") from None
    if not 0 <= percent <= 100:
        raise FaultError(f"{what} must be a percentage between 0 and 100, not {value!r}")
    return percent


def parse_rate(value: str) -> str:
    """A rate in tc's units (bit, kbit, mbit, gbit; bps, kbps, ... are bytes per second)."""
    match = RATE.match(str(value).strip())
    if not match or float(match.group(1)) <= 0:
        raise FaultError(f"malformed rate {value!r}: use a positive number with bit, kbit, mbit, gbit, bps, kbps, "
                         f"mbps or gbps (e.g. 10mbit)")
    return f"{match.group(1)}{match.group(2).lower()}"


def threshold(percent: float) -> int:
    """A percentage as a bound on bpf_get_prandom_u32() (the program drops when random <= bound)."""
    return 0 if percent <= 0 else min(0xFFFFFFFF, round(percent / 100 * 0xFFFFFFFF))


def nsexec(pid: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """argv in the network namespace of pid (a Mininet node); FaultError with its stderr if check fails."""
    done = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", *argv], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise FaultError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done


class Faults:
    """The faults of one running cluster (see the module docstring)."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.log_path = cluster.run_dir.path / "faults.log"
        self.state_path = cluster.run_dir.path / "faults.json"
        self.pin_root = cluster.run_dir.path / "bpf"
        self.links: dict[tuple[str, str], Impairment] = {}
        self.down_links: dict[tuple[str, str], dict[str, list[str]]] = {}  # link -> saved routes per node
        self.partitions: dict[str, Partition] = {}
        self.daemons: dict[tuple[str, str], str] = {}  # (host, daemon) -> stopped | down
        self.node_commands: dict[str, str] = {}  # host -> how to start its calico-node again
        self.crashed: set[str] = set()

    # -- links ------------------------------------------------------------------------------
    def link(self, a: str, b: str, state: str) -> None:
        """Take every link between a and b down or up on both ends (Mininet's `link a b down`).
        Routes the kernel drops with the link (the default route) are put back when it comes up."""
        if state not in ("down", "up"):
            raise FaultError(f"link state must be down or up, not {state!r}")
        links = self._links_between(a, b)
        key = self._link_key(a, b)
        if state == "down":
            saved = self.down_links.get(key) or {}
            for link in links:
                for intf in (link.intf1, link.intf2):
                    saved.setdefault(intf.name, self._static_routes(intf))
                    nsexec(intf.node.pid, "ip", "link", "set", "dev", intf.name, "down")
            self.down_links[key] = saved
        else:
            saved = self.down_links.pop(key, {})
            for link in links:
                for intf in (link.intf1, link.intf2):
                    nsexec(intf.node.pid, "ip", "link", "set", "dev", intf.name, "up")
                for intf in (link.intf1, link.intf2):
                    for route in saved.get(intf.name, []):
                        nsexec(intf.node.pid, "ip", "route", "replace", *route.split(), "dev", intf.name, check=False)
        self._record(f"link {a} {b} {state}")

    @staticmethod
    def _static_routes(intf) -> list[str]:
        """The routes through intf that nothing would put back: boot (Mininet's) and static ones."""
        routes = []
        for proto in ("boot", "static"):
            shown = nsexec(intf.node.pid, "ip", "-4", "route", "show", "dev", intf.name, "proto", proto, check=False)
            routes += [f"{line.strip()} proto {proto}" for line in shown.stdout.splitlines() if line.strip()]
        return routes

    def loss(self, a: str, b: str, percent: float | str) -> None:
        self._impair(a, b, loss=parse_percent(percent, "loss"))

    def corrupt(self, a: str, b: str, percent: float | str) -> None:
        self._impair(a, b, corrupt=parse_percent(percent, "corruption"))

    def duplicate(self, a: str, b: str, percent: float | str) -> None:
        self._impair(a, b, duplicate=parse_percent(percent, "duplication"))

    def delay(self, a: str, b: str, ms: float | str, jitter_ms: float | str = 0) -> None:
        """Only netem holds packets back: refused, with one line, on a kernel without it."""
        try:
            ms, jitter_ms = float(ms), float(jitter_ms)
        except (TypeError, ValueError):
            raise FaultError(f"delay must be milliseconds, not {ms!r} {jitter_ms!r}") from None
        if ms < 0 or jitter_ms < 0:
            raise FaultError(f"delay and jitter must not be negative ({ms} ms, {jitter_ms} ms)")
        self._links_between(a, b)
        if not netem_available():
            raise FaultError(NETEM_MISSING)
        self._impair(a, b, delay_ms=ms, jitter_ms=jitter_ms)

    def rate(self, a: str, b: str, rate: str) -> None:
        self._impair(a, b, rate=parse_rate(rate))

    def clear(self, a: str, b: str) -> None:
        """Every impairment of the link a-b gone (links taken down stay down: `link a b up`)."""
        links = self._links_between(a, b)
        self.links.pop(self._link_key(a, b), None)
        for link in links:
            self._apply_link(link)
        self._record(f"clear {a} {b}")

    def _impair(self, a: str, b: str, **changes) -> None:
        links = self._links_between(a, b)
        key = self._link_key(a, b)
        impairment = self.links.setdefault(key, Impairment())
        for name, value in changes.items():
            setattr(impairment, name, value)
        for link in links:
            self._apply_link(link)
        described = " ".join(f"{k}={v}" for k, v in changes.items())
        self._record(f"impair {a} {b} {described}")

    def _apply_link(self, link) -> None:
        impairment = self.links.get(self._link_key(link.intf1.node.name, link.intf2.node.name), Impairment())
        if netem_available():
            for intf in (link.intf1, link.intf2):
                self._apply_netem(intf, impairment)
        else:
            for intf in (link.intf1, link.intf2):
                self._apply_tbf(intf, impairment.rate)
        self._apply_bpf(self._impaired_end(link))

    @staticmethod
    def _apply_netem(intf, how: Impairment) -> None:
        nsexec(intf.node.pid, "tc", "qdisc", "del", "dev", intf.name, "root", check=False)
        if not how.any():
            return
        argv = ["tc", "qdisc", "add", "dev", intf.name, "root", "netem", "limit", "10000"]
        if how.delay_ms:
            argv += ["delay", f"{how.delay_ms}ms"] + ([f"{how.jitter_ms}ms"] if how.jitter_ms else [])
        for option, percent in (("loss", how.loss), ("corrupt", how.corrupt), ("duplicate", how.duplicate)):
            if percent:
                argv += [option, f"{percent}%"]
        if how.rate:
            argv += ["rate", how.rate]
        nsexec(intf.node.pid, *argv)

    @staticmethod
    def _apply_tbf(intf, rate: str | None) -> None:
        nsexec(intf.node.pid, "tc", "qdisc", "del", "dev", intf.name, "root", check=False)
        if rate:
            nsexec(intf.node.pid, "tc", "qdisc", "add", "dev", intf.name, "root", "tbf", "rate", rate,
                   "burst", "64kb", "latency", "100ms")

    # -- daemons ----------------------------------------------------------------------------
    def kill(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "kill")

    def term(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "term")

    def stop(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "stop")

    def cont(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "cont")

    def signal(self, host: str, daemon: str, verb: str) -> None:
        """Send kill/term/stop/cont to a daemon of host.  BIRD comes back by itself (calico-node
        restarts it, as runit does), and so does a route reflector's BIRD (daemon
        ``routereflector``: runit in calico/routereflector, our reflector process here);
        calico-node is started again at once (its BIRD dies with it on kill, as everything in a
        killed calico/node container does); etcd and dockerd stay down until ``start``."""
        if verb not in SIGNALS:
            raise FaultError(f"unknown signal verb {verb!r} (use {', '.join(SIGNALS)})")
        pid = self._daemon_pid(host, daemon)
        if daemon == "calico-node" and verb in ("kill", "term"):
            self.node_commands[host] = self._node_run_command(pid)
        bird_pid = self._bird_pid(host) if daemon == "calico-node" and verb == "kill" else None
        os.kill(pid, SIGNALS[verb])
        if bird_pid is not None:
            try:
                os.kill(bird_pid, signal.SIGKILL)
            except ProcessLookupError:  # BIRD killed a moment ago, in calico-node's 1 s pause before restarting it
                pass
        self._record(f"{verb} {host} {daemon} (pid {pid})")
        if verb == "stop":
            self.daemons[(host, daemon)] = "stopped"
        elif verb == "cont":
            self.daemons.pop((host, daemon), None)
        elif daemon in ("etcd", "dockerd"):
            pids.wait_gone(pid)
            self.daemons[(host, daemon)] = "down"
        elif daemon == "calico-node":
            pids.wait_gone(pid)
            self.daemons[(host, daemon)] = "down"
            self.start(host, daemon)
        self._save()

    def start(self, host: str, daemon: str) -> None:
        """Start a daemon of host that a fault took down, as the cluster started it."""
        self._check_daemon(host, daemon)
        if daemon == "bird":
            raise FaultError("bird is started by calico-node (start calico-node instead)")
        if self._running_pid(host, daemon) is not None:
            raise FaultError(f"{daemon} is already running in {host}")
        if daemon == "etcd":
            self.cluster.restart_etcd()
        elif daemon == "dockerd":
            self.cluster.start_dockerd(host)
        elif daemon == "routereflector":
            self._run_or_refuse(host, daemon, f"routereflector run --ip {self.cluster.topo.host_ip(host)}")
        else:
            self._run_or_refuse(host, daemon, self.node_commands.get(host, "calicoctl node run"))
        self.daemons.pop((host, daemon), None)
        self._record(f"start {host} {daemon}")

    def _run_or_refuse(self, host: str, daemon: str, command: str) -> None:
        done = self.cluster.run(host, command, timeout=90)
        if done.rc != 0:
            self._save()
            raise FaultError(f"{daemon} in {host} did not start: {(done.stdout + done.stderr).strip()[-300:]}")

    def _check_daemon(self, host: str, daemon: str) -> None:
        self._node(host)
        if daemon not in DAEMONS:
            raise FaultError(f"unknown daemon {daemon!r} (one of {', '.join(DAEMONS)})")
        reflectors = self.cluster.topo.reflector_hosts()
        if daemon == "routereflector":
            if host not in reflectors:
                raise FaultError(f"routereflector does not run in {host} ("
                                 + (f"the route reflectors are {', '.join(reflectors)})" if reflectors
                                    else "this topology has no route reflectors)"))
            return
        if host in reflectors:
            raise FaultError(f"{host} is a route reflector, not a Calico host: its BIRD is the daemon routereflector")
        self._calico_host(host)
        if daemon == "etcd" and host != self.cluster.topo.etcd_host:
            raise FaultError(f"etcd does not run in {host} (it runs in {self.cluster.topo.etcd_host})")

    def _daemon_pid(self, host: str, daemon: str) -> int:
        self._check_daemon(host, daemon)
        pid = self._running_pid(host, daemon)
        if pid is None:
            raise FaultError(f"{daemon} is not running in {host}")
        return pid

    def _running_pid(self, host: str, daemon: str) -> int | None:
        state = self.cluster.host(host).state_dir
        if daemon in ("bird", "routereflector"):
            pid = self._bird_pid(host)
        elif daemon == "calico-node":
            pid = NodePaths(state / "run", state / "log").running_pid()
        elif daemon == "dockerd":
            process = self.cluster.dockerds.get(host)
            pid = process.pid if process is not None else None
        else:
            process = self.cluster.etcd_process
            pid = process.pid if process is not None else None
        return pid if pid is not None and pids.alive(pid) else None

    def _bird_pid(self, host: str) -> int | None:
        try:
            return int((self.cluster.host(host).state_dir / "run" / "bird.pid").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _node_run_command(pid: int) -> str:
        """`calicoctl node run` with the options calico-node was started with (from its argv)."""
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        options, words = [], argv[argv.index("calisim.node") + 1:]
        for index, word in enumerate(words):
            if word in ("--name", "--ip", "--as", "--backend"):
                options += [word, words[index + 1]]
            elif word == "--no-default-ippools":
                options.append(word)
        return "calicoctl node run " + " ".join(options)

    # -- partitions -------------------------------------------------------------------------
    def partition(self, host: str, peers: list[str] | None = None, from_etcd: bool = False) -> None:
        """Cut host off in the underlay: from everything, from etcd's client port, or from peers."""
        self._calico_host(host)
        peers = list(peers or [])
        if from_etcd and peers:
            raise FaultError("partition from etcd or from hosts, not both")
        if from_etcd and host == self.cluster.topo.etcd_host:
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
            self._calico_host(host)
            if host not in self.partitions:
                raise FaultError(f"{host} is not partitioned")
        for name in [host] if host else list(self.partitions):
            del self.partitions[name]
            self._apply_partition(name)
        self._record(f"heal {host or 'all'}")

    def _apply_partition(self, host: str) -> None:
        for link in self._node_links(host):
            self._apply_bpf(self._impaired_end(link))

    # -- hosts ------------------------------------------------------------------------------
    def crash(self, host: str) -> None:
        """A power cut: the host falls silent on the wire first (so no FIN or Cease leaves it),
        then every process of the host and of its containers is gone at once (SIGKILL)."""
        node = self._calico_host(host)
        if host in self.crashed:
            raise FaultError(f"{host} has crashed already (boot it)")
        self.crashed.add(host)
        self._apply_partition(host)
        in_host = {pid for pid in self._processes_in(node)}
        victims = pids.descendants(in_host) - {node.pid, os.getpid()}
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in victims:
            pids.wait_gone(pid)
        if self.cluster.dockerds.get(host) is not None:
            self.cluster.dockerds.pop(host).wait()
        if host == self.cluster.topo.etcd_host and self.cluster.etcd_process is not None:
            self.cluster.etcd_process.wait()
        self._record(f"crash {host} ({len(victims)} processes)")

    def boot(self, host: str) -> None:
        """Back from a crash: the kernel's state as after a reboot (no workload links, tunnels,
        Calico routes or rules), an empty /var/run/calico and /run/docker, dockerd (and etcd, if
        it lives here) running again, the wire live; ready for `calicoctl node run`."""
        node = self._calico_host(host)
        if host not in self.crashed:
            raise FaultError(f"{host} has not crashed")
        self._reset_kernel_state(node)
        self._empty_run_directories(node)
        if host == self.cluster.topo.etcd_host:
            self.cluster.restart_etcd()
        if self.cluster.docker:
            self.cluster.start_dockerd(host)
        self.crashed.discard(host)
        self.daemons = {k: v for k, v in self.daemons.items() if k[0] != host}
        self._apply_partition(host)
        self._record(f"boot {host}")

    @staticmethod
    def _reset_kernel_state(node) -> None:
        keep = set(node.intfNames()) | {"lo"}
        shown = nsexec(node.pid, "ip", "-o", "link", "show")
        for line in shown.stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name not in keep:
                nsexec(node.pid, "ip", "link", "del", "dev", name, check=False)
        for proto in ("bird", "static", "80"):
            nsexec(node.pid, "ip", "route", "flush", "proto", proto, check=False)
        nsexec(node.pid, "nft", "flush", "ruleset", check=False)
        for intf in node.intfNames():
            nsexec(node.pid, "tc", "qdisc", "del", "dev", intf, "clsact", check=False)

    @staticmethod
    def _empty_run_directories(node) -> None:
        """/var/run/calico and /run/docker are tmpfs on a real host: nothing survives a reboot
        (the eBPF IPIP backend's bpffs, mounted in the host's mount namespace, goes too)."""
        subprocess.run(["nsenter", "-t", str(node.pid), "-m", "--", "umount", "/var/run/calico/bpf"], capture_output=True)
        for directory in (node.state_dir / "run", node.state_dir / "docker"):
            for entry in directory.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        (node.state_dir / "docker" / "plugins").mkdir(exist_ok=True)

    def _processes_in(self, node) -> list[int]:
        return pids.in_namespace(node.netns_inode())

    # -- queries ----------------------------------------------------------------------------
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

    def close(self) -> None:
        """Unmount the pins' bpffs (the programs go with the namespaces they are attached in)."""
        if self.pin_root.is_dir():
            subprocess.run(["umount", str(self.pin_root)], capture_output=True)

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

    # -- eBPF -------------------------------------------------------------------------------
    def _end_config(self, intf) -> tuple[Impairment, bool, list[bytes]]:
        """What the program on intf must do: the link's impairment (without netem), whether to
        drop everything, and the blocked peers, from the partitions and crashes of its far end."""
        link = intf.link
        far = link.intf1 if link.intf2 is intf else link.intf2
        impairment = Impairment() if netem_available() else \
            self.links.get(self._link_key(link.intf1.node.name, link.intf2.node.name), Impairment())
        host = far.node.name
        drop_all = host in self.crashed
        blocked: list[bytes] = []
        partition = self.partitions.get(host)
        if partition is not None and not drop_all:
            if partition.etcd:
                blocked.append(self._peer_key(self.cluster.topo.host_ip(self.cluster.topo.etcd_host), ETCD_CLIENT_PORT))
            elif not partition.peers:
                drop_all = True
            for peer in partition.peers:
                for peer_intf in self._node(peer).intfList():
                    if peer_intf.IP():
                        blocked.append(self._peer_key(peer_intf.IP()))
                    if peer_intf.MAC() and peer_intf.name != "lo":
                        blocked.append(self._peer_key(mac=peer_intf.MAC()))
        return impairment, drop_all, blocked

    @staticmethod
    def _peer_key(ip: str | None = None, port: int = 0, mac: str | None = None) -> bytes:
        import socket

        address = socket.inet_aton(ip) if ip else bytes(4)
        hardware = bytes.fromhex(mac.replace(":", "")) if mac else bytes(6)
        return struct.pack("=4sH6s", address, port, hardware)

    def _apply_bpf(self, intf) -> None:
        """Load a fresh copy of the program for intf with its config, or take it off if idle."""
        impairment, drop_all, blocked = self._end_config(intf)
        pid, name = intf.node.pid, intf.name
        pins = self.pin_root / f"{intf.node.name}-{name}"
        idle = not (impairment.loss or impairment.corrupt or impairment.duplicate or drop_all or blocked)
        if idle:
            for direction in ("ingress", "egress"):
                nsexec(pid, "tc", "filter", "del", "dev", name, direction, "pref", str(FILTER_PREF), check=False)
            if pins.exists():
                shutil.rmtree(pins)
            return
        if not BPF_OBJECT.exists():
            raise FaultError(f"{BPF_OBJECT} is missing: run `make setup` to build it")
        self._mount_pin_root()
        if pins.exists():
            shutil.rmtree(pins)
        pins.mkdir()
        _bpftool("prog", "loadall", str(BPF_OBJECT), str(pins / "progs"), "pinmaps", str(pins / "maps"))
        value = struct.pack("=4I", threshold(impairment.loss), threshold(impairment.corrupt),
                            threshold(impairment.duplicate), int(drop_all))
        _bpftool("map", "update", "pinned", str(pins / "maps" / "config"), "key", *_hex(bytes(4)), "value", *_hex(value))
        for key in blocked:
            _bpftool("map", "update", "pinned", str(pins / "maps" / "blocked"), "key", *_hex(key), "value", "1")
        nsexec(pid, "tc", "qdisc", "add", "dev", name, "clsact", check=False)  # EEXIST when attached before
        for direction in ("ingress", "egress"):
            nsexec(pid, "tc", "filter", "replace", "dev", name, direction, "pref", str(FILTER_PREF), "handle", "1",
                   "bpf", "direct-action", "pinned", str(pins / "progs" / f"impair_{direction}"))

    def _mount_pin_root(self) -> None:
        from ..felix.ipip import is_bpffs

        self.pin_root.mkdir(exist_ok=True)
        if not is_bpffs(self.pin_root):
            subprocess.run(["mount", "-t", "bpf", "bpf", str(self.pin_root)], check=True, capture_output=True)


def _bpftool(*argv: str) -> None:
    done = subprocess.run(["bpftool", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise FaultError(f"bpftool {argv[0]} {argv[1]}: {done.stderr.strip()[-300:]}")


def _hex(data: bytes) -> list[str]:
    return ["hex", *(f"{byte:02x}" for byte in data)]


# -- the command face: `calisim fault ...` and transcript steps `lab$ calisim fault ...` ----------
class _FaultParser(argparse.ArgumentParser):
    """argparse that raises FaultError (one line) instead of exiting: the lab answers it."""

    def error(self, message: str) -> None:
        raise FaultError(f"fault: {message}")


def command_parser(prog: str = "calisim fault") -> argparse.ArgumentParser:
    """The verbs of `calisim fault`, one per Faults method."""
    parser = _FaultParser(prog=prog, description="break a running cluster on purpose (calisim.emulation.faults)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def link_verb(name: str, help: str, *values: str) -> argparse.ArgumentParser:
        verb = verbs.add_parser(name, help=help)
        verb.add_argument("a", metavar="A")
        verb.add_argument("b", metavar="B")
        for value in values:
            verb.add_argument(value.lower(), metavar=value)
        return verb

    link_verb("link", "take the link between nodes A and B (e.g. host2 s1) down or up", "STATE")
    for name in ("loss", "corrupt", "duplicate"):
        link_verb(name, f"{name} PERCENT of the packets on the link A-B, both ways", "PERCENT")
    delay = link_verb("delay", "delay the link A-B (needs the kernel's netem)", "MS")
    delay.add_argument("jitter_ms", metavar="JITTER_MS", nargs="?", default="0")
    link_verb("rate", "limit the link A-B, e.g. 10mbit", "RATE")
    link_verb("clear", "lift every impairment of the link A-B")
    for name in (*SIGNALS, "start"):
        verb = verbs.add_parser(name, help=f"{name} DAEMON on HOST" if name != "start" else "start a daemon left down")
        verb.add_argument("host", metavar="HOST")
        verb.add_argument("daemon", metavar="DAEMON")
    partition = verbs.add_parser("partition", help="drop HOST's traffic in the underlay (all, from etcd, or from HOSTs)")
    partition.add_argument("host", metavar="HOST")
    partition.add_argument("peers", metavar="PEER", nargs="*")
    partition.add_argument("--from", dest="from_", metavar="etcd", choices=("etcd",))
    heal = verbs.add_parser("heal", help="lift the partition of HOST (without HOST: every partition)")
    heal.add_argument("host", metavar="HOST", nargs="?")
    for name, help in (("crash", "every process of HOST and its containers gone at once"),
                       ("boot", "a crashed HOST back, ready for calicoctl node run")):
        verbs.add_parser(name, help=help).add_argument("host", metavar="HOST")
    verbs.add_parser("list", help="the faults in force")
    return parser


def check_values(args: argparse.Namespace) -> None:
    """The values of a parsed command line (percent, rate, milliseconds, link state), checked
    before anything is done: what can be refused without the cluster is refused here."""
    if args.verb == "link" and args.state not in ("down", "up"):
        raise FaultError(f"fault link: state must be down or up, not {args.state!r}")
    if args.verb in ("loss", "corrupt", "duplicate"):
        parse_percent(args.percent, args.verb)
    if args.verb == "rate":
        parse_rate(args.rate)
    if args.verb == "delay":
        for value in (args.ms, args.jitter_ms):
            try:
                if float(value) < 0:
                    raise ValueError
            except ValueError:
                raise FaultError(f"fault delay: {value!r} is not a number of milliseconds") from None
    if args.verb == "partition" and args.from_ and args.peers:
        raise FaultError("fault partition: --from etcd or a list of hosts, not both")


def run_command(faults: Faults, argv: list[str]) -> str:
    """Carry out one `calisim fault` command line; returns what to print (FaultError if refused)."""
    args = command_parser().parse_args(argv)
    check_values(args)
    verb = args.verb
    if verb == "link":
        faults.link(args.a, args.b, args.state)
    elif verb in ("loss", "corrupt", "duplicate"):
        getattr(faults, verb)(args.a, args.b, args.percent)
    elif verb == "delay":
        faults.delay(args.a, args.b, args.ms, args.jitter_ms)
    elif verb == "rate":
        faults.rate(args.a, args.b, args.rate)
    elif verb == "clear":
        faults.clear(args.a, args.b)
    elif verb in (*SIGNALS, "start"):
        getattr(faults, verb)(args.host, args.daemon)
    elif verb == "partition":
        faults.partition(args.host, args.peers or None, from_etcd=args.from_ == "etcd")
    elif verb == "heal":
        faults.heal(args.host)
    elif verb in ("crash", "boot"):
        getattr(faults, verb)(args.host)
    else:
        return "\n".join(json.dumps(fault, sort_keys=True) for fault in faults.active())
    return f"fault {' '.join(argv)}: done"
