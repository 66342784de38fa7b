"""Docker's predefined networks, made by dockerd on every host when it starts, local in scope (not
in the cluster store): `bridge` (docker0, bridge.py: where a container without `--net` goes),
`host` (the container shares the host's network namespace, its name, /etc/hosts and
/etc/resolv.conf) and `none` (a loopback only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..datastore.resources.docker import Network
from . import bridge
from .errors import APIError

NAMES = ("bridge", "host", "none", "default")  # Docker's predefined names: no user network may take them
DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}  # and their drivers
HOST_CONFLICT = "container cannot be disconnected from host network or connected to host network"
NONE_CONFLICT = "container cannot be connected to multiple networks with one of the networks in private (none) mode"


def networks(host: str, created: str, bip: str = "") -> list[Network]:
    """This host's predefined networks; their IDs are stable for the host (dockerd keeps them on disk);
    bridge's subnet and gateway are docker0's (daemon.json's bip, if set)."""
    docker0 = bridge.default(bip)
    pools = {"bridge": (str(docker0.subnet), f"{docker0.gateway}/{docker0.subnet.prefixlen}")}
    return [Network(hashlib.sha256(f"{host}/{name}".encode()).hexdigest(), name, driver, "default", "",
                    *pools.get(name, ("", "")), created) for name, driver in DRIVERS.items()]


def is_local(network: Network) -> bool:
    return network.driver in DRIVERS.values()


def is_builtin(network: Network) -> bool:
    """One of the predefined networks (`network ls --filter type=builtin`), not a user's bridge."""
    return network.name in DRIVERS


def refuse(name: str, action: str) -> None:
    """A user network may not be made or removed under a predefined name (403, Docker's words)."""
    if name in NAMES:
        raise APIError(403, f"{name} is a pre-defined network and cannot be {action}")


def check_connect(current: list[str], network: Network) -> None:
    """Docker's refusals of a second network where one is host or none."""
    names = {*current, network.name}
    if "host" in names:
        raise APIError(400, HOST_CONFLICT)
    if "none" in names:
        raise APIError(400, NONE_CONFLICT)


def host_file(name: str) -> str:
    """The host's /etc/<name> as dockerd reads it (its /etc is the host's)."""
    try:
        return Path("/etc", name).read_text()
    except OSError:
        return ""
