"""Docker's volumes for `docker run -v`, as Docker 1.13 makes them: a host path bound in
(`-v /src:/dst[:ro]`, HostConfig.Binds; a missing source is made as a directory), a named volume
of the `local` driver (`-v NAME:/dst`, made on first use) or an anonymous one (`-v /dst`,
Config.Volumes; its name derived from the container and the path, so every start finds it).
Volumes live in the daemon's state directory, `volumes/NAME/_data`; the container's init binds each mount in
before the container's root is entered.  `docker volume ls|create|inspect|rm|prune` answer from
the same directory."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import APIError
from .images import layer_size

if TYPE_CHECKING:
    from .containers import Container

NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class Mount:
    kind: str  # "bind" or "volume"
    source: str  # the path on the host
    destination: str  # the path in the container
    writable: bool = True
    name: str = ""  # a volume's
    mode: str = ""  # as given: "", "ro" or "rw"
    anonymous: bool = False  # -v /dst: removed with its container by `rm -v` and --rm

    def spec(self) -> list:
        """What the container's init binds: [source, destination, writable]."""
        return [self.source, self.destination, self.writable]

    def json(self) -> dict:
        """The mount in inspect's Mounts (Docker 1.13's MountPoint)."""
        named = {"Name": self.name, "Driver": "local"} if self.kind == "volume" else {}
        return {"Type": self.kind, **named, "Source": self.source, "Destination": self.destination,
                "Mode": self.mode, "RW": self.writable, "Propagation": "rprivate" if self.kind == "bind" else ""}


def of(container: "Container", state: Path) -> list[Mount]:
    """The mounts of a created container (its daemon's state directory holds the volumes)."""
    return mounts(container.id, container.host_config, container.config, state / "volumes")


def users(containers: list["Container"], state: Path) -> dict[str, list[str]]:
    """Each volume's containers (running or not), by the volume's name."""
    found: dict[str, list[str]] = {}
    for container in containers:
        for mount in of(container, state):
            if mount.name:
                found.setdefault(mount.name, []).append(container.id)
    return found


def mounts(container_id: str, host_config: dict, config: dict, volumes: Path) -> list[Mount]:
    """The container's mounts, in Docker's words when one is malformed (a 400 at create)."""
    found = [bind(spec, volumes) for spec in host_config.get("Binds") or []]
    for destination in config.get("Volumes") or {}:
        name = hashlib.sha256(f"{container_id}:{destination}".encode()).hexdigest()
        found.append(Mount("volume", str(volumes / name / "_data"), absolute(destination), name=name, anonymous=True))
    return found


def bind(spec: str, volumes: Path) -> Mount:
    """One SRC:DST[:MODE] of HostConfig.Binds."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (parts[2:] or [""])[0] not in ("", "ro", "rw") or not parts[0]:
        raise APIError(400, f"Invalid volume specification: '{spec}'")
    source, destination, mode = parts[0], absolute(parts[1]), (parts[2:] or [""])[0]
    if source.startswith("/"):
        return Mount("bind", os.path.normpath(source), destination, mode != "ro", mode=mode)
    if not NAME.match(source):
        raise APIError(400, f'create {source}: "{source}" includes invalid characters for a local volume name, '
                            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
    return Mount("volume", str(volumes / source / "_data"), destination, mode != "ro", source, mode or "z")


def absolute(destination: str) -> str:
    if not destination.startswith("/"):
        raise APIError(400, f"Invalid volume destination path: '{destination}' mount path must be absolute.")
    return os.path.normpath(destination)


def prepare(found: list[Mount]) -> list[list]:
    """Make what the mounts need on the host (a bind's missing source, a volume's directory), as
    Docker does at start; their specs for the container's init."""
    for mount in found:
        if not os.path.exists(mount.source):
            os.makedirs(mount.source, exist_ok=True)
    return [mount.spec() for mount in found]


def volume_json(volumes: Path, name: str) -> dict:
    return {"Name": name, "Driver": "local", "Mountpoint": str(volumes / name / "_data"), "Labels": None,
            "Scope": "local"}


def listing(volumes: Path) -> dict:
    names = sorted(p.name for p in volumes.iterdir() if p.is_dir()) if volumes.is_dir() else []
    return {"Volumes": [volume_json(volumes, name) for name in names] or None, "Warnings": None}


def usage(volumes: Path, users: dict[str, list[str]]) -> list[dict]:
    """The volumes as `docker system df` lists them: each with its bytes and how many containers mount it."""
    return [{**volume, "UsageData": {"Size": layer_size(volumes / volume["Name"]),
                                     "RefCount": len(users.get(volume["Name"], []))}}
            for volume in listing(volumes)["Volumes"] or []]


def create(volumes: Path, name: str | None) -> dict:
    """`docker volume create [NAME]`: an existing one is answered again, as the local driver does."""
    name = name or os.urandom(32).hex()
    if not NAME.match(name):
        raise APIError(400, f'create {name}: "{name}" includes invalid characters for a local volume name, '
                            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
    (volumes / name / "_data").mkdir(parents=True, exist_ok=True)
    return volume_json(volumes, name)


def find(volumes: Path, name: str) -> dict:
    if not (volumes / name).is_dir() or not NAME.match(name):
        raise APIError(404, f"get {name}: no such volume")
    return volume_json(volumes, name)


def remove(volumes: Path, name: str, users: list[str]) -> None:
    """users: the IDs of the containers that mount it (running or not)."""
    find(volumes, name)
    if users:
        raise APIError(409, f"remove {name}: volume is in use - [{', '.join(users)}]")
    shutil.rmtree(volumes / name)


def remove_anonymous(container: "Container", state: Path) -> None:
    """A removed container's anonymous volumes (`docker rm -v`, and --rm), as Docker removes them;
    named ones stay."""
    for mount in of(container, state):
        if mount.anonymous:
            shutil.rmtree(state / "volumes" / mount.name, ignore_errors=True)


def prune(volumes: Path, used: set[str]) -> dict:
    """Every volume no container mounts."""
    names = [v["Name"] for v in listing(volumes)["Volumes"] or [] if v["Name"] not in used]
    for name in names:
        shutil.rmtree(volumes / name)
    return {"VolumesDeleted": names or None, "SpaceReclaimed": 0}
