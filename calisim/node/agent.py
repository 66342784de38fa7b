"""calico/node: the per-host process that `calicoctl node run` starts (`python -m calisim.node`).

As in Calico's container it runs these jobs: *startup* (startup.py: forwarding, registration,
the default pool), *confd* with *BIRD* (confd.py, bird/), *Felix* (calisim.felix) and the
*libnetwork plugins* (calisim.libnetwork).  One mirror of etcd's /calico/ keys, kept current by
one watch (datastore.Mirror), feeds confd and Felix.  It talks to
the world only through etcd, BIRD's socket and its files in /var/run/calico and
/var/log/calico, so it can be started, stopped and tested on its own.
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

from ..datastore import Datastore, Mirror
from ..felix import Felix, ipip, ruleset
from ..libnetwork import IpamDriver, NetworkDriver, PluginServer
from .confd import Confd
from .paths import NodePaths
from . import autodetection
from .startup import (NodeOptions, StartupStatus, enable_forwarding, env_bool, ipv6_pool_from_env, no_default_pools,
                      register_when_etcd_answers)

log = logging.getLogger("calico-node")


async def run_node(options: NodeOptions, paths: NodePaths, report) -> None:
    """Start up, tell the caller (report), then supervise until SIGTERM."""
    ds = Datastore.from_env()
    mirror = Mirror(ds)
    backend = ipip.choose_backend(options.ipip_backend)
    felix = Felix(ds, mirror.view, options.name, paths.run_dir, backend, options.ipv6_support)
    confd = Confd.for_node(mirror.view, options.name, paths, before_render=felix.program_tunnel)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    plugins: list[PluginServer] = []
    try:
        for line in enable_forwarding():
            report(line)
        if not options.ipv6_support:
            report("IPv6 support disabled through environment")
        for line in await register_when_etcd_answers(ds, options, report):
            report(line)
        report(f"IPIP backend: {backend}" + (" (no ipip module in this kernel)" if backend != "kernel"
                                             and options.ipip_backend == "auto" else ""))
        if options.backend == "bird":
            await mirror.load()  # before the tunnel: Felix reads the pools and its address from the mirror
        tunnel = await felix.program_tunnel()  # before BIRD, whose kernel routes of IPIP pools name tunl0
        if tunnel is not None:
            report(f"Assigned IPIP tunnel address {tunnel}")
        if options.backend == "bird":
            watcher = asyncio.create_task(mirror.follow())
            await confd.render_config()
            await confd.start_bird()
            tasks = [watcher, asyncio.create_task(confd.reconcile()),
                     asyncio.create_task(confd.keep_bird_running()), *felix.tasks()]
        else:
            tasks = []
        if options.libnetwork:
            driver = NetworkDriver(ds, options.name, felix.programmed if tasks else None)  # without Felix: no wait
            plugins = [PluginServer(paths.plugin_dir / "calico.sock", driver, loop),
                       PluginServer(paths.plugin_dir / "calico-ipam.sock", IpamDriver(ds, options.name), loop)]
            for plugin in plugins:
                plugin.start()
            report("CALICO_LIBNETWORK_ENABLED is true - serving the calico and calico-ipam plugins in "
                   f"{paths.plugin_dir}")
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
        felix.stop()
        await confd.stop_bird()
        paths.pid_file.unlink(missing_ok=True)
        await ds.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="calico-node",
                                     description="calisim's calico/node (started by calicoctl node run)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--ip", type=ipaddress.IPv4Interface)
    parser.add_argument("--ip6", help="an IPv6 address on this host, or autodetect")
    parser.add_argument("--as", dest="as_number", type=int)
    parser.add_argument("--ip6-autodetection-method",
                        default=os.environ.get("IP6_AUTODETECTION_METHOD") or autodetection.FIRST_FOUND)
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
    ruleset.keep_freed_memory()  # Felix's nft transactions reuse their memory instead of faulting it in anew
    status = StartupStatus(args.status_fd, log)
    libnetwork = os.environ.get("CALICO_LIBNETWORK_ENABLED", "true").lower() == "true"
    ipip_backend = os.environ.get("CALICO_IPIP_BACKEND", "auto")
    if ipip_backend not in ("auto", *ipip.BACKENDS):
        sys.exit(f"CALICO_IPIP_BACKEND must be auto, {', '.join(ipip.BACKENDS)}, not {ipip_backend!r}")
    try:
        options = NodeOptions(args.name, args.ip, args.ip6, args.as_number,
                              not (args.no_default_ippools or no_default_pools(os.environ)), args.backend,
                              libnetwork, ipip_backend, ipv6_pool_from_env(os.environ),
                              env_bool(os.environ, "FELIX_IPV6SUPPORT", True), args.ip6_autodetection_method)
        asyncio.run(run_node(options, paths, status.report))
    except Exception as error:
        log.exception("calico-node failed")
        status.fail(error)
        sys.exit(1)


