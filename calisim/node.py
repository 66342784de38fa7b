"""calico/node: the per-host process that `calicoctl node run` starts.

As in Calico's container it does these jobs: *startup* (enable forwarding, register the node in
etcd, create the default pool when there is none), *BIRD* (started and restarted as a child),
*confd* (watch etcd, re-render BIRD's config, check it with ``bird -p``, reload BIRD through
its control socket), *Felix* (program workload routes and ARP, see felix.py) and the
*libnetwork plugins* (see libnetwork.py).  It talks to the world only through etcd, BIRD's socket and its files in
/var/run/calico and /var/log/calico, so it can be started, stopped and tested on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import ipaddress
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from . import bird, felix, ipip, keys, policy, vxlan
from .datastore import Datastore, DatastoreError, Txn
from .ipam import IPAM, ConflictError, IPAMError
from .libnetwork import IpamDriver, NetworkDriver, PluginServer
from .nodepaths import NodePaths
from .resources import IPPool, Node

DEFAULT_POOL = IPPool(ipaddress.ip_network("192.168.0.0/16"))
DEBOUNCE = 0.2  # seconds to gather a burst of etcd changes into one BIRD reload
RESYNC = 5.0  # seconds between passes without any change, so a failed pass heals itself
ETCD_WAIT = 60.0  # how long startup waits for etcd, as calico/node's "Waiting for etcd connection..."
SKIPPED_INTERFACES = ("lo", "cali", "tunl", "vxlan.calico", "docker")
log = logging.getLogger("calico-node")


class StartupError(RuntimeError):
    """The node cannot start (bad address, name clash, etcd unreachable)."""


@dataclass(frozen=True)
class NodeOptions:
    name: str
    ip: ipaddress.IPv4Interface | None = None  # None: autodetect
    as_number: int | None = None
    default_pools: bool = True
    backend: str = "bird"
    libnetwork: bool = True  # serve the `calico` and `calico-ipam` Docker plugins (CALICO_LIBNETWORK_ENABLED)
    ipip_backend: str = "auto"  # kernel, ebpf, userspace, or auto: the best this machine has (CALICO_IPIP_BACKEND)


def autodetect_ipv4() -> ipaddress.IPv4Interface:
    """The first global IPv4 address on an interface that is not Calico's own (Calico's 'first-found')."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for address in ipr.get_addr(family=2):
            name = names.get(address["index"], "")
            if address["scope"] == 0 and not name.startswith(SKIPPED_INTERFACES):
                return ipaddress.ip_interface(f"{address.get_attr('IFA_ADDRESS')}/{address['prefixlen']}")
    raise StartupError("Couldn't autodetect a management IPv4 address; please provide one with --ip")


def enable_forwarding() -> None:
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


async def register(ds: Datastore, options: NodeOptions) -> list[str]:
    """Calico's startup: global defaults, the node's keys, the default pool.  Returns what it says."""
    said = []
    for key, value in ((keys.READY, True), (keys.GLOBAL_AS, str(keys.DEFAULT_AS)),
                       (keys.NODE_MESH, {"enabled": True}),
                       (keys.IPAM_CONFIG, {"strict_affinity": False, "auto_allocate_blocks": True})):
        await ds.create(key, value)  # a no-op where another node set it first
    if options.ip is None:
        ip = await asyncio.to_thread(autodetect_ipv4)  # pyroute2's blocking IPRoute runs its own loop
        said.append(f"Autodetected IPv4 address {ip.ip} on the host's interfaces")
    else:
        ip = options.ip
        said.append(f"Using IPv4 address {ip}")
    nodes = await Node.load_all(ds)
    for node in nodes:
        if node.node_name != options.name and node.ipv4 is not None and node.ipv4.ip == ip.ip:
            raise StartupError(f"Calico node '{node.node_name}' is already using the IPv4 address {ip.ip}. "
                               "Please check your node name and IP address settings.")
    existing = next((n for n in nodes if n.node_name == options.name), None)
    as_number = options.as_number if options.as_number is not None else (existing.as_number if existing else None)
    node = Node(options.name, ip, existing.ipv6 if existing else None, as_number)
    txn = Txn()
    for key in node.owned_keys():
        if key not in node.writes():
            txn.delete(key)
    for key, value in node.writes().items():
        txn.put(key, value)
    await ds.commit(txn)
    said.append("Using global AS number" if as_number is None else f"Using AS number {as_number}")
    said.append(f"Calico node name:  {options.name}")
    if options.default_pools and not await IPPool.load_all(ds):
        if await ds.create(DEFAULT_POOL.primary_key, DEFAULT_POOL.value()):
            said.append(f"Created default IPv4 pool ({DEFAULT_POOL.cidr}) with NAT outgoing false. IPIP mode: off")
    return said


async def register_when_etcd_answers(ds: Datastore, options: NodeOptions, report) -> list[str]:
    """Register, retrying while etcd is unreachable or overloaded, up to ETCD_WAIT seconds."""
    deadline = asyncio.get_running_loop().time() + ETCD_WAIT
    delay = 0.5
    while True:
        try:
            return await register(ds, options)
        except DatastoreError as error:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise StartupError(f"etcd did not answer within {ETCD_WAIT:.0f}s: {error}") from error
            report(f"Waiting for etcd connection... ({error})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def next_pass(changed: asyncio.Event) -> None:
    """Wait for a change (or RESYNC seconds: Calico's agents resync), let a burst settle, go."""
    try:
        await asyncio.wait_for(changed.wait(), timeout=RESYNC)
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(DEBOUNCE)
    changed.clear()


class Supervisor:
    """Runs BIRD as a child and keeps its config equal to what etcd says (Calico's confd)."""

    def __init__(self, ds: Datastore, name: str, paths: NodePaths, ipip_backend: str = "userspace"):
        self.ds = ds
        self.name = name
        self.paths = paths
        self.ipip_backend = ipip_backend
        self.tunnel: ipip.KernelTunnel | ipip.EbpfTunnel | ipip.UserspaceTunnel | None = None
        self.control = bird.BirdControl(paths.bird_socket)
        self.changed = asyncio.Event()
        self.bird: asyncio.subprocess.Process | None = None
        self.prefixes = bird.datastore_prefixes(name)
        self.workloads_changed = asyncio.Event()
        self.workloads_changed.set()  # program what etcd already holds
        self.vxlan_changed = asyncio.Event()
        self.vxlan_changed.set()
        self.policy_changed = asyncio.Event()
        self.policy_changed.set()
        self.policy_applied: str | None = None
        self.ipam = IPAM(ds)

    async def render_config(self) -> bool:
        """Render from etcd and write the file if `bird -p` accepts it; True if it changed."""
        entries = {}
        for prefix in self.prefixes:
            entries.update({entry.key: entry.value for entry in await self.ds.list(prefix)})
        return bird.write_checked(bird.render(bird.bird_config(entries, self.name)), self.paths.bird_config)

    async def program_tunnel(self) -> ipaddress.IPv4Address | None:
        """tunl0 with the host's tunnel address while an IPIP pool exists (Felix's IpInIp part);
        returns the address."""
        address = await self.ipam.ensure_tunnel_address(self.name)
        if address is None and self.tunnel is None:
            return None
        if self.tunnel is None:
            host_ip = await self.ds.value(keys.bgp_host_ip_v4(self.name))
            self.tunnel = ipip.make_tunnel(self.ipip_backend, self.paths.run_dir)
            await asyncio.to_thread(self.tunnel.start, host_ip)
            log.info("IPIP tunnel %s up with the %s backend", ipip.TUNNEL, self.tunnel.name)
        await asyncio.to_thread(ipip.set_tunnel_address, address)
        return address

    async def start_bird(self) -> None:
        self.paths.bird_socket.unlink(missing_ok=True)
        with open(self.paths.bird_log, "ab") as logfile:
            self.bird = await asyncio.create_subprocess_exec(
                *bird.command_line(self.paths.bird_config, self.paths.bird_socket, self.paths.bird_pid_file),
                stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=logfile)
        await self.wait_for_bird_socket()
        log.info("BIRD started (pid %d)", self.bird.pid)

    async def wait_for_bird_socket(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.bird is not None and self.bird.returncode is not None:
                raise StartupError(f"BIRD exited with code {self.bird.returncode}; see {self.paths.bird_log}")
            try:
                self.control.command("show status")
                return
            except bird.BirdError:
                if asyncio.get_running_loop().time() > deadline:
                    raise StartupError(f"BIRD did not open {self.paths.bird_socket} within {timeout:.0f}s")
                await asyncio.sleep(0.05)

    async def watch(self) -> None:
        """Set `changed` on every relevant etcd event; after a lost watch, resync and watch again."""
        backoff = 0.5
        while True:
            try:
                async for event in self.ds.watch("/calico/"):
                    backoff = 0.5
                    if event.key.startswith(tuple(self.prefixes)):
                        self.changed.set()
                    if event.key.startswith(felix.workloads_prefix(self.name)):
                        self.workloads_changed.set()
                    if event.key.startswith(tuple(vxlan.datastore_prefixes())):
                        self.vxlan_changed.set()
                    if event.key.startswith(tuple(policy.datastore_prefixes())):
                        self.policy_changed.set()
            except DatastoreError as error:
                log.warning("etcd watch lost (%s); retrying in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                self.changed.set()
                self.workloads_changed.set()
                self.vxlan_changed.set()
                self.policy_changed.set()

    async def reconcile(self) -> None:
        """Re-render after each burst of changes (and every RESYNC seconds, as Calico's agents resync);
        a failed pass keeps BIRD on its last good config and is tried again."""
        while True:
            await next_pass(self.changed)
            try:
                await self.program_tunnel()  # pools may have come, gone or changed IPIP
                if await self.render_config():
                    log.info("BIRD config changed; reloading: %s", self.control.configure())
            except (bird.BirdError, DatastoreError, IPAMError, ConflictError, OSError) as error:
                log.error("kept the last good BIRD config: %s", error)
            except Exception:  # e.g. netlink refusing tunl0's address: log it, try again next pass
                log.exception("kept the last good BIRD config")

    async def program_vxlan(self) -> None:
        """Felix's VXLAN part: vxlan.calico with a tunnel address while a VXLAN pool exists, its
        MAC published in etcd, and every other host's neighbour, FDB entry and block routes."""
        while True:
            await next_pass(self.vxlan_changed)
            try:
                await self.ipam.ensure_tunnel_address(self.name, "vxlan")
                entries = {}
                for prefix in vxlan.datastore_prefixes():
                    entries.update({entry.key: entry.value for entry in await self.ds.list(prefix)})
                host_ip = entries[keys.host_bird_ip(self.name)]
                mac = await asyncio.to_thread(vxlan.apply, vxlan.desired(entries, self.name), host_ip)
                mac_key = keys.host_config(self.name, vxlan.MAC_PARAM)
                if mac != entries.get(mac_key):
                    await self.ds.commit(Txn().put(mac_key, mac) if mac else Txn().delete(mac_key))
            except (DatastoreError, IPAMError, ConflictError, OSError, KeyError) as error:
                log.error("VXLAN dataplane not programmed, retrying: %s", error)
                self.vxlan_changed.set()
            except Exception:  # a bug must not end VXLAN programming
                log.exception("VXLAN dataplane not programmed")

    async def program_policy(self) -> None:
        """Felix's policy part: this host's nftables table, recomputed from etcd after every
        change; a ruleset that fails to render or load leaves the last good one in place."""
        while True:
            await next_pass(self.policy_changed)
            try:
                entries = {}
                for prefix in policy.datastore_prefixes():
                    entries.update({entry.key: entry.value for entry in await self.ds.list(prefix)})
                model = policy.load(entries)
                text = policy.render(model, self.name)
                if text != self.policy_applied:
                    await asyncio.to_thread(policy.apply, text)
                    self.policy_applied = text
                    (self.paths.run_dir / "policy.nft").write_text(text)
                    log.info("policy programmed: %s", policy.summary(model, self.name))
            except DatastoreError as error:
                log.error("policy not recomputed, retrying: %s", error)
                self.policy_changed.set()
            except (policy.PolicyError, OSError) as error:
                log.error("kept the last good policy: %s", error)
            except Exception:  # a bug must not end enforcement of later changes
                log.exception("kept the last good policy")

    async def program_workloads(self) -> None:
        """Felix: keep the kernel's workload routes, ARP entries and proxy ARP equal to etcd's
        endpoints; poll while an endpoint's interface is still to come (Join creates it)."""
        missing: set[str] = set()
        while True:
            try:
                await asyncio.wait_for(self.workloads_changed.wait(), timeout=0.2 if missing else None)
            except asyncio.TimeoutError:
                pass
            self.workloads_changed.clear()
            try:
                entries = {e.key: e.value for e in await self.ds.list(felix.workloads_prefix(self.name))}
                missing = await asyncio.to_thread(felix.apply, felix.desired_interfaces(entries, self.name))
            except (DatastoreError, OSError) as error:
                log.error("workload dataplane not programmed, retrying: %s", error)
                missing = {"(retry)"}
            except Exception:  # a bug must not end the programming of later workloads
                log.exception("workload dataplane not programmed, retrying")
                missing = {"(retry)"}

    async def keep_bird_running(self) -> None:
        while True:
            assert self.bird is not None
            code = await self.bird.wait()
            log.error("BIRD exited with code %s; restarting it", code)
            await asyncio.sleep(1)
            await self.start_bird()

    async def stop_bird(self) -> None:
        if self.bird is not None and self.bird.returncode is None:
            self.bird.terminate()
            try:
                await asyncio.wait_for(self.bird.wait(), 5)
            except asyncio.TimeoutError:
                self.bird.kill()
                await self.bird.wait()
        self.paths.bird_pid_file.unlink(missing_ok=True)


async def run_node(options: NodeOptions, paths: NodePaths, report) -> None:
    """Start up, tell the caller (report), then supervise until SIGTERM."""
    ds = Datastore.from_env()
    backend = ipip.choose_backend(options.ipip_backend)
    supervisor = Supervisor(ds, options.name, paths, backend)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    plugins: list[PluginServer] = []
    try:
        enable_forwarding()
        report("Enabling IPv4 forwarding")
        for line in await register_when_etcd_answers(ds, options, report):
            report(line)
        report(f"IPIP backend: {backend}" + (" (no ipip module in this kernel)" if backend != "kernel"
                                             and options.ipip_backend == "auto" else ""))
        tunnel = await supervisor.program_tunnel()
        if tunnel is not None:
            report(f"Assigned IPIP tunnel address {tunnel}")
        if options.backend == "bird":
            watcher = asyncio.create_task(supervisor.watch())
            await supervisor.render_config()
            await supervisor.start_bird()
            tasks = [watcher, asyncio.create_task(supervisor.reconcile()),
                     asyncio.create_task(supervisor.keep_bird_running()),
                     asyncio.create_task(supervisor.program_workloads()),
                     asyncio.create_task(supervisor.program_vxlan()),
                     asyncio.create_task(supervisor.program_policy())]
        else:
            tasks = []
        if options.libnetwork:
            plugins = [PluginServer(paths.plugin_dir / "calico.sock", NetworkDriver(ds, options.name), loop),
                       PluginServer(paths.plugin_dir / "calico-ipam.sock", IpamDriver(ds, options.name), loop)]
            for plugin in plugins:
                plugin.start()
            report(f"CALICO_LIBNETWORK_ENABLED is true - serving the calico and calico-ipam plugins in {paths.plugin_dir}")
        paths.pid_file.write_text(f"{os.getpid()}\n")
        report("Calico node started successfully", final=True)
        await stop.wait()
        log.info("stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for plugin in plugins:
            plugin.stop()
        if supervisor.tunnel is not None:
            supervisor.tunnel.stop()
        await supervisor.stop_bird()
        paths.pid_file.unlink(missing_ok=True)
        await ds.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="calico-node", description="calisim's calico/node (started by calicoctl node run)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--ip", type=ipaddress.IPv4Interface)
    parser.add_argument("--as", dest="as_number", type=int)
    parser.add_argument("--no-default-ippools", action="store_true")
    parser.add_argument("--backend", choices=("bird", "none"), default="bird")
    parser.add_argument("--status-fd", type=int, help="write startup lines here, then close it")
    args = parser.parse_args(argv)
    paths = NodePaths()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    # `kill -USR1 <calico-node>` appends every thread's stack to threads.log: how a stuck agent is read.
    faulthandler.register(signal.SIGUSR1, file=open(paths.thread_dump, "a"), all_threads=True)
    status = os.fdopen(args.status_fd, "w", buffering=1) if args.status_fd is not None else sys.stdout

    def report(line: str, final: bool = False) -> None:
        log.info("%s", line)
        status.write(f"{'READY' if final else 'SAY'} {line}\n")
        if final and status is not sys.stdout:
            status.close()

    libnetwork = os.environ.get("CALICO_LIBNETWORK_ENABLED", "true").lower() == "true"
    ipip_backend = os.environ.get("CALICO_IPIP_BACKEND", "auto")
    if ipip_backend not in ("auto", *ipip.BACKENDS):
        sys.exit(f"CALICO_IPIP_BACKEND must be auto, {', '.join(ipip.BACKENDS)}, not {ipip_backend!r}")
    options = NodeOptions(args.name, args.ip, args.as_number, not args.no_default_ippools, args.backend,
                          libnetwork, ipip_backend)
    try:
        asyncio.run(run_node(options, paths, report))
    except Exception as error:  # whatever stops startup must reach calicoctl, not just the log
        log.exception("calico-node failed")
        if not status.closed:
            status.write(f"ERROR {error}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
