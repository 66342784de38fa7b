"""`docker container|network|image|system prune` as Docker 1.13 answers them (POST /containers/prune,
/networks/prune, /images/prune; today's CLI's `system prune` also asks /build/prune).  The Docker
SDK's clean-ups call them: without these, `prune` was looked up as a container's name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import predefined
from .errors import APIError, DockerError

if TYPE_CHECKING:
    from .daemon import Daemon


def refuse_filters(filters: dict[str, list[str]]) -> None:
    """Docker 1.13's prunes take no filter (until and label came in 17.04 and 17.06)."""
    for name in filters:
        raise APIError(400, f"Invalid filter '{name}'")


def containers(daemon: Daemon, filters: dict[str, list[str]]) -> dict:
    """Every container that is not running, removed as `docker rm` removes it."""
    refuse_filters(filters)
    stopped = [c for c in list(daemon.containers.values()) if not c.running]
    for container in stopped:
        daemon.remove(container, force=False)
    return {"ContainersDeleted": [c.id for c in stopped] or None, "SpaceReclaimed": 0}


def networks(daemon: Daemon, filters: dict[str, list[str]]) -> dict:
    """Every network with no endpoint (on any host: the cluster store has them all), but the
    predefined ones; a network that has one is kept without a word, as Docker keeps it."""
    refuse_filters(filters)
    deleted = []
    for network in daemon.networks():
        if network.name in predefined.DRIVERS:
            continue
        try:
            daemon.remove_network(network)
        except (DockerError, APIError):
            continue
        deleted.append(network.name)
    return {"NetworksDeleted": deleted or None}


def images(filters: dict[str, list[str]]) -> dict:
    """Dangling images only (without -a): the built ones are tagged, so nothing; with
    dangling=false (-a), images no container uses: the built ones are kept, being make setup's."""
    for name in filters:
        if name != "dangling":
            raise APIError(400, f"Invalid filter '{name}'")
    return {"ImagesDeleted": None, "SpaceReclaimed": 0}


def build_cache() -> dict:
    """No builder runs here: its cache is empty."""
    return {"CachesDeleted": None, "SpaceReclaimed": 0}
