"""`docker diff` (GET /containers/{id}/changes): what a container's writable layer holds against
its image, read from the layer itself (overlayfs's upper directory: kept while the container
exists, running or not), in Docker's kinds: 0 changed, 1 added, 2 deleted (a whiteout)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

CHANGED, ADDED, DELETED = 0, 1, 2
# The files dockerd gives every container (Docker keeps them in an init layer that diff skips).
DOCKER_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}


def is_whiteout(path: Path) -> bool:
    """overlayfs marks a deleted file with a character device 0:0 of its name."""
    info = path.lstat()
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def changes(upper: Path, lowerdirs: list[Path]) -> list[dict]:
    """Every path of the layer, sorted, with its kind (a path the image has is changed)."""
    found = []
    for directory, subdirectories, files in os.walk(upper):
        for name in sorted(subdirectories + files):
            path = Path(directory, name)
            inside = "/" + str(path.relative_to(upper))
            if inside in DOCKER_FILES:
                continue
            in_image = any(os.path.lexists(lower / inside.lstrip("/")) for lower in lowerdirs)
            kind = DELETED if is_whiteout(path) else CHANGED if in_image else ADDED
            found.append({"Path": inside, "Kind": kind})
    return sorted(found, key=lambda change: change["Path"])
