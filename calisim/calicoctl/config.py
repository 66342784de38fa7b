"""calicoctl config get/set/unset: asNumber, nodeToNodeMesh, logLevel and ipip, globally or
(asNumber, logLevel) for one node, stored where calico-node, confd and Felix read them."""

from __future__ import annotations

import argparse
from typing import Any

from ..datastore import Synchronous, keys
from ..datastore.resources import (ValidationError, as_from_value, as_value, mesh_from_value, mesh_value,
                                   parse_as_number, parse_name)
from .errors import CommandError

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
            return as_value(parse_as_number(value))
        if name in ("nodeToNodeMesh", "ipip"):
            if value not in ("on", "off"):
                raise ValidationError(f"{name} must be 'on' or 'off', not {value!r}")
            return mesh_value(value == "on") if name == "nodeToNodeMesh" else str(value == "on").lower()
        if value not in LOG_LEVELS:
            raise ValidationError(f"logLevel must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return value
    except ValidationError as error:
        raise CommandError(f"Error executing command: {error}") from None


def config_shown(name: str, stored: Any) -> str:
    if name == "nodeToNodeMesh":
        return "on" if mesh_from_value(stored) else "off"
    if name == "ipip":
        return "on" if stored == "true" else "off"
    if name == "asNumber":
        return str(as_from_value(stored) or keys.DEFAULT_AS)
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
