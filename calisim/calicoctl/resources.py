"""calicoctl's datastore commands: create/replace/apply/delete/get, config and ipam.

Input is validated whole before anything is written, and every write of a command is one etcd
transaction: a list with one bad item stores nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from ..datastore import Synchronous, Txn, keys
from ..datastore.resources import (BGPPeer, IPPool, Node, Resource, ValidationError, check_peer_nodes,
                                   check_pool_overlaps, kind_named, parse_as_number, parse_documents, parse_name)
from ..ipam import IPAM, IPAMError, parse_ipv4
from . import CommandError
from .output import padded_columns

ACTIONS = {"create": "created", "replace": "replaced", "apply": "applied", "delete": "deleted"}


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


async def write(ds, action: str, resources: list[Resource], skip: bool) -> int:
    """create/replace/apply/delete resources in one transaction; returns how many were written."""
    pools = [r for r in resources if isinstance(r, IPPool)]
    if pools and action != "delete":
        check_pool_overlaps(pools, await IPPool.load_all(ds))
    peers = [r for r in resources if isinstance(r, BGPPeer)]
    if peers and action != "delete":
        check_peer_nodes(peers, await Node.load_all(ds) + [r for r in resources if isinstance(r, Node)])
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
        elif kind.kind in ("node", "profile"):
            doc = {"metadata": {"name": args.name}, "spec": {}}
        elif kind.kind == "policy":
            doc = {"metadata": {"name": args.name}, "spec": {"selector": "all()"}}
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
            raise CommandError("Error executing command: only node-specific values can be unset (use --node)")
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
