"""calicoctl v1 resources: validation, the v1 YAML/JSON form, their etcd keys and stored values.

One module per family (``network``: node, ipPool, bgpPeer and the BGP settings; ``policy``: profile,
policy; ``endpoints``: workloadEndpoint, hostEndpoint) on a shared ``base``; beside them the values
that are no calicoctl kind (``ipam``: IPAM's blocks, handles and config; ``docker``: Docker's records).
``parse_documents``
validates a whole input (one resource or a list) before anything is returned, so calicoctl stores all
or nothing.  Each stored value has one decoder here, which every reader uses: ``from_value`` and
``to_value`` for a resource stored in one key, ``from_entries`` and ``writes`` for one spread over
several (a node, a profile); ``from_entries`` also finds every resource of its kind in a mirror's keys.
"""

from __future__ import annotations

from typing import Any

from .base import API_VERSION, Resource, ValidationError, parse_as_number, parse_cidr, parse_ip, parse_name
from .endpoints import HostEndpoint, WorkloadEndpoint
from .network import (BGPPeer, IPPool, Node, ReflectorRegistration, as_from_value, as_value, check_pool_overlaps,
                      global_as, mesh_from_value, mesh_value, node_as)
from .policy import PORT_PROTOCOLS, Policy, Profile

__all__ = ["API_VERSION", "BGPPeer", "HostEndpoint", "IPPool", "KINDS", "Node", "PORT_PROTOCOLS", "Policy", "Profile",
           "ReflectorRegistration", "Resource", "ValidationError", "WorkloadEndpoint", "as_from_value", "as_value",
           "check_pool_overlaps", "global_as", "kind_named", "mesh_from_value", "mesh_value", "node_as",
           "parse_as_number", "parse_cidr", "parse_documents", "parse_ip", "parse_name"]

KINDS: tuple[type[Resource], ...] = (Node, IPPool, BGPPeer, Profile, Policy, WorkloadEndpoint, HostEndpoint)


def kind_named(text: str) -> type[Resource]:
    """A kind as the command line names it: case-insensitive, plural or aliased (`hep`)."""
    wanted = text.lower()
    for kind in KINDS:
        if wanted == kind.kind.lower() or wanted in kind.aliases:
            return kind
    raise ValidationError(f"Resource type '{text}' is not supported")


def kind_in_document(item: dict) -> type[Resource]:
    """A kind as a document names it: exactly (`kind: bgppeer` is refused), with apiVersion v1."""
    for kind in KINDS:
        if item.get("kind") == kind.kind and item.get("apiVersion") == API_VERSION:
            return kind
    raise ValidationError(f"Unknown resource type ({item.get('kind')}) and/or version ({item.get('apiVersion')})")


def parse_documents(data: Any) -> list[Resource]:
    """One resource or a list of them; every item is validated before any is returned."""
    items = data if isinstance(data, list) else [data]
    resources: list[Resource] = []
    for index, item in enumerate(items):
        where = f"item {index + 1}: " if isinstance(data, list) else ""
        if not isinstance(item, dict):
            raise ValidationError(f"{where}a resource must be a mapping with apiVersion, kind, metadata and spec")
        if "kind" not in item:
            raise ValidationError(f"{where}missing field 'kind'")
        try:
            resources.append(kind_in_document(item).from_document(item))
        except ValidationError as error:
            raise ValidationError(f"{where}{error}") from None
    seen: set[str] = set()
    for resource in resources:
        if resource.primary_key in seen:
            raise ValidationError(f"{resource.ident} appears more than once in the input")
        seen.add(resource.primary_key)
    check_pool_overlaps([r for r in resources if isinstance(r, IPPool)], [])
    return resources
