"""Topologies a run can be built on; each module's ``topology(hosts)`` returns a CalicoTopo."""

from importlib import import_module

NAMES = ("two_host", "flat", "routed")


def load(name: str, hosts: int | None = None):
    """The topology called name (two_host or two-host) with hosts hosts where it takes a count."""
    module_name = name.replace("-", "_")
    if module_name not in NAMES:
        raise ValueError(f"unknown topology {name!r} (known: {', '.join(NAMES)})")
    return import_module(f"topologies.{module_name}").topology(hosts)
