"""calicoctl node run / status: start this host's calico-node and report its BGP sessions.

Kept apart from the datastore commands so that `calicoctl node run`, run once per host when a
cluster starts, does not pay for importing the etcd client (calico-node itself talks to etcd).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket

from ..node import NodePaths, autodetection
from ..node.daemon import NodeDaemon
from ..process.daemon import DaemonError
from .errors import CommandError


def cmd_node_run(args: argparse.Namespace) -> str:
    """Start this host's calico-node and relay what its startup says (as the calico/node container does)."""
    name = args.name or socket.gethostname()
    from ..datastore.resources import ValidationError, parse_as_number, parse_name

    try:
        parse_name(name, "--name")
        if args.as_number is not None:
            parse_as_number(args.as_number, "--as")
    except ValidationError as error:
        raise CommandError(str(error)) from None
    check_ip(args.ip, 4, "--ip")
    check_ip(args.ip6, 6, "--ip6")
    try:
        autodetection.check_method(args.ip6_autodetection_method, 6)
    except autodetection.AutodetectionError as error:
        raise CommandError(str(error)) from None
    if not os.environ.get("ETCD_ENDPOINTS"):
        raise CommandError("ETCD_ENDPOINTS is not set; point it at the cluster's etcd (e.g. http://192.168.3.229:2379)")
    paths = NodePaths()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    options = ["--name", name, "--backend", args.backend]
    if args.ip and args.ip != "autodetect":
        options += ["--ip", args.ip]
    if args.ip6:
        options += ["--ip6", args.ip6]
    if args.ip6_autodetection_method != autodetection.FIRST_FOUND:
        options += ["--ip6-autodetection-method", args.ip6_autodetection_method]
    if args.as_number is not None:
        options += ["--as", str(parse_as_number(args.as_number))]
    if args.no_default_ippools:
        options.append("--no-default-ippools")
    daemon = NodeDaemon(paths, options)
    if daemon.stop_running():
        print("Removing old calico-node (was running).")
    try:
        return daemon.run()
    except DaemonError as error:
        raise CommandError(str(error)) from None


def check_ip(value: str | None, version: int, flag: str) -> None:
    """calicoctl's own check of --ip and --ip6: an address of that version, or autodetect
    (calico-node then checks that the host has it)."""
    if value is None or value == "autodetect":
        return
    try:
        address = ipaddress.ip_interface(value)
    except ValueError:
        raise CommandError(f"Error executing command: invalid IP address specified: {value}") from None
    if address.version != version:
        raise CommandError(f"Error executing command: {flag} is wrong IP version")


def cmd_node_status() -> str:
    from ..node import bird
    from .output import boxed_table

    paths = NodePaths()
    if paths.running_pid() is None:
        raise CommandError("Calico process is not running.")
    try:
        peers = bird.bgp_peer_statuses(bird.BirdControl(paths.bird_socket).protocols())
    except bird.BirdError as error:
        raise CommandError("Calico process is running.\n\n"
                           f"Error executing command: unable to connect to BIRDv4 socket: {error}")
    lines = ["Calico process is running."]
    for version in (4, 6):  # calicoctl asks BIRD and then bird6; here one BIRD has both
        family = [p for p in peers if ipaddress.ip_address(p.peer_ip).version == version]
        lines += ["", f"IPv{version} BGP status"]
        if family:
            lines.append(boxed_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                                     [[p.peer_ip, p.peer_type, p.state, p.since, p.info] for p in family]).rstrip("\n"))
        else:
            lines.append(f"No IPv{version} peers found.")
    return "\n".join(lines + [""])
