"""Saving a lab and bringing it back: `calisim save LAB -o FILE`, `calisim up --from FILE`.

A saved lab is one gzip'd tar file:

* ``calisim-save.json``: the format and the calisim version that wrote it, the lab's topology with
  its options and settings, per Calico host the `calicoctl node run` its calico-node was started
  with and its containers (name, image, command, networks with their addresses), and per route
  reflector its `routereflector run`;
* ``etcd.db``: a snapshot of etcd (`etcdctl snapshot save` from the member leading then), that is
  Calico's whole state and Docker's cluster store, its SHA-256 in the manifest;
* ``etc/HOST/...``: what each node wrote into its own /etc (the upper directory of its view,
  calisim.emulation.overlay), put back before the new node's view is mounted.

Bringing it back builds the topology anew and restores every etcd member from the snapshot before
it starts (calisim.datastore.etcd.EtcdServer.restore).  The containers did not survive, as after
their hosts restarted, so their endpoints and addresses are forgotten first; then each host's
calico-node (and each reflector) runs as it ran and each container is made again with `docker run` on its networks
with its addresses (--ip, --ip6), which hands it the same address out of the same host's block.
The file is read and checked in full before anything starts: another format or calisim version,
a truncated or corrupt file is one line (SaveError).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import tarfile
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ..datastore import keys
from ..datastore.resources.docker import Endpoint
from ..datastore.resources.endpoints import WorkloadEndpoint
from ..ipam import IPAM
from ..node import NodePaths
from ..node.daemon import NodeDaemon
from . import overlay
from .faults.daemons import node_run_command
from .rundir import RunDir

FORMAT = 1  # bumped whenever what a saved file holds changes meaning
MANIFEST = "calisim-save.json"
ETCD_DB = "etcd.db"
ETC = "etc"  # etc/HOST/...: what each host wrote into its own /etc
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
REFLECTOR_OPTIONS = ("--ip", "--ip6", "--cluster-id")  # `routereflector run`'s, each with a value
LOCAL_NETWORKS = ("bridge", "host", "none")  # Docker's own: no address asked on them


class SaveError(ValueError):
    """A lab cannot be saved, or a saved file cannot be used; the message is one line for the user."""


def calisim_version() -> str:
    try:
        return metadata.version("calisim")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class SavedContainer:
    """What `docker run` needs to make a container again, read from `docker inspect`."""

    name: str
    image: str
    command: list[str]
    entrypoint: list[str]
    tty: bool
    open_stdin: bool
    running: bool
    networks: list[dict[str, str]]  # {"name", "ip", "ip6"}, the one it was run on first

    @classmethod
    def from_inspect(cls, doc: dict) -> "SavedContainer":
        config, settings = doc["Config"], doc["NetworkSettings"]["Networks"] or {}
        first = doc["HostConfig"].get("NetworkMode")
        names = sorted(settings, key=lambda name: name != first)
        entrypoint = config.get("Entrypoint") or []
        return cls(doc["Name"].lstrip("/"), config["Image"], list(config.get("Cmd") or []),
                   [entrypoint] if isinstance(entrypoint, str) else list(entrypoint),
                   bool(config.get("Tty")), bool(config.get("OpenStdin")), bool(doc["State"]["Running"]),
                   [_saved_network(name, settings[name]) for name in names])

    def commands(self) -> list[str]:
        """The docker command lines that make it again: run (or create), then a connect a further network."""
        words = ["docker", "run", "-d"] if self.running else ["docker", "create"]
        words += [flag for flag, wanted in (("-t", self.tty), ("-i", self.open_stdin)) if wanted]
        words += ["--name", self.name]
        if self.networks:
            words += ["--net", self.networks[0]["name"], *_address_flags(self.networks[0])]
        command = self.command
        if self.entrypoint:
            words += ["--entrypoint", self.entrypoint[0]]
            command = self.entrypoint[1:] + command
        lines = [shlex.join([*words, self.image, *command])]
        for network in self.networks[1:]:
            lines.append(shlex.join(["docker", "network", "connect", *_address_flags(network),
                                     network["name"], self.name]))
        return lines


def _saved_network(name: str, settings: dict) -> dict[str, str]:
    """Its addresses now, or (stopped) those it asked for."""
    asked = settings.get("IPAMConfig") or {}
    if name in LOCAL_NETWORKS:
        return {"name": name, "ip": "", "ip6": ""}
    return {"name": name, "ip": settings.get("IPAddress") or asked.get("IPv4Address") or "",
            "ip6": settings.get("GlobalIPv6Address") or asked.get("IPv6Address") or ""}


def _address_flags(network: dict[str, str]) -> list[str]:
    return [word for flag, key in (("--ip", "ip"), ("--ip6", "ip6")) if network[key] for word in (flag, network[key])]


@dataclass(frozen=True)
class SavedNetwork:
    """A user-defined bridge network: dockerd's own, not in the cluster store, so not in etcd's snapshot."""

    name: str
    ipam: list[dict[str, Any]]  # docker network inspect's IPAM.Config: Subnet, IPRange, Gateway, AuxiliaryAddresses

    @classmethod
    def from_inspect(cls, doc: dict) -> "SavedNetwork":
        return cls(doc["Name"], list((doc.get("IPAM") or {}).get("Config") or []))

    def command(self) -> str:
        words = ["docker", "network", "create", "--driver", "bridge"]
        for pool in self.ipam:
            words += [word for flag, key in (("--subnet", "Subnet"), ("--ip-range", "IPRange"),
                                             ("--gateway", "Gateway")) if pool.get(key) for word in (flag, pool[key])]
            for name, address in (pool.get("AuxiliaryAddresses") or {}).items():
                words += ["--aux-address", f"{name}={address}"]
        return shlex.join([*words, self.name])


@dataclass(frozen=True)
class SavedHost:
    name: str
    start: str | None  # `calicoctl node run ...` or `routereflector run ...` as it was started; None: neither ran
    containers: list[SavedContainer] = field(default_factory=list)
    networks: list[SavedNetwork] = field(default_factory=list)  # made again before the containers


@dataclass(frozen=True)
class SavedLab:
    """A saved file's manifest."""

    name: str
    topology: str
    options: dict[str, Any]
    ipip_backend: str
    bgp_hold_time: int | None
    hosts: list[SavedHost]
    etcd_sha256: str
    format: int = FORMAT
    calisim: str = field(default_factory=calisim_version)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SavedLab":
        return cls.from_document(json.loads(text))

    @classmethod
    def from_document(cls, document: dict) -> "SavedLab":
        hosts = [SavedHost(host["name"], host["start"], [SavedContainer(**c) for c in host["containers"]],
                           [SavedNetwork(**n) for n in host.get("networks", [])])
                 for host in document["hosts"]]
        return cls(**{**document, "hosts": hosts})

    @property
    def containers(self) -> int:
        return sum(len(host.containers) for host in self.hosts)

    def summary(self) -> str:
        """What it holds, in a few words: `2 calico-nodes, 5 containers`."""
        programs = [_program(host.start) for host in self.hosts if host.start]
        nodes, reflectors = programs.count("calicoctl"), programs.count("routereflector")
        counts = [(nodes, "calico-node"), *([(reflectors, "route reflector")] if reflectors else []),
                  (self.containers, "container")]
        return ", ".join(f"{count} {noun}{'' if count == 1 else 's'}" for count, noun in counts)


def _program(command: str) -> str:
    """The program a saved start line runs, past the settings before it (`FELIX_IPV6SUPPORT=false calicoctl ...`)."""
    return next((word for word in shlex.split(command) if "=" not in word), "")


# -- the file ------------------------------------------------------------------------------------
def write(path: Path, saved: SavedLab, etcd_db: bytes, etc: dict[str, Path] | None = None) -> None:
    """Write the saved file whole or not at all (a temporary file beside it, renamed); etc: each
    host's own /etc files (its view's upper directory), kept under etc/HOST/."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with tarfile.open(temporary, "w:gz") as archive:
            for name, data in ((MANIFEST, saved.to_json().encode()), (ETCD_DB, etcd_db)):
                member = tarfile.TarInfo(name)
                member.size, member.mode = len(data), 0o600
                archive.addfile(member, io.BytesIO(data))
            for host, upper in sorted((etc or {}).items()):
                archive.add(upper, arcname=f"{ETC}/{host}")
        temporary.rename(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SaveError(f"cannot write {path}: {error.strerror or error}") from None


def read(path: Path) -> tuple[SavedLab, bytes]:
    """The manifest and the etcd snapshot of a saved file, checked: SaveError (one line) for a
    missing, truncated or corrupt file, or one from another format or calisim version."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            archive.getmembers()  # to its end: a file cut short is refused here, not in the new lab
            members = {name: _member(archive, name) for name in (MANIFEST, ETCD_DB)}
    except FileNotFoundError:
        raise SaveError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error, tarfile.TarError) as error:
        raise SaveError(f"{path} is not a saved lab, or it is truncated or corrupt ({error})") from None
    try:
        document = json.loads(members[MANIFEST])
        written_by = (document.get("calisim"), document.get("format"))
    except (ValueError, AttributeError) as error:
        raise SaveError(f"{path}: its {MANIFEST} is not one calisim writes ({error})") from None
    if written_by != (calisim_version(), FORMAT):  # before its fields: another version may have others
        raise SaveError(f"{path} was saved by calisim {written_by[0]} (format {written_by[1]}); this is calisim "
                        f"{calisim_version()} (format {FORMAT}): save the lab again with this version")
    try:
        saved = SavedLab.from_document(document)
    except (TypeError, KeyError, AttributeError) as error:
        raise SaveError(f"{path}: its {MANIFEST} is not one calisim writes ({error!r})") from None
    if hashlib.sha256(members[ETCD_DB]).hexdigest() != saved.etcd_sha256:
        raise SaveError(f"{path}: its etcd snapshot does not match the checksum saved with it (corrupt)")
    return saved, members[ETCD_DB]


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    try:
        extracted = archive.extractfile(name)
    except KeyError:
        raise tarfile.TarError(f"no {name} in it") from None
    if extracted is None:
        raise tarfile.TarError(f"{name} is not a file")
    return extracted.read()


# -- saving, in the lab --------------------------------------------------------------------------
def capture(cluster, spec, directory: Path) -> tuple[SavedLab, Path]:
    """The running lab's manifest, and its etcd snapshot written into directory (in the lab's
    run directory, which the caller reads; a file of its own, so two saves at once do not mix).
    SaveError if etcd has no leader or a host's dockerd does not answer."""
    directory.mkdir(parents=True, exist_ok=True)
    snapshot = Path(tempfile.mkdtemp(prefix="save-", dir=directory)) / ETCD_DB
    leader = cluster.etcd_leader()
    if leader is None:
        raise SaveError("etcd has no leader now (down, or without quorum): no snapshot can be taken")
    result = cluster.run(leader, f"etcdctl --endpoints {cluster.etcd_server(leader).endpoint} "
                                 f"snapshot save {shlex.quote(str(snapshot))}")
    if result.rc != 0:
        raise SaveError(f"etcdctl snapshot save in {leader}: {(result.stderr or result.stdout).strip()}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        hosts = list(pool.map(lambda name: _saved_host(cluster, name), cluster.hosts))
    hosts += [SavedHost(name, command) for name, command in _reflectors(cluster)]
    saved = SavedLab(spec.name, spec.topology, spec.options, spec.ipip_backend, spec.bgp_hold_time, hosts,
                     hashlib.sha256(snapshot.read_bytes()).hexdigest())
    return saved, snapshot


def _saved_host(cluster, name: str) -> SavedHost:
    state = cluster.host(name).state_dir
    node = NodeDaemon(NodePaths(state / "run", state / "log"))
    pid = node.running_pid()
    listed = cluster.run(name, 'ids=$(docker ps -aq) && { [ -z "$ids" ] && echo [] || docker inspect $ids; }')
    if listed.rc != 0:
        raise SaveError(f"cannot list {name}'s containers: {(listed.stderr or listed.stdout).strip()}")
    documents = sorted(json.loads(listed.stdout), key=lambda doc: doc["Created"])  # made again in this order
    containers = [SavedContainer.from_inspect(doc) for doc in documents]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0") if pid else None
    return SavedHost(name, node_run_command(argv, node.settings()) if argv else None, containers,
                     _saved_bridges(cluster, name))


def _saved_bridges(cluster, name: str) -> list[SavedNetwork]:
    listed = cluster.run(name, 'ids=$(docker network ls -q --filter type=custom --filter driver=bridge) && '
                               '{ [ -z "$ids" ] && echo [] || docker network inspect $ids; }')
    if listed.rc != 0:
        raise SaveError(f"cannot list {name}'s networks: {(listed.stderr or listed.stdout).strip()}")
    return [SavedNetwork.from_inspect(doc) for doc in json.loads(listed.stdout)]


def _reflectors(cluster) -> list[tuple[str, str]]:
    """Each node running a route reflector, with the `routereflector run` that started it (from its argv)."""
    found = []
    for name in cluster.topo.hosts(sort=True):
        state = cluster.host(name).state_dir
        pid = NodePaths(state / "run", state / "log", daemon="routereflector").running_pid()
        if name not in cluster.hosts and pid is not None:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            options = [part for index, word in enumerate(argv[:-1]) if word in REFLECTOR_OPTIONS
                       for part in (word, argv[index + 1])]
            found.append((name, shlex.join(["routereflector", "run", *options])))
    return found


# -- bringing it back, in the new lab ------------------------------------------------------------
def unpack(path: Path, run_dir: RunDir) -> tuple[SavedLab, Path]:
    """Read a saved file (checked again), put its etcd snapshot where the members restore it
    from, and each host's /etc files into the upper directory of its view (before it is mounted)."""
    saved, etcd_db = read(path)
    directory = run_dir.path / "restore"
    directory.mkdir(parents=True, exist_ok=True)
    snapshot = directory / ETCD_DB
    descriptor = os.open(snapshot, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(etcd_db)
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            host, _, rest = member.name.removeprefix(f"{ETC}/").partition("/")
            if member.name.startswith(f"{ETC}/") and rest:
                if not HOST_NAME.fullmatch(host):
                    raise SaveError(f"{path}: {member.name} is not a host's file")
                upper = etc_view(run_dir.host(host)).upper
                try:
                    archive.extract(member.replace(name=rest, deep=False), upper, filter="tar")
                except tarfile.FilterError as error:
                    raise SaveError(f"{path}: {member.name} cannot be restored ({error})") from None
    return saved, snapshot


def etc_view(state_dir: Path) -> overlay.View:
    """A host's copy-on-write /etc (calisim.emulation.overlay): its upper directory holds what the host wrote."""
    return next(view for view in overlay.views(state_dir) if view.directory == "/etc")


def restore(cluster, saved: SavedLab) -> None:
    """On a cluster started from the saved etcd snapshot: forget the workloads that did not
    survive, start each calico-node and route reflector as it ran, wait for BGP, make each
    container again."""
    forget_workloads(cluster)
    nodes = [host for host in saved.hosts if host.start]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda host: cluster.run(host.name, host.start), nodes))
    cluster.progress("nodes started", len(nodes), len(nodes))
    failed = [result for result in results if result.rc != 0]
    if failed:
        raise SaveError(f"{failed[0].host}$ {failed[0].command}: {(failed[0].stdout + failed[0].stderr).strip()}")
    if nodes and all(host.start for host in saved.hosts if host.name in cluster.hosts):
        cluster.wait_for_mesh(timeout=120)  # (a host saved without its calico-node would keep its peers waiting)
    made: list[str] = []

    def run(host: SavedHost, command: str) -> None:
        result = cluster.run(host.name, command)
        if result.rc != 0:
            raise SaveError(f"{host.name}$ {command}: {(result.stdout + result.stderr).strip()}")

    def recreate(host: SavedHost) -> None:
        for network in host.networks:
            run(host, network.command())
        for container in host.containers:
            for command in container.commands():
                run(host, command)
            made.append(container.name)
            cluster.progress("workloads made again", len(made), saved.containers)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(recreate, saved.hosts))


def forget_workloads(cluster) -> None:
    """What Docker leaves in its cluster store and Calico in etcd for containers that are gone:
    their Docker endpoints, their workload endpoints, their addresses in IPAM's blocks."""
    with cluster.datastore() as ds:
        entries = {entry.key: entry.value for prefix in (keys.DOCKER_ENDPOINTS, keys.HOSTS)
                   for entry in ds.list(prefix)}
        workloads = WorkloadEndpoint.from_entries(entries)
        docker = Endpoint.from_entries(entries)
        addresses = {str(ip) for endpoint in workloads for ip in endpoint.addresses}
        addresses |= {address for endpoint in docker for address in endpoint.addresses}
        ds.wrap(IPAM(ds.target)).release_ips(sorted(addresses))
        for prefix in [keys.DOCKER_ENDPOINTS, *{keys.workloads(endpoint.node) for endpoint in workloads}]:
            ds.delete_prefix(prefix)

