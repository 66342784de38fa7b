"""`docker cp`: the archive routes (HEAD, GET and PUT /containers/{id}/archive?path=P) as Docker
answers them.  The work is done inside the running container, by its own busybox `stat` and
`tar` entered into its namespaces and root (runtime.exec_argv), so a path resolves as the
container sees it, its symlinks included, and nothing outside its root is read or written."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from datetime import datetime, timezone

from . import runtime
from .containers import Container
from .errors import APIError

STAT_HEADER = "X-Docker-Container-Path-Stat"
# Go's os.FileMode bits for the kinds of file (its low 9 bits are the permissions, as in st_mode)
GO_KINDS = {stat.S_IFDIR: 1 << 31, stat.S_IFLNK: 1 << 27, stat.S_IFIFO: 1 << 25, stat.S_IFSOCK: 1 << 24,
            stat.S_IFBLK: 1 << 26, stat.S_IFCHR: (1 << 26) | (1 << 21)}
GO_SPECIAL = {stat.S_ISUID: 1 << 23, stat.S_ISGID: 1 << 22, stat.S_ISVTX: 1 << 20}


def go_mode(mode: int) -> int:
    """st_mode as Go's os.FileMode, which the docker CLI decodes (a directory's 1<<31 bit)."""
    special = sum(bit for flag, bit in GO_SPECIAL.items() if mode & flag)
    return GO_KINDS.get(stat.S_IFMT(mode), 0) | special | (mode & 0o777)


def inside(container: Container, cmd: list[str], data: bytes | None = None) -> subprocess.CompletedProcess:
    if not container.running:
        raise APIError(409, f"Container {container.id} is not running")
    return subprocess.run(runtime.exec_argv(container.pid, cmd, False), input=data, capture_output=True)


def path_stat(container: Container, path: str) -> dict:
    """Docker's ContainerPathStat of path: name, size, mode (Go's), mtime, linkTarget."""
    found = inside(container, ["stat", "-c", "%s %f %Y", path])
    if found.returncode != 0:
        raise APIError(404, f"Could not find the file {path} in container {container.name}")
    size, raw_mode, mtime = found.stdout.decode().split()
    mode = int(raw_mode, 16)
    target = inside(container, ["readlink", path]).stdout.decode().strip() if stat.S_ISLNK(mode) else ""
    when = datetime.fromtimestamp(int(mtime), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"name": os.path.basename(path.rstrip("/")) or "/", "size": int(size), "mode": go_mode(mode),
            "mtime": when, "linkTarget": target}


def stat_header(found: dict) -> dict:
    return {STAT_HEADER: base64.b64encode(json.dumps(found).encode()).decode()}


def read(container: Container, path: str) -> tuple[dict, bytes]:
    """A tar of path (its own name at the top, as `docker cp` unpacks it), and its stat."""
    found = path_stat(container, path)
    parent, name = os.path.split(path.rstrip("/") or "/")
    made = inside(container, ["tar", "cf", "-", "-C", parent or "/", name or "."])
    if made.returncode != 0:
        raise APIError(500, made.stderr.decode().strip())
    return found, made.stdout


def write(container: Container, path: str, archive: bytes) -> None:
    """Unpack archive into path, an existing directory of the container."""
    if not go_mode_is_dir(path_stat(container, path)["mode"]):
        raise APIError(400, "extraction point is not a directory")
    done = inside(container, ["tar", "xf", "-", "-C", path], archive)
    if done.returncode != 0:
        raise APIError(500, done.stderr.decode().strip())


def go_mode_is_dir(mode: int) -> bool:
    return bool(mode & GO_KINDS[stat.S_IFDIR])
