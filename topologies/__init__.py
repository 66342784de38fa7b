"""Topologies a run can be built on.

Each module has ``topology(**options)`` returning a CalicoTopo and ``OPTIONS``, the options it
takes (name -> ``Option``); the command line offers the union of them (``add_arguments``) and
``load`` refuses an option the chosen topology does not take, so `--hosts` on two_host is an
error, not ignored.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import Any

NAMES = ("two_host", "flat", "routed", "fabric")
ETCD_MEMBERS = (1, 3, 5)


@dataclass(frozen=True)
class Option:
    """One topology option, as `--name-with-dashes VALUE` on the command line."""

    type: type
    help: str
    metavar: str = "N"
    choices: tuple[Any, ...] | None = None


# Options every topology takes, applied by ``load`` once the topology is built.
COMMON_OPTIONS = {"etcd_members": Option(int, "etcd members: 1 (etcd in host1, the default), 3 or 5 (an etcd cluster "
                                               "on nodes etcd1..etcdN beside host1)")}


def check_etcd_members(count: int) -> None:
    """1, 3 or 5; an even count refused with etcd's reason (its FAQ, "Why an odd number of cluster members?")."""
    if count in ETCD_MEMBERS:
        return
    if count > 0 and count % 2 == 0:
        raise ValueError(f"--etcd-members {count}: etcd wants an odd number of members: a cluster of {count} needs "
                         f"{count // 2 + 1} for quorum, so it survives {(count - 1) // 2} failure(s), as a cluster of "
                         f"{count - 1} does (use 1, 3 or 5)")
    raise ValueError(f"--etcd-members takes 1, 3 or 5, not {count}")


def module(name: str) -> ModuleType:
    module_name = name.replace("-", "_")
    if module_name not in NAMES:
        raise ValueError(f"unknown topology {name!r} (known: {', '.join(NAMES)})")
    return import_module(f"topologies.{module_name}")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Every topology's options, once each, defaulting to None (the topology's own default)."""
    takers: dict[str, list[str]] = {}
    options: dict[str, Option] = {}
    for name in NAMES:
        for option_name, option in module(name).OPTIONS.items():
            options.setdefault(option_name, option)
            takers.setdefault(option_name, []).append(name)
    for option_name, option in COMMON_OPTIONS.items():
        options[option_name], takers[option_name] = option, ["every topology"]
    for option_name, option in options.items():
        parser.add_argument(f"--{option_name.replace('_', '-')}", dest=option_name, type=option.type,
                            metavar=option.metavar, choices=option.choices,
                            help=f"{option.help} ({', '.join(takers[option_name])})")


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The topology options set on a command line parsed with ``add_arguments``."""
    names = {option for name in NAMES for option in module(name).OPTIONS} | set(COMMON_OPTIONS)
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def load(name: str, hosts: int | None = None, **options: Any):
    """The topology called name (two_host or two-host), built with the options given."""
    chosen = module(name)
    if hosts is not None:
        options["hosts"] = hosts
    etcd_members = options.pop("etcd_members", None)
    etcd_members = 1 if etcd_members is None else etcd_members
    check_etcd_members(etcd_members)
    unknown = sorted(set(options) - set(chosen.OPTIONS))
    if unknown:
        flags = ", ".join(f"--{option.replace('_', '-')}" for option in unknown)
        takes = ", ".join(f"--{option.replace('_', '-')}" for option in chosen.OPTIONS) or "no options"
        raise ValueError(f"the {chosen.__name__.split('.')[-1]} topology does not take {flags} (it takes {takes})")
    topo = chosen.topology(**options)
    if etcd_members > 1:
        topo.add_etcd_members(etcd_members)
    return topo
