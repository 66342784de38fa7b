"""calicoctl's resource commands: create/replace/apply/delete/get.

Input is validated whole before anything is written: a list with one invalid item stores
nothing ("Failed to execute command: ...").  Then, as calicoctl v1.0, the resources are written
in their order, each in one etcd transaction, stopping at the first that fails (it already
exists, does not exist, overlaps a stored pool): "Partial success: ..." says how far it got.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from ..datastore import Synchronous, Txn, keys
from ..datastore.resources import (IPPool, Resource, ValidationError, as_from_value, check_pool_overlaps, kind_named,
                                   parse_documents)
from ..ipam import IPAM, IPAMError
from .errors import CommandError
from .output import padded_columns

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it: ~5x faster
ACTIONS = {"create": "created", "replace": "replaced", "apply": "applied", "delete": "deleted"}


def read_resources(filename: str) -> list[Resource]:
    try:
        text = sys.stdin.read() if filename == "-" else open(filename, encoding="utf-8").read()
    except OSError as error:
        raise CommandError(f"Failed to read {filename}: {error.strerror}") from None
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as error:
        raise CommandError(f"Failed to execute command: error parsing {filename} as YAML or JSON: {error}") from None
    if data is None or data == []:
        raise CommandError(f"Failed to execute command: {filename} contains no resources")
    try:
        return parse_documents(data)
    except ValidationError as error:
        raise CommandError(f"Failed to execute command: invalid resource: {error}") from None


class ResourceConflict(ValidationError):
    """The resource exists (create) or does not (replace, delete): what --skip-exists and
    --skip-not-exists skip over."""


async def write_one(ds, action: str, resource: Resource) -> None:
    """create/replace/apply/delete one resource in one transaction, or raise."""
    if isinstance(resource, IPPool) and action != "delete":
        check_pool_overlaps([resource], await IPPool.load_all(ds))
    if action != "apply":  # apply creates or replaces: one write, as libcalico-go's Apply, no read first
        exists = await ds.get(resource.primary_key) is not None
        if action == "create" and exists or action in ("replace", "delete") and not exists:
            raise ResourceConflict(f"resource {'already exists' if exists else 'does not exist'}: {resource.ident}")
    if isinstance(resource, IPPool) and action == "delete":
        try:  # IPAM's order: disable, release affinities, delete
            await IPAM(ds).delete_pool(resource.cidr)
        except IPAMError as error:
            raise ValidationError(str(error)) from None
        return
    txn = Txn()
    if action == "delete":
        txn.require_present(resource.primary_key)
        for key in resource.removal_prefixes():
            if key.endswith("/"):
                txn.delete_prefix(key)
            else:
                txn.delete(key)
    else:
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
    if not await ds.commit(txn):
        raise ValidationError(f"the datastore changed while writing {resource.ident} (another client raced); "
                              "it was not stored")


async def write(ds, action: str, resources: list[Resource], skip: bool) -> tuple[int, ValidationError | None]:
    """As calicoctl: the resources in order, each atomically, stopping at the first error;
    returns how many were handled (skipped ones count) and the error, if any."""
    for handled, resource in enumerate(resources):
        try:
            await write_one(ds, action, resource)
        except ResourceConflict as error:
            if not skip:
                return handled, error
        except ValidationError as error:
            return handled, error
    return len(resources), None


def outcome(action: str, resources: list[Resource], handled: int, error: ValidationError | None) -> str:
    """calicoctl's summary line(s) for a create/replace/apply/delete; raises on any failure."""
    kinds = {r.kind for r in resources}
    kind = kinds.pop() if len(kinds) == 1 else ""
    quoted = f"'{kind}' " if kind else ""
    if error is None:
        return f"Successfully {ACTIONS[action]} {handled} {quoted}resource(s)"
    if handled == 0:
        if len(resources) == 1:
            raise CommandError(f"Failed to {action} {quoted}resource: {error}")
        raise CommandError(f"Failed to {action} any {quoted}resources: {error}")
    raise CommandError(f"Partial success: {ACTIONS[action]} the first {handled} out of {len(resources)} "
                       f"{quoted}resources:\nHit error: {error}")


def cmd_write(ds: Synchronous, args: argparse.Namespace) -> str:
    action = args.command
    if action == "delete" and not args.filename:
        resources = [named_resource(args)]
    else:
        resources = read_resources(args.filename)
    skip = bool(getattr(args, "skip_exists", False) or getattr(args, "skip_not_exists", False))
    return outcome(action, resources, *ds.run(write, action, resources, skip))


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
            doc = {"metadata": {"name": args.name}, "spec": {}}
        elif kind.kind == "hostEndpoint":
            if not args.node:
                raise ValidationError("a hostEndpoint is named by --node and NAME")
            doc = {"metadata": {"name": args.name, "node": args.node}, "spec": {"interfaceName": "any"}}
        elif kind.kind == "bgpPeer":
            metadata = {"scope": args.scope or ("node" if args.node else "global"), "peerIP": args.name}
            if args.node:
                metadata["node"] = args.node
            doc = {"metadata": metadata, "spec": {"asNumber": 1}}
        else:
            raise ValidationError(f"{kind.kind} resources are read-only here")
        return kind.from_document({"apiVersion": "v1", "kind": kind.kind, **doc})
    except ValidationError as error:
        raise CommandError(f"Failed to delete resource: {error}") from None


def cmd_get(ds: Synchronous, args: argparse.Namespace) -> str:
    """Resources by kind (and name) or as a file names them; names that match nothing give no
    rows, not an error ("Attempting to get resources that do not exist will simply return no
    results")."""
    check_output_format(args.output)
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
    if args.output in ("yaml", "json"):
        documents = [r.document() for r in found]
        if args.output == "json":
            return json.dumps(documents, indent=2)
        return yaml.safe_dump(documents, default_flow_style=False, sort_keys=False).rstrip("\n")
    try:
        headings = {kind: kind.headings(args.output) for kind in dict.fromkeys(kinds)}
    except ValidationError as error:
        raise CommandError(str(error)) from None
    context = {"global_as": as_from_value(ds.value(keys.GLOBAL_AS)) or keys.DEFAULT_AS}
    tables = [padded_columns(columns, [r.row(columns, context) for r in found if isinstance(r, kind)])
              for kind, columns in headings.items()]
    return "\n".join(tables).rstrip("\n")  # one table per kind, as calicoctl prints them


def check_output_format(output: str) -> None:
    """ps, wide, yaml, json or custom-columns=A,B, with calicoctl's messages for anything else."""
    if output.startswith("custom-columns="):
        if output == "custom-columns=":
            raise CommandError("need to specify at least one column")
    elif output not in ("ps", "wide", "yaml", "json"):
        raise CommandError(f"unrecognized output format '{output}'")
