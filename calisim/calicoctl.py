"""calicoctl v1.0's command surface (calico-v1.md section 7) over calisim's datastore.

Input is validated whole before anything is written, and every write of a command is one etcd
transaction: a list with one bad item stores nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import yaml

from . import __version__, bird, keys
from .datastore import Datastore, DatastoreError, Synchronous, Txn
from .ipam import IPAM, IPAMError, parse_ipv4
from .node import NodePaths
from .output import boxed_table, padded_columns
from .resources import (IPPool, Resource, ValidationError, check_pool_overlaps, kind_named, parse_as_number,
                        parse_documents, parse_name)

NODE_START_TIMEOUT = 60.0
ACTIONS = {"create": "created", "replace": "replaced", "apply": "applied", "delete": "deleted"}


class CommandError(RuntimeError):
    """A calicoctl failure: printed as is, exit code 1."""


def read_resources(filename: str) -> list[Resource]:
    try:
        text = sys.stdin.read() if filename == "-" else open(filename, encoding="utf-8").read()
    except OSError as error:
        raise CommandError(f"Failed to read {filename}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CommandError(f"Failed to execute command: error parsing {filename} as YAML or JSON: {error}") from None
    if data is None or data == []:
        raise CommandError(f"Failed to execute command: {filename} contains no resources")
    try:
        return parse_documents(data)
    except ValidationError as error:
        raise CommandError(f"Failed to execute command: invalid resource: {error}") from None


def kind_label(resources: list[Resource]) -> str:
    kinds = {r.kind for r in resources}
    return f"'{kinds.pop()}' " if len(kinds) == 1 else ""


async def write(ds: Datastore, action: str, resources: list[Resource], skip: bool) -> int:
    """create/replace/apply/delete resources in one transaction; returns how many were written."""
    pools = [r for r in resources if isinstance(r, IPPool)]
    if pools and action != "delete":
        check_pool_overlaps(pools, await IPPool.load_all(ds))
    txn, written = Txn(), 0
    for resource in resources:
        exists = await ds.get(resource.primary_key) is not None
        if action == "create" and exists or action in ("replace", "delete") and not exists:
            if skip:
                continue
            raise ValidationError(f"resource {'already exists' if exists else 'does not exist'}: {resource.ident}")
        written += 1
        if action == "delete" and isinstance(resource, IPPool):
            continue  # deleted below, in IPAM's order
        if action == "delete":
            txn.require_present(resource.primary_key)
            for key in resource.removal_prefixes():
                if key.endswith("/"):
                    txn.delete_prefix(key)
                else:
                    txn.delete(key)
            continue
        if action == "create":
            txn.require_absent(resource.primary_key)
        elif action == "replace":
            txn.require_present(resource.primary_key)
        new = resource.writes()
        for key in resource.owned_keys():
            if key not in new:
                txn.delete(key)
        for key, value in new.items():
            txn.put(key, value)
    if written and not await ds.commit(txn):
        raise ValidationError("the datastore changed while writing (another client raced); nothing was stored")
    if action == "delete":
        ipam = IPAM(ds)
        for pool in pools:
            if await ds.get(pool.primary_key) is not None:
                await ipam.delete_pool(pool.cidr)
    return written


def cmd_write(ds: Synchronous, args: argparse.Namespace) -> str:
    action = args.command
    if action == "delete" and not args.filename:
        resources = [named_resource(args)]
    else:
        resources = read_resources(args.filename)
    skip = bool(getattr(args, "skip_exists", False) or getattr(args, "skip_not_exists", False))
    try:
        count = ds.run(write, action, resources, skip)
    except ValidationError as error:
        raise CommandError(f"Failed to {action} {kind_label(resources)}resource: {error}") from None
    return f"Successfully {ACTIONS[action]} {count} {kind_label(resources)}resource(s)"


def named_resource(args: argparse.Namespace) -> Resource:
    """The resource `delete KIND NAME [--scope --node]` names, built from a minimal document."""
    if not args.kind or not args.name:
        raise CommandError("delete needs KIND and NAME, or --filename")
    try:
        kind = kind_named(args.kind)
        if kind.kind == "ipPool":
            doc = {"metadata": {"cidr": args.name}, "spec": {}}
        elif kind.kind == "node":
            doc = {"metadata": {"name": args.name}, "spec": {}}
        else:
            metadata = {"scope": args.scope or ("node" if args.node else "global"), "peerIP": args.name}
            if args.node:
                metadata["node"] = args.node
            doc = {"metadata": metadata, "spec": {"asNumber": 1}}
        return kind.from_document({"apiVersion": "v1", "kind": kind.kind, **doc})
    except ValidationError as error:
        raise CommandError(f"Failed to delete resource: {error}") from None


def cmd_get(ds: Synchronous, args: argparse.Namespace) -> str:
    if args.filename:
        wanted = read_resources(args.filename)
        kinds = [type(r) for r in wanted]
        names = {(r.kind, r.name) for r in wanted}
    else:
        if not args.kind:
            raise CommandError("get needs KIND [NAME] or --filename")
        try:
            kinds = [kind_named(args.kind)]
        except ValidationError as error:
            raise CommandError(str(error)) from None
        names = {(kinds[0].kind, args.name)} if args.name else None
    found: list[Resource] = []
    for kind in dict.fromkeys(kinds):
        for resource in ds.run(kind.load_all):
            if names is not None and (resource.kind, resource.name) not in names:
                continue
            if args.scope and getattr(resource, "scope", args.scope) != args.scope:
                continue
            if args.node and getattr(resource, "node", args.node) != args.node:
                continue
            found.append(resource)
    if names is not None and not found:
        raise CommandError(f"Failed to get resources: resource does not exist: {kinds[0].kind} {args.name or ''}".rstrip())
    if args.output in ("yaml", "json"):
        documents = [r.document() for r in found]
        if args.output == "json":
            return json.dumps(documents, indent=2)
        return yaml.safe_dump(documents, default_flow_style=False, sort_keys=False).rstrip("\n")
    wide = args.output == "wide"
    context = {"global_as": ds.value(keys.GLOBAL_AS, str(keys.DEFAULT_AS))}
    tables = [padded_columns(kind.wide_columns if wide else kind.ps_columns,
                             [r.row(wide, context) for r in found if isinstance(r, kind)])
              for kind in dict.fromkeys(kinds)]
    return "\n".join(tables).rstrip("\n")  # one table per kind, as calicoctl prints them


CONFIG_KEYS = {
    "asnumber": "asNumber", "nodetonodemesh": "nodeToNodeMesh", "loglevel": "logLevel", "ipip": "ipip",
}
LOG_LEVELS = ("none", "debug", "info", "warning", "error", "critical")


def config_key(name: str, node: str | None) -> str:
    if name == "asNumber":
        return keys.bgp_host_as(node) if node else keys.GLOBAL_AS
    if name == "logLevel":
        return keys.host_config(node, "LogSeverityScreen") if node else keys.FELIX_CONFIG + "LogSeverityScreen"
    if node:
        raise CommandError(f"Error executing command: {name} is global; it does not take --node")
    return keys.NODE_MESH if name == "nodeToNodeMesh" else keys.FELIX_CONFIG + "IpInIpEnabled"


def config_value_for(name: str, value: str) -> Any:
    try:
        if name == "asNumber":
            return str(parse_as_number(value))
        if name in ("nodeToNodeMesh", "ipip"):
            if value not in ("on", "off"):
                raise ValidationError(f"{name} must be 'on' or 'off', not {value!r}")
            return {"enabled": value == "on"} if name == "nodeToNodeMesh" else str(value == "on").lower()
        if value not in LOG_LEVELS:
            raise ValidationError(f"logLevel must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return value
    except ValidationError as error:
        raise CommandError(f"Error executing command: {error}") from None


def config_shown(name: str, stored: Any) -> str:
    if name == "nodeToNodeMesh":
        return "on" if (stored or {"enabled": True}).get("enabled", True) else "off"
    if name == "ipip":
        return "on" if stored == "true" else "off"
    if name == "asNumber":
        return str(stored or keys.DEFAULT_AS)
    return str(stored or "info")


def cmd_config(ds: Synchronous, args: argparse.Namespace) -> str:
    name = CONFIG_KEYS.get(args.name.lower())
    if name is None:
        raise CommandError(f"Error executing command: invalid config name {args.name!r} "
                           f"(known: {', '.join(CONFIG_KEYS.values())})")
    if args.node:
        try:
            parse_name(args.node, "--node")
        except ValidationError as error:
            raise CommandError(str(error)) from None
    key = config_key(name, args.node)
    if args.action == "get":
        entry = ds.get(key)
        if entry is None and args.node:
            return ""
        return config_shown(name, entry.value if entry else None)
    if args.action == "unset":
        if not args.node:
            raise CommandError(f"Error executing command: only node-specific values can be unset (use --node)")
        ds.delete_prefix(key)
        return ""
    if args.value is None:
        raise CommandError("Error executing command: config set needs a VALUE")
    ds.put(key, config_value_for(name, args.value))
    return ""


def cmd_ipam(ds: Synchronous, args: argparse.Namespace) -> str:
    ipam = ds.wrap(IPAM(ds.target))
    try:
        ip = parse_ipv4(args.ip)
        if args.ipam_command == "show":
            attributes = ipam.attributes(ip)
            if attributes is None:
                return f"IP {ip} is not currently assigned in block"
            if not attributes.get("secondary"):
                return f"No attributes defined for IP {ip}"
            return "\n".join(f"{name}: {value}" for name, value in sorted(attributes["secondary"].items()))
        if ipam.release_ips([ip]):
            raise CommandError(f"IP address {ip} is not assigned")
        return f"Successfully released IP address {ip}"
    except IPAMError as error:
        raise CommandError(str(error)) from None


def stop_running_node(paths: NodePaths, timeout: float = 10.0) -> bool:
    pid = paths.running_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while paths.running_pid() == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    if paths.running_pid() == pid:
        os.kill(pid, signal.SIGKILL)
    return True


def cmd_node_run(args: argparse.Namespace) -> str:
    """Start this host's calico-node and relay what its startup says (as the calico/node container does)."""
    name = args.name or socket.gethostname()
    try:
        parse_name(name, "--name")
        if args.as_number is not None:
            parse_as_number(args.as_number, "--as")
    except ValidationError as error:
        raise CommandError(str(error)) from None
    if not os.environ.get("ETCD_ENDPOINTS"):
        raise CommandError("ETCD_ENDPOINTS is not set; point it at the cluster's etcd (e.g. http://192.168.3.229:2379)")
    paths = NodePaths()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    if stop_running_node(paths):
        print("Removing old calico-node (was running).")
    command = [sys.executable, "-m", "calisim.node", "--name", name, "--backend", args.backend]
    if args.ip and args.ip != "autodetect":
        command += ["--ip", args.ip]
    if args.as_number is not None:
        command += ["--as", str(parse_as_number(args.as_number))]
    if args.no_default_ippools:
        command.append("--no-default-ippools")
    read_end, write_end = os.pipe()
    with open(paths.node_log, "ab") as logfile:
        process = subprocess.Popen(command + ["--status-fd", str(write_end)], pass_fds=(write_end,),
                                   stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, start_new_session=True)
    os.close(write_end)
    print(f"Starting calico-node (pid {process.pid}); logs in {paths.log_dir}")
    with os.fdopen(read_end) as status:
        return relay_startup(status, process, paths)


def relay_startup(status, process: subprocess.Popen, paths: NodePaths) -> str:
    deadline = time.monotonic() + NODE_START_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([status], [], [], 0.5)
        if not ready:
            continue
        line = status.readline()
        if not line:
            break
        word, _, text = line.rstrip("\n").partition(" ")
        if word == "READY":
            return text
        if word == "ERROR":
            process.wait(timeout=10)
            raise CommandError(f"Calico node failed to start: {text}")
        print(text, flush=True)
    else:
        process.kill()
        process.wait()
        raise CommandError(f"calico-node did not finish starting within {NODE_START_TIMEOUT:.0f}s; see {paths.node_log}")
    code = process.wait(timeout=10)
    raise CommandError(f"calico-node exited with code {code} during startup; see {paths.node_log}")


def cmd_node_status() -> str:
    paths = NodePaths()
    if paths.running_pid() is None:
        raise CommandError("Calico process is not running.")
    try:
        peers = bird.bgp_peer_statuses(bird.BirdControl(paths.bird_socket).protocols())
    except bird.BirdError as error:
        raise CommandError(f"Calico process is running.\n\nError executing command: unable to connect to BIRDv4 socket: {error}")
    lines = ["Calico process is running.", "", "IPv4 BGP status"]
    if peers:
        lines.append(boxed_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                                 [[p.peer_ip, p.peer_type, p.state, p.since, p.info] for p in peers]).rstrip("\n"))
    else:
        lines.append("No IPv4 peers found.")
    lines += ["", "IPv6 BGP status", "No IPv6 peers found.", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calicoctl", description="calisim's calicoctl (Calico v1.0 command surface)")
    parser.add_argument("--version", action="version", version=f"calicoctl v1.0.0 (calisim {__version__})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for action in ("create", "replace", "apply"):
        sub = commands.add_parser(action, help=f"{action} resources from a file (yaml or json; - for stdin)")
        sub.add_argument("-f", "--filename", required=True)
        if action == "create":
            sub.add_argument("--skip-exists", action="store_true")
    for action in ("get", "delete"):
        sub = commands.add_parser(action, help=f"{action} resources by kind and name, or from a file")
        sub.add_argument("kind", nargs="?")
        sub.add_argument("name", nargs="?")
        sub.add_argument("-f", "--filename")
        sub.add_argument("--scope", choices=("global", "node"))
        sub.add_argument("--node")
        if action == "get":
            sub.add_argument("-o", "--output", default="ps", choices=("ps", "wide", "yaml", "json"))
        else:
            sub.add_argument("--skip-not-exists", action="store_true")
    config = commands.add_parser("config", help="get, set or unset asNumber, nodeToNodeMesh, logLevel, ipip")
    config.add_argument("action", choices=("get", "set", "unset"))
    config.add_argument("name")
    config.add_argument("value", nargs="?")
    config.add_argument("--node")
    node = commands.add_parser("node", help="run this host's calico-node, or show its BGP status")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run")
    run.add_argument("--name")
    run.add_argument("--ip")
    run.add_argument("--as", dest="as_number")
    run.add_argument("--backend", choices=("bird", "none"), default="bird")
    run.add_argument("--no-default-ippools", action="store_true")
    node_commands.add_parser("status")
    ipam = commands.add_parser("ipam", help="show or release an IP address's assignment")
    ipam_commands = ipam.add_subparsers(dest="ipam_command", required=True)
    for name in ("show", "release"):
        ipam_commands.add_parser(name).add_argument("--ip", required=True)
    commands.add_parser("version", help="print the version")
    return parser


def dispatch(args: argparse.Namespace) -> str:
    if args.command == "version":
        return f"Client Version:    v1.0.0 (calisim {__version__})"
    if args.command == "node":
        return cmd_node_run(args) if args.node_command == "run" else cmd_node_status()
    with Synchronous(Datastore.from_env()) as ds:
        if args.command == "config":
            return cmd_config(ds, args)
        if args.command == "ipam":
            return cmd_ipam(ds, args)
        if args.command == "get":
            return cmd_get(ds, args)
        return cmd_write(ds, args)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        text = dispatch(args)
    except (CommandError, DatastoreError) as error:
        print(error, file=sys.stderr if isinstance(error, DatastoreError) else sys.stdout)
        sys.exit(1)
    if text:
        print(text)


if __name__ == "__main__":
    main()
