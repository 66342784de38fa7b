"""calico/routereflector: a BGP route reflector configured from etcd, on a host that is not a
Calico node (README "Beyond the mesh").

    routereflector run [--ip IP] [--ip6 IP6] [--cluster-id ID]   (ETCD_ENDPOINTS from the environment)

is our counterpart of `docker run ... -e IP=.. -e IP6=.. calico/routereflector`: it registers the
reflector under /calico/bgp/v1/rr_v4/<ip> (and rr_v6/<ip6> with --ip6; a key written there by hand
works too), then runs BIRD with a config rendered from etcd as that image's confd does for its bird
and bird6: per IP version, meshed with the other reflectors registered for it, an `rr client`
session to every node that has it as a global or node-specific bgpPeer of that version, next hops
passed through, and no kernel protocol, so no workload routes in this host's kernel.  Running it
again restarts it.  Files: /var/run/calico/{bird.cfg,bird.ctl,routereflector.pid} and
/var/log/calico/{routereflector.log,bird.log}, so `birdc -s /var/run/calico/bird.ctl` works here
as on a node.  Talks to etcd and BIRD's control socket only.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys

from ..datastore import Datastore, DatastoreError, Mirror, keys
from ..datastore.resources import ReflectorRegistration
from ..process.daemon import DaemonError
from . import bird
from .confd import Confd
from .daemon import NodeDaemon
from .paths import NodePaths
from .startup import StartupError, StartupStatus, autodetect_ipv4, chosen_ipv6

DEFAULT_CLUSTER_ID = "255.0.0.1"  # what Calico's system tests register reflectors with
ETCD_WAIT = 60.0
log = logging.getLogger("routereflector")


def reflector_paths() -> NodePaths:
    return NodePaths(daemon="routereflector", log_name="routereflector.log")


async def register(ds: Datastore, ip: str, cluster_id: str | None) -> str:
    """Write rr_v4/<ip> (rr_v6/<ip> for an IPv6 address) unless it is there already and no cluster ID was
    asked for; return the ID in use."""
    existing = await ds.get(keys.route_reflector(ip))
    if existing is not None and cluster_id is None:
        return ReflectorRegistration.from_value(existing.value).cluster_id
    registration = ReflectorRegistration(ip, cluster_id or DEFAULT_CLUSTER_ID)
    await ds.put(registration.key, registration.to_value())
    return registration.cluster_id


async def register_when_etcd_answers(ds: Datastore, ip: str, cluster_id: str | None, report) -> str:
    deadline = asyncio.get_running_loop().time() + ETCD_WAIT
    while True:
        try:
            return await register(ds, ip, cluster_id)
        except DatastoreError as error:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"etcd did not answer within {ETCD_WAIT:.0f}s: {error}") from error
            report(f"Waiting for etcd connection... ({error})")
            await asyncio.sleep(1)


async def serve(ip: str, ip6: str | None, cluster_id: str | None, paths: NodePaths, report) -> None:
    """Register (each address under its version's key), run BIRD from etcd's state until SIGTERM."""
    ds = Datastore.from_env()
    mirror = Mirror(ds)
    confd = Confd(mirror.view(bird.reflector_prefixes()), paths,
                  lambda entries: bird.render_reflector(bird.reflector_config(entries, ip, ip6)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks: list[asyncio.Task] = []
    try:
        for address in (ip, ip6) if ip6 else (ip,):
            chosen = await register_when_etcd_answers(ds, address, cluster_id, report)
            report(f"Route reflector {address} registered at {keys.route_reflector(address)} (cluster ID {chosen})")
        await mirror.load()
        await confd.render_config()
        await confd.start_bird()
        tasks = [asyncio.create_task(mirror.follow()), asyncio.create_task(confd.reconcile()),
                 asyncio.create_task(confd.keep_bird_running())]
        paths.pid_file.write_text(f"{os.getpid()}\n")
        report("Route reflector started successfully", final=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await confd.stop_bird()
        paths.pid_file.unlink(missing_ok=True)
        await ds.close()


def reflector_ipv4(spec: str | None) -> str:
    """--ip: an IPv4 address (an IPv6 one refused as calicoctl refuses it), or the host's first."""
    if spec is None:
        return str(autodetect_ipv4().ip)
    address = ipaddress.ip_address(spec)
    if address.version != 4:
        raise ValueError("--ip is wrong IP version")
    return str(address)


def reflector_ipv6(spec: str | None) -> str | None:
    """--ip6 as calico/node takes it: an IPv6 address this host has, or autodetect; None without it."""
    if spec is None:
        return None
    if spec != "autodetect" and ipaddress.ip_interface(spec).version != 6:
        raise ValueError("--ip6 is wrong IP version")
    address, _ = chosen_ipv6(spec)
    return str(address.ip)


def cmd_run(args: argparse.Namespace) -> str:
    """Start (or restart) the reflector in the background and relay what it says while starting."""
    if not os.environ.get("ETCD_ENDPOINTS"):
        raise DaemonError("ETCD_ENDPOINTS is not set; point it at the cluster's etcd")
    try:
        ip = reflector_ipv4(args.ip)
        ip6 = reflector_ipv6(args.ip6)
        cluster_id = str(ipaddress.IPv4Address(args.cluster_id)) if args.cluster_id else None
    except (ValueError, StartupError) as error:
        raise DaemonError(f"Error executing command: {error}") from None
    paths = reflector_paths()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    daemon = NodeDaemon(paths, ["serve", "--ip", ip] + (["--ip6", ip6] if ip6 else [])
                        + (["--cluster-id", cluster_id] if cluster_id else []),
                        module="calisim.node.routereflector", name=f"route reflector {ip}")
    if daemon.stop_running():
        print("Removing old route reflector (was running).")
    return daemon.run()


def cmd_serve(args: argparse.Namespace) -> None:
    paths = reflector_paths()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    status = StartupStatus(args.status_fd, log)
    try:
        asyncio.run(serve(args.ip, args.ip6, args.cluster_id, paths, status.report))
    except Exception as error:
        log.exception("route reflector failed")
        status.fail(error)
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routereflector", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="register this host as a route reflector and run its BIRD")
    run.add_argument("--ip", help="the reflector's IPv4 address (default: autodetected, as a node's)")
    run.add_argument("--ip6", help="its IPv6 address, or autodetect (first-found, as a node's); "
                                   "without it the reflector has no IPv6 sessions")
    run.add_argument("--cluster-id", help=f"its rr cluster id (default: the registered one, else {DEFAULT_CLUSTER_ID})")
    serve_parser = commands.add_parser("serve", help=argparse.SUPPRESS)
    serve_parser.add_argument("--ip", required=True)
    serve_parser.add_argument("--ip6")
    serve_parser.add_argument("--cluster-id")
    serve_parser.add_argument("--status-fd", type=int)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        cmd_serve(args)
        return
    try:
        print(cmd_run(args))
    except DaemonError as error:
        print(error)
        sys.exit(1)


if __name__ == "__main__":
    main()
