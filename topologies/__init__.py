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


@dataclass(frozen=True)
class Option:
    """One topology option, as `--name-with-dashes VALUE` on the command line."""

    type: type
    help: str
    metavar: str = "N"
    choices: tuple[Any, ...] | None = None


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
    for option_name, option in options.items():
        parser.add_argument(f"--{option_name.replace('_', '-')}", dest=option_name, type=option.type,
                            metavar=option.metavar, choices=option.choices,
                            help=f"{option.help} ({', '.join(takers[option_name])})")


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The topology options set on a command line parsed with ``add_arguments``."""
    names = {option for name in NAMES for option in module(name).OPTIONS}
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def load(name: str, hosts: int | None = None, **options: Any):
    """The topology called name (two_host or two-host), built with the options given."""
    chosen = module(name)
    if hosts is not None:
        options["hosts"] = hosts
    unknown = sorted(set(options) - set(chosen.OPTIONS))
    if unknown:
        flags = ", ".join(f"--{option.replace('_', '-')}" for option in unknown)
        takes = ", ".join(f"--{option.replace('_', '-')}" for option in chosen.OPTIONS) or "no options"
        raise ValueError(f"the {chosen.__name__.split('.')[-1]} topology does not take {flags} (it takes {takes})")
    return chosen.topology(**options)
