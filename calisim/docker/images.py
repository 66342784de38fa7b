"""The images the emulated dockerd runs: root filesystems built once (by `make setup`) around
Docker Hub's busybox binary (upstream source, `make defconfig`, static: busybox.py), as layers
that containers stack under their own writable overlay.

`busybox` is docker-library's busybox:latest in all that the tutorials use: one static binary
with a hard link per applet in /bin, passwd/group/shadow, /root, /tmp, /home, /var/www, empty
/proc, /sys and /dev, PATH and `sh` as in its image config.  `workload` is Calico's test
workload: busybox plus /code/tcpping.sh and a command that stays up; its echo services (TCP 80,
UDP 69: cinit/echo.c, built by `make setup`) run beside it, in its network namespace.

    python -m calisim.docker.images DIR      build DIR/busybox and DIR/workload (idempotent)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import busybox

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGES_DIR = Path(os.environ.get("CALISIM_IMAGES") or Path(__file__).resolve().parents[2] / "build" / "images")
ECHO = Path(__file__).resolve().parents[2] / "build" / "cinit" / "echo"  # the workload's services (cinit/echo.c)

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:8:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
"""
TCPPING = "#!/bin/sh\necho hello | nc -w1 $1 80 | grep hello\n"
# PID 1 of a workload: stays up, and leaves at once on `docker stop` (a trap, since PID 1 has no
# default signal actions).  The echo services run beside it (Image.services).
RESPONDER = "#!/bin/sh\ntrap 'exit 0' TERM INT\nsleep 2147483647 &\nwait\n"


@dataclass(frozen=True)
class Image:
    name: str
    layers: tuple[str, ...]  # directories under IMAGES_DIR, top first (overlayfs lowerdir order)
    cmd: tuple[str, ...]
    services: tuple[str, ...] = ()  # run in the container's network namespace, from outside

    def built(self, root: Path = IMAGES_DIR) -> bool:
        """Its layers and its services' programs are there (`make setup` makes them)."""
        return all(d.is_dir() for d in self.lowerdirs(root)) and all(os.access(p, os.X_OK) for p in self.services[:1])

    def lowerdirs(self, root: Path = IMAGES_DIR) -> list[Path]:
        return [root / layer for layer in self.layers]

    def config(self) -> dict:
        return {"Cmd": list(self.cmd), "Env": [f"PATH={PATH}"], "Entrypoint": None, "WorkingDir": "", "User": ""}

    @property
    def id(self) -> str:
        """A content address as Docker's (sha256 of what defines the image: its config and layers),
        stable across builds, so `docker images` and `inspect` agree on every host."""
        digest = hashlib.sha256(json.dumps([self.config(), self.layers], sort_keys=True).encode()).hexdigest()
        return f"sha256:{digest}"

    @property
    def tag(self) -> str:
        return f"{self.name}:latest"

    def matches(self, pattern: str) -> bool:
        """Docker's `reference` filter: a glob on the image's name, or on name:tag."""
        return fnmatch.fnmatchcase(self.name, pattern) or fnmatch.fnmatchcase(self.tag, pattern)

    def created(self, root: Path = IMAGES_DIR) -> float:
        """When `make setup` built the image's top layer (0 if it is not built)."""
        try:
            return (root / self.layers[0]).stat().st_mtime
        except OSError:
            return 0.0

    def size(self, root: Path = IMAGES_DIR) -> int:
        """Bytes of the image's files."""
        return sum(layer_size(directory) for directory in self.lowerdirs(root))

    def history(self, root: Path = IMAGES_DIR) -> list[dict]:
        """`docker history` (GET /images/{name}/history), newest first as Docker lists it: the
        command's row (the image's ID and tag, no bytes), then a row a layer."""
        command = {"Id": self.id, "Created": int(self.created(root)), "Tags": [self.tag], "Size": 0,
                   "CreatedBy": f"/bin/sh -c #(nop)  CMD {json.dumps(list(self.cmd))}", "Comment": ""}
        layers = [{"Id": "<missing>", "Created": int(self.created(root)), "Tags": None, "Size": layer_size(directory),
                   "CreatedBy": f"/bin/sh -c #(nop) ADD dir:{layer} in / ", "Comment": ""}
                  for layer, directory in zip(self.layers, self.lowerdirs(root))]
        return [command, *layers]

    def summary(self, root: Path = IMAGES_DIR) -> dict:
        """The image in `GET /images/json`, as Docker 1.13 lists it."""
        size = self.size(root)
        return {"Id": self.id, "ParentId": "", "RepoTags": [self.tag], "RepoDigests": [],
                "Created": int(self.created(root)), "Size": size, "VirtualSize": size, "SharedSize": -1,
                "Labels": {}, "Containers": -1}

    def inspect(self, root: Path = IMAGES_DIR) -> dict:
        """The image in `GET /images/{name}/json` (Docker 1.13's ImageInspect)."""
        size, created = self.size(root), self.created(root)
        stamp = datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        layers = [f"sha256:{hashlib.sha256(layer.encode()).hexdigest()}" for layer in reversed(self.layers)]
        return {"Id": self.id, "RepoTags": [self.tag], "RepoDigests": [], "Parent": "", "Comment": "",
                "Created": stamp, "Container": "", "ContainerConfig": self.config(), "DockerVersion": "",
                "Author": "", "Config": {**self.config(), "Labels": {}}, "Architecture": "amd64", "Os": "linux",
                "Size": size, "VirtualSize": size,
                "GraphDriver": {"Name": "overlay2",
                                "Data": {"LowerDir": ":".join(str(d) for d in self.lowerdirs(root))}},
                "RootFS": {"Type": "layers", "Layers": layers}}


def layer_size(directory: Path) -> int:
    """Bytes of a layer's files, each inode once (busybox's applets are hard links)."""
    seen: dict[tuple[int, int], int] = {}
    for path in directory.rglob("*"):
        info = path.lstat()
        seen[(info.st_dev, info.st_ino)] = info.st_size
    return sum(seen.values())


IMAGES = {
    "busybox": Image("busybox", ("busybox",), ("sh",)),
    "workload": Image("workload", ("workload", "busybox"), ("/code/responder.sh",),
                      (str(ECHO),)),
}


def lookup(reference: str) -> Image | None:
    """The image a reference names (`busybox`, `busybox:latest`, `docker.io/library/busybox`), or
    else its ID (`sha256:...`, or at least 3 of its first hex digits), as Docker looks them up."""
    name, _, tag = reference.rpartition(":") if ":" in reference.split("/")[-1] else (reference, "", "latest")
    named = IMAGES.get(name.split("/")[-1]) if tag == "latest" else None
    digits = reference.removeprefix("sha256:")
    if named is not None or len(digits) < 3:
        return named
    found = [image for image in IMAGES.values() if image.id.removeprefix("sha256:").startswith(digits)]
    return found[0] if len(found) == 1 else None


def build_busybox(binary: Path, root: Path) -> None:
    for directory, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("proc", 0o555),
                            ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777), ("usr/bin", 0o755),
                            ("usr/sbin", 0o755), ("var/spool/mail", 0o755), ("var/www", 0o755)):
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory).chmod(mode)
    shutil.copy2(binary, root / "bin" / "busybox")
    applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.link(root / "bin" / "busybox", root / "bin" / applet)
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("shadow", "root:*:10933:0:99999:7:::\n"),
                       ("nsswitch.conf", "hosts: files dns\n")):
        (root / "etc" / name).write_text(text)
    (root / "etc" / "shadow").chmod(0o640)


def build_workload(root: Path) -> None:
    (root / "code").mkdir(parents=True)
    for name, text in (("tcpping.sh", TCPPING), ("responder.sh", RESPONDER)):
        (root / "code" / name).write_text(text)
        (root / "code" / name).chmod(0o755)


def build(destination: Path = IMAGES_DIR) -> None:
    """Every image's layers under destination; a layer already there is kept."""
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination) as scratch:
        for layer, make in (("busybox", lambda root: build_busybox(busybox.build(), root)),
                            ("workload", build_workload)):
            if (destination / layer).is_dir():
                continue
            partial = Path(scratch) / f"layer-{layer}"
            make(partial)
            partial.rename(destination / layer)  # all or nothing: a half-built layer never has the name


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    build(Path(args[0]) if args else IMAGES_DIR)


if __name__ == "__main__":
    main()
