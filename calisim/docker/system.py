"""What the emulated dockerd says about itself and its images: `GET /info` (`docker info`),
`GET /version`, the image routes (`docker images`, `image ls --filter`, `image inspect`,
`docker pull`), `docker system df`, and the swarm routes a daemon outside a swarm answers with 503, in Docker 1.13's
field names and texts (api.py routes to them).

Facts are read where dockerd reads them: the host's name, kernel, CPUs and memory, whether it
forwards IPv4; the cluster store is the cluster's etcd (ETCD_ENDPOINTS), written as the seed's
daemon.json writes it (`"cluster-store": "etcd://192.168.3.229:2379"`).  What calisim does not
do is said, not pretended: no memory or CPU limits, no cgroups, no seccomp or AppArmor profile,
no registry (images are the ones `make setup` built).
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import socket
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from .containers import Container
from .errors import APIError
from .images import IMAGES, IMAGES_DIR, Image, layer_size, lookup

SERVER_VERSION = "1.13.1"  # the Docker Engine whose behaviour calisim's dockerd follows
GO_VERSION = "go1.7.5"  # what Docker 1.13.1 was built with (clients print it)
MIN_API_VERSION = "1.24"  # the oldest API today's docker CLI speaks
BUILTIN_NETWORK_DRIVERS: tuple[str, ...] = ()  # drivers calisim provides without a plugin
IMAGE_FILTERS = ("dangling", "label", "before", "since", "reference")
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this '
                 'node to swarm and try again.')
SWARM_WITH_CLUSTER_STORE = ("--cluster-store and --cluster-advertise daemon configurations are incompatible with "
                            "swarm mode")


def kernel_version() -> str:
    return platform.release()


def version(api_version: str) -> dict:
    """`GET /version`: Docker 1.13's fields (the CLI makes its Engine component of them)."""
    return {"Version": SERVER_VERSION, "ApiVersion": api_version, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "calisim", "GoVersion": GO_VERSION, "Os": "linux", "Arch": "amd64",
            "KernelVersion": kernel_version(), "Experimental": False, "BuildTime": ""}


def cluster_store(endpoints: str) -> str:
    """The cluster store as daemon.json names it: the first etcd endpoint as an etcd:// URL."""
    first = urlsplit(endpoints.split(",")[0])
    return f"etcd://{first.netloc}" if first.scheme in ("http", "https") else endpoints.split(",")[0]


def engine_id(name: str) -> str:
    """An engine ID in Docker's shape (12 colon-joined groups of 4 base32 characters), stable per host."""
    text = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    return ":".join(text[i:i + 4] for i in range(0, 48, 4))


def read_flag(path: str) -> bool:
    """A 0/1 kernel setting as dockerd reads it (False where the file does not exist)."""
    try:
        return Path(path).read_text().strip() == "1"
    except OSError:
        return False


def operating_system() -> str:
    try:
        fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    except OSError:
        return "Linux"
    return fields.get("PRETTY_NAME", "Linux").strip('"')


def memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def container_counts(containers: list[Container]) -> dict:
    """Running and paused by state; created and exited count as stopped, as in Docker."""
    running = sum(c.running for c in containers)
    return {"Containers": len(containers), "ContainersRunning": running, "ContainersPaused": 0,
            "ContainersStopped": len(containers) - running}


def info(containers: list[Container], network_drivers: set[str], state: Path, endpoints: str) -> dict:
    """`GET /info` with Docker 1.13's keys.  Network plugins: the built-in drivers calisim has and the
    drivers of existing networks (so `calico` once a Calico network exists), sorted, as dockerd lists them."""
    name = socket.gethostname()
    no = False
    return {"ID": engine_id(name), **container_counts(containers), "Images": len(IMAGES),
            "Driver": "overlay2", "DriverStatus": [], "SystemStatus": None,
            "Plugins": {"Volume": ["local"], "Network": sorted(set(BUILTIN_NETWORK_DRIVERS) | network_drivers),
                        "Authorization": None},
            "MemoryLimit": no, "SwapLimit": no, "KernelMemory": no, "CpuCfsPeriod": no, "CpuCfsQuota": no,
            "CPUShares": no, "CPUSet": no, "OomKillDisable": no,
            "IPv4Forwarding": read_flag("/proc/sys/net/ipv4/ip_forward"),
            "BridgeNfIptables": read_flag("/proc/sys/net/bridge/bridge-nf-call-iptables"),
            "BridgeNfIp6tables": read_flag("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
            "Debug": False, "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": threading.active_count(),
            "SystemTime": datetime.now().astimezone().isoformat(timespec="microseconds"),
            "LoggingDriver": "json-file", "CgroupDriver": "none", "NEventsListener": 0,
            "KernelVersion": kernel_version(), "OperatingSystem": operating_system(), "OSType": "linux",
            "Architecture": platform.machine(), "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": [],
                               "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True,
                                                              "Official": True}}},
            "NCPU": os.cpu_count() or 1, "MemTotal": memory_total(), "DockerRootDir": str(state),
            "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": name, "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": SERVER_VERSION, "ClusterStore": cluster_store(endpoints), "ClusterAdvertise": "",
            "Runtimes": {"calisim": {"path": "cinit"}}, "DefaultRuntime": "calisim",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None, "Nodes": 0, "Managers": 0},
            "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "",
            "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""}, "SecurityOptions": []}


# -- images ------------------------------------------------------------------------------------
def find_image(reference: str) -> Image:
    image = lookup(reference)
    if image is None:
        raise APIError(404, f"No such image: {reference}")
    return image


def image_list(filters: dict[str, list[str]]) -> list[dict]:
    """`GET /images/json`: the built images that pass every filter (each key: one of its values)."""
    unknown = [key for key in filters if key not in IMAGE_FILTERS]
    if unknown:
        raise APIError(500, f"Invalid filter '{unknown[0]}'")
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise APIError(500, f"Invalid filter 'dangling={value}'")
    bounds = {(key, value): find_image(value).created() for key in ("before", "since")
              for value in filters.get(key, [])}

    def wanted(image: Image) -> bool:
        created = image.created()
        tests = {"dangling": lambda v: v.lower() in ("false", "0"),  # every image has its tag: none dangles
                 "label": lambda v: False,  # the images have no labels
                 "reference": image.matches,
                 "before": lambda v: created < bounds[("before", v)],
                 "since": lambda v: created > bounds[("since", v)]}
        return all(any(tests[key](value) for value in values) for key, values in filters.items())

    return [image.summary() for image in IMAGES.values() if wanted(image)]


def pull(image: str, tag: str) -> list[dict]:
    """`POST /images/create?fromImage=&tag=`: the progress messages of a pull that finds the
    image already here.  calisim has no registry: any other image is refused in Docker's words."""
    name = image.split("/")[-1] if image.startswith(("docker.io/library/", "library/")) else image
    tag = tag or "latest"
    found = lookup(f"{name}:{tag}")
    if found is None and lookup(name) is not None:
        raise APIError(404, f"manifest for {name}:{tag} not found: manifest unknown: manifest unknown")
    if found is None:
        raise APIError(404, f"pull access denied for {name}, repository does not exist or may require "
                            "'docker login': denied: requested access to the resource is denied")
    return [{"status": f"Pulling from library/{found.name}", "id": tag},
            {"status": f"Status: Image is up to date for {found.tag}"}]


def swarm(method: str, parts: list[str]) -> APIError:
    """What a daemon outside a swarm answers on /swarm, /nodes, /services, /tasks, /secrets."""
    if parts[:2] == ["swarm", "leave"]:
        return APIError(503, "This node is not part of a swarm")
    if parts[:2] in (["swarm", "init"], ["swarm", "join"]) and method == "POST":
        return APIError(500, SWARM_WITH_CLUSTER_STORE)  # the seed's daemon.json sets a cluster store
    return APIError(503, NOT_A_MANAGER)


def disk_usage(containers: list[tuple[Container, dict]], volumes: list[dict]) -> dict:
    """`docker system df` (GET /system/df), Docker 1.13's answer: the layers' total (each once),
    the images with their containers and the bytes they share with another image, the
    containers (each with its summary) with their writable layer's size, and the volumes."""
    layer_users: dict[str, int] = {}
    for image in IMAGES.values():
        for layer in image.layers:
            layer_users[layer] = layer_users.get(layer, 0) + 1
    sizes = {layer: layer_size(IMAGES_DIR / layer) for layer in layer_users}
    images = [{**image.summary(), "Containers": sum(c.image is image for c, _ in containers),
               "SharedSize": sum(sizes[layer] for layer in image.layers if layer_users[layer] > 1)}
              for image in IMAGES.values()]
    listed = []
    for container, summary in containers:
        upper = container.directory / "upper" if container.directory else None
        written = layer_size(upper) if upper and upper.is_dir() else 0
        listed.append({**summary, "SizeRw": written, "SizeRootFs": written + container.image.size()})
    return {"LayersSize": sum(sizes.values()), "Images": images, "Containers": listed, "Volumes": volumes,
            "BuildCache": None}
