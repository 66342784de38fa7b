"""The emulated dockerd's containers: the store (names, IDs, execs) and their life cycle, as the
Engine API (api.py) drives it.

Containers are real: each run is a PID 1 in its own mount, PID, UTS, IPC and network
namespaces, pivoted into an overlayfs writable layer over its image (images.py; cinit, the C init
in cinit/, starts it, runtime.py holds its processes).  Networking goes through Calico's plugins exactly as
libnetwork does (cnm.py): a container joins its networks (the one it was created on, then those
connected to it, before its start or since) when it starts and leaves them (Leave,
DeleteEndpoint, ReleaseAddress) when it stops.  Names resolve through Docker's embedded DNS server
(resolver.py): each container's /etc/resolv.conf names 127.0.0.11, where the daemon answers the
names of the containers that share a network with it, on every host (endpoints are global, in the
cluster store), as NAME and NAME.NETWORK, with each of their addresses (IPv4, and IPv6 on an
`--ipv6` network).  Its /etc/hosts holds Docker's lines and its own name, as Docker writes it on
a user-defined network.  What `docker inspect` and `docker ps` show of a container or a network
is built here too, as dockerd's daemon package builds it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from ..datastore import DatastoreError, Synchronous
from ..libnetwork import GATEWAY
from . import cnm as dn
from . import ondisk, ports, predefined, restarts, runtime, users, volumes
from .config import DaemonConfig
from .containers import Attachment, Container, Exec
from .errors import APIError, DockerError, not_modified
from .images import IMAGES_DIR, lookup
from .local import Bridges
from ..datastore.resources.docker import Endpoint, Network
from .networks import NetworkRequest
from .resolver import EmbeddedDNS, socket_in
from .streams import detach_keys
from .times import human_duration, rfc3339

STOP_TIMEOUT = 10  # seconds `docker stop` waits before SIGKILL, as Docker
RESOLV_CONF = "nameserver 127.0.0.11\noptions ndots:0\n"  # Docker's embedded DNS on user-defined networks
HOSTS_HEADER = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::\tip6-localnet",
                "ff00::\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
log = logging.getLogger("dockerd")




def hosts_text(container: Container) -> str:
    """Docker's /etc/hosts on a user-defined network: its lines and the container's own addresses
    and hostname (the other containers' names are the embedded DNS server's)."""
    lines = [*HOSTS_HEADER,
             *(f"{address}\t{container.hostname}" for e in container.endpoints for address in e.addresses)]
    return "\n".join(dict.fromkeys(lines)) + "\n"


class Daemon:
    """One host's containers and execs, by ID, and what happens to them; the API's request threads
    share it (lock guards the datastore face and the maps, events tells waiters of state changes)."""

    def __init__(self, ds: Synchronous, state: Path, resolver: EmbeddedDNS, config: DaemonConfig | None = None):
        self.ds = ds
        self.state = state
        self.resolver = resolver
        self.images = IMAGES_DIR
        self.containers: dict[str, Container] = {}
        self.execs: dict[str, Exec] = {}
        self.lock = threading.RLock()  # the datastore face and the maps are shared by request threads
        self.events = threading.Condition()  # container state changes (exits, removals)
        self.config = config or DaemonConfig()  # the host's daemon.json, as serve read it
        self.local = predefined.networks(socket.gethostname(), rfc3339(time.time()), self.config.bip)  # and users'
        self.bridges = Bridges(self.local, resolver, state / "network")  # bridge networks, published ports

    # -- containers ----------------------------------------------------------------------------
    def find(self, ref: str) -> Container:
        for container in list(self.containers.values()):
            if (ref in (container.id, container.name, "/" + container.name)
                    or (len(ref) >= 3 and container.id.startswith(ref))):
                return container
        raise APIError(404, f"No such container: {ref}")

    def check_name(self, name: str) -> None:
        """A name a new or renamed container may take: Docker's characters, and not another's."""
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
            raise APIError(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        for other in list(self.containers.values()):
            if other.name == name:
                raise APIError(409, f'Conflict. The container name "/{name}" is already in use by container '
                                    f'"{other.id}". You have to remove (or rename) that container to be able to '
                                    'reuse that name.')

    def rename(self, container: Container, name: str) -> None:
        """`docker rename`: the name, and the name its endpoints answer to on every host."""
        if not name:
            raise APIError(400, "Neither old nor new names may be empty")
        if name.lstrip("/") == container.name:
            raise APIError(400, "Renaming a container with the same name as its current name")
        name = name.lstrip("/")
        self.check_name(name)
        container.name = name
        for index, endpoint in enumerate(list(container.endpoints)):
            if self.bridges.is_bridge(endpoint.network_id):  # dockerd's own: in no cluster store
                container.endpoints[index] = self.bridges.rename(endpoint, name)
                continue
            with self.lock:
                container.endpoints[index] = dn.rename(self.ds, endpoint, name)
            self.resolver.record(endpoint, present=False)
            self.resolver.record(container.endpoints[index], present=True)
        ondisk.save(container)

    def create(self, name: str | None, body: dict) -> dict:
        reference = body.get("Image") or ""
        image = lookup(reference)
        if image is None:
            raise APIError(404, f"No such image: {reference if ':' in reference else reference + ':latest'}")
        name = name or secrets.token_hex(4)
        self.check_name(name)
        host_config = restarts.check_create(body.get("HostConfig") or {}, self.config.log_config)
        network = host_config.get("NetworkMode") or "default"
        network = "bridge" if network == "default" else network  # Docker's default mode
        try:
            self.find_network(network)
        except DockerError as error:  # not 404: on a 404 from create the CLI tries to pull the image
            raise APIError(400, str(error)) from None
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        settings = endpoints.get(network) or endpoints.get("default")  # the CLI names the default mode so
        cmd = [*(body.get("Entrypoint") or []), *(body.get("Cmd") or ([] if body.get("Entrypoint") else image.cmd))]
        container = Container(secrets.token_hex(32), name, image, reference, cmd,
                              [Attachment.from_api(network, settings)], body, host_config)
        self.containers[container.id] = container
        ondisk.save(container)
        ondisk.keep_log(container)
        return {"Id": container.id, "Warnings": []}

    def files(self, container: Container) -> dict[str, str]:
        """Docker's /etc/hosts, /etc/hostname and /etc/resolv.conf for the container (bind-mounted):
        the host's own on `--net host`, the host's resolv.conf on `--net none` (no embedded DNS)."""
        mode = container.network
        hosts = predefined.host_file("hosts") if mode == "host" else hosts_text(container)
        resolv = predefined.host_file("resolv.conf") if mode in predefined.DRIVERS else RESOLV_CONF
        resolv = self.config.resolv_conf(resolv) if mode == "bridge" else resolv  # daemon.json's dns
        for name, text in (("hosts", hosts), ("hostname", container.hostname + "\n"), ("resolv.conf", resolv)):
            (container.directory / name).write_text(text)
        return {name: str(container.directory / name) for name in ("hosts", "hostname", "resolv.conf")}

    def write_hosts(self, container: Container) -> None:
        """The container's /etc/hosts once its endpoints changed (in place: the bind mount follows the inode)."""
        (container.directory / "hosts").write_text(hosts_text(container))

    def spec(self, container: Container) -> dict:
        """What the container's init (cinit) needs: the layers, the writable layer, Docker's files, the command."""
        for sub in ("upper", "work", "merged"):
            (container.directory / sub).mkdir(parents=True, exist_ok=True)
        layers = container.image.lowerdirs(self.images)
        user = users.lookup(container.config.get("User") or "", users.etc_of([container.directory / "upper", *layers]))
        return {"lowerdirs": [str(d) for d in layers],
                "upper": str(container.directory / "upper"), "work": str(container.directory / "work"),
                "merged": str(container.directory / "merged"), "hostname": container.hostname,
                "files": self.files(container), "env": container.environment(home=user.home),
                "user": [user.uid, user.gid, list(user.groups)], "network": container.network,
                "cmd": container.cmd, "workdir": container.config.get("WorkingDir") or "/",
                "console": container.host_config.get("ConsoleSize") or [0, 0],
                "mounts": volumes.prepare(volumes.of(container, self.state)),
                "runtime": str(container.directory / "runtime.json"), "exit": str(container.directory / "exit")}

    def start(self, container: Container) -> None:
        """Start the container; one that fails to start with --rm is removed, as dockerd does (the
        CLI waits for its removal)."""
        if container.running:
            raise not_modified()
        container.manually_stopped, container.restart_count, container.restart_delay = False, 0, 0.0
        try:
            self.run(container)
        except APIError:
            if container.host_config.get("AutoRemove"):
                self.remove(container, force=True, anonymous_volumes=True)
            raise

    def run(self, container: Container) -> None:
        """Start PID 1, join the networks, then let the command run (Docker's order)."""
        if not container.image.built(self.images):
            raise APIError(500, f"image {container.image.name} is not built in {self.images}: run `make setup`")
        container.directory = self.state / "containers" / container.id
        began = time.monotonic()
        try:
            process = runtime.start(self.spec(container), container.tty, bool(container.config.get("OpenStdin")))
        except runtime.RuntimeFailure as error:
            raise APIError(500, f"failed to create task for container: {error}") from None
        rooted = time.monotonic()
        try:
            self.serve_dns(container, process.pid)
        except OSError as error:
            process.kill()
            raise APIError(500, f"failed to start the embedded DNS server of {container.name}: {error}") from None
        try:
            self.join_networks(container, process.pid)
        except APIError:
            self.resolver.close(container.id)
            process.kill()
            raise
        joined = time.monotonic()
        try:
            process.go()
        except runtime.RuntimeFailure as error:
            self.resolver.close(container.id)
            try:
                self.leave_networks(container)
            except (DockerError, DatastoreError) as leaving:  # the command's failure is the one to report
                log.warning("%s could not leave its network: %s", container.name, leaving)
            container.exit_code, container.error = error.code, str(error)
            raise APIError(400, "failed to create task for container: failed to create shim task: OCI runtime create "
                                "failed: runc create failed: unable to start container process: error during container "
                                f"init: {error}: unknown") from None
        container.started_at, container.exit_code, container.error = time.time(), 0, ""
        if container.image.services:
            container.service = subprocess.Popen(["nsenter", "-t", str(process.pid), "-n", "--",
                                                  *container.image.services],
                                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL)
        self.watch(container, process)
        log.info("started %s (PID %d): root and namespaces %.3f s, network %.3f s, total %.3f s", container.name,
                 process.pid, rooted - began, joined - rooted, time.monotonic() - began)

    def serve_dns(self, container: Container, pid: int) -> None:
        """Docker's embedded DNS server in the container, on a user-defined network (not bridge, host, none)."""
        if container.network not in predefined.DRIVERS:
            self.resolver.serve(container.id, socket_in(pid), lambda: [e.network_id for e in container.endpoints],
                                lambda: container.links)

    def watch(self, container: Container, process: runtime.Process) -> None:
        """A running command (started here, or adopted at a restore): output pumped, end awaited."""
        container.output.begin()
        with self.events:
            container.process, container.status = process, "running"
            self.events.notify_all()
        ondisk.save(container)
        pumping = threading.Thread(target=runtime.pump, args=(dict(process.outputs), container.output), daemon=True)
        pumping.start()
        threading.Thread(target=self.monitor, args=(container, process, pumping), daemon=True).start()

    def monitor(self, container: Container, process: runtime.Process, pumping: threading.Thread) -> None:
        """When PID 1 ends: its output is all logged, the network is left, waiters are told;
        --rm removes the container."""
        code = process.popen.wait()
        self.resolver.close(container.id)
        pumping.join()
        if container.service is not None:
            container.service.kill()
            container.service.wait()
            container.service = None
        try:
            self.leave_networks(container)
        except Exception as error:
            log.warning("%s could not leave its network: %s", container.name, error)
        if process.popen.stdin is not None:
            process.popen.stdin.close()
        process.close_outputs()
        with self.events:
            container.status, container.exit_code, container.finished_at = "exited", code, time.time()
            container.exits += 1
            self.events.notify_all()
        ondisk.save(container)
        if container.host_config.get("AutoRemove"):
            self.remove(container, force=True, anonymous_volumes=True)
        else:
            restarts.after_exit(self, container)

    def join_networks(self, container: Container, pid: int) -> None:
        """An endpoint on each of the container's networks, in order; one that fails undoes the others."""
        for attachment in container.attachments:
            try:
                self.join(container, attachment, pid)
            except APIError:
                try:
                    self.leave_networks(container)
                except (DockerError, DatastoreError) as leaving:  # the join's failure is the one to report
                    log.warning("%s could not leave its networks: %s", container.name, leaving)
                raise

    def join(self, container: Container, attachment: Attachment, pid: int) -> None:
        """One endpoint, as the attachment asks (addresses, aliases and the short ID)."""
        try:
            network = self.find_network(attachment.network)
            if network.driver == "bridge":  # docker0 or a user's: dockerd's own, not in the cluster store
                self.bridges.join(container, network, attachment, pid, self.containers)
                container.links.update({(network.id, alias): name for alias, name in attachment.link_aliases().items()})
                return self.write_hosts(container)
            if predefined.is_local(network):  # the host's namespace, or a loopback only: no endpoint
                return
            with self.lock:
                endpoint = dn.connect(self.ds, network, container.name, pid, attachment.ipv4, attachment.ipv6,
                                      attachment.aliases + container.aliases)
        except APIError:  # already dockerd's words (a port already allocated, an address in use)
            raise
        except Exception as error:  # the plugins', etcd's or the kernel's refusal, in dockerd's words
            raise APIError(500, f"failed to create endpoint {container.name} on network {attachment.network}: "
                                f"{error}") from None
        container.links.update({(network.id, alias): name for alias, name in attachment.link_aliases().items()})
        container.endpoints.append(endpoint)
        self.joined(container, endpoint)

    def joined(self, container: Container, endpoint: Endpoint) -> None:
        """A new endpoint: in the container's /etc/hosts, and in the name table before the API answers."""
        self.write_hosts(container)
        self.resolver.record(endpoint, present=True)

    def left(self, container: Container, endpoint: Endpoint) -> None:
        """An endpoint gone (no longer in container.endpoints): out of /etc/hosts and of the name table."""
        self.write_hosts(container)
        self.resolver.record(endpoint, present=False)

    def leave_networks(self, container: Container) -> None:
        endpoints, container.endpoints = container.endpoints, []
        for endpoint in endpoints:
            self.release(container, endpoint)

    def release(self, container: Container, endpoint: Endpoint) -> None:
        """An endpoint (already out of container.endpoints) gone: its veth on docker0, or libnetwork's flow."""
        if self.bridges.is_bridge(endpoint.network_id):
            return self.bridges.leave(container, endpoint)
        with self.lock:
            dn.disconnect(self.ds, endpoint)
        self.left(container, endpoint)

    def wait_for(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        with self.events:
            return self.events.wait_for(condition, timeout)

    def send_signal(self, container: Container, signum: int) -> None:
        if not container.running:
            raise APIError(409, f"cannot kill container: {container.name}: container {container.id} is not running")
        try:
            os.kill(container.process.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self, container: Container, signum: int = signal.SIGKILL) -> None:
        """`docker kill`: the signal, and no restart by the policy (dockerd's killWithSignal)."""
        container.manually_stopped = True
        self.send_signal(container, signum)
        if signum == signal.SIGKILL:
            self.wait_for(lambda: not container.running)

    def stop(self, container: Container, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after timeout seconds; no restart by the policy until the next start."""
        self.hold_restart(container)
        if not container.running:
            raise not_modified()
        self.send_signal(container, signal.SIGTERM)
        if not self.wait_for(lambda: not container.running, timeout):
            self.kill(container)

    def hold_restart(self, container: Container) -> None:
        """No restart by the policy from now on; one under way ends first (cancelled, or running)."""
        with self.events:
            container.manually_stopped = True
            self.events.notify_all()
        self.wait_for(lambda: container.status != "restarting")

    def remove(self, container: Container, force: bool, anonymous_volumes: bool = False) -> None:
        if force:
            self.hold_restart(container)
        if container.running and not force:
            raise APIError(409, f"cannot remove container \"/{container.name}\": container is running: "
                                "stop the container before removing or force remove")
        if container.running:
            self.kill(container)
        with self.events:
            if container.removed:
                return
            self.containers.pop(container.id, None)
            for exec_id in [e.id for e in list(self.execs.values()) if e.container is container]:
                del self.execs[exec_id]
            if container.directory is not None:
                shutil.rmtree(container.directory, ignore_errors=True)
            if anonymous_volumes:  # rm -v, --rm
                volumes.remove_anonymous(container, self.state)
            container.removed = True
            ondisk.forget(container)
            self.events.notify_all()

    def top(self, container: Container) -> dict:
        if not container.running:
            raise APIError(409, f"container {container.id} is not running")
        return runtime.top(container.pid)

    # -- networks ------------------------------------------------------------------------------
    def networks(self) -> list[Network]:
        with self.lock:
            return [*self.local, *dn.networks(self.ds)]

    def find_network(self, name_or_id: str) -> Network:
        for network in self.local:
            if name_or_id in (network.name, network.id) or (len(name_or_id) >= 12
                                                            and network.id.startswith(name_or_id)):
                return network
        with self.lock:
            return dn.find_network(self.ds, name_or_id)

    def create_network(self, request: NetworkRequest) -> Network:
        self.bridges.refuse(request.name)  # a predefined name, or a local network's
        if request.driver == "bridge":  # Docker's default driver: a user-defined bridge network, local
            return self.bridges.create(request, self.networks())
        with self.lock:
            return dn.create_network(self.ds, request)

    def remove_network(self, network: Network) -> None:
        predefined.refuse(network.name, "removed")
        if network in self.local:
            return self.bridges.remove(network, list(self.containers.values()))
        with self.lock:
            dn.remove_network(self.ds, network.id)

    def connect(self, container: Container, network: Network, attachment: Attachment) -> None:
        """`docker network connect`: an endpoint now if the container runs, and at each start."""
        if self.attachment(container, network) is not None:
            raise APIError(403, f"endpoint with name {container.name} already exists in network {network.name}")
        predefined.check_connect([a.network for a in container.attachments], network)
        if container.running:
            self.join(container, attachment, container.pid)
        container.attachments.append(attachment)

    def disconnect(self, container: Container, network: Network) -> None:
        """`docker network disconnect`: the container's endpoints on network go, and it no longer joins it."""
        attachment = self.attachment(container, network)
        if attachment is None:
            raise APIError(500, f"container {container.id} is not connected to the network {network.name}")
        for endpoint in [e for e in container.endpoints if e.network_id == network.id]:
            container.endpoints.remove(endpoint)
            self.release(container, endpoint)
        container.attachments.remove(attachment)

    @staticmethod
    def attachment(container: Container, network: Network) -> Attachment | None:
        """The container's attachment to network, named by its name or (a prefix of) its ID."""
        return next((a for a in container.attachments
                     if a.network == network.name or (len(a.network) >= 12 and network.id.startswith(a.network))),
                    None)

    # -- JSON views ----------------------------------------------------------------------------
    def container_json(self, container: Container) -> dict:
        config = container.config
        return {"Id": container.id, "Name": "/" + container.name, "Created": rfc3339(container.created),
                "Path": container.cmd[0] if container.cmd else "", "Args": container.cmd[1:],
                "Image": container.image.id, "RestartCount": container.restart_count, "Driver": "overlay2",
                "State": {"Status": container.status, "Running": container.running, "Paused": False,
                          "Restarting": container.status == "restarting", "OOMKilled": False, "Dead": False,
                          "Pid": container.pid,
                          "ExitCode": container.exit_code, "Error": container.error,
                          "StartedAt": rfc3339(container.started_at), "FinishedAt": rfc3339(container.finished_at)},
                "Config": {"Hostname": container.hostname, "Domainname": "", "User": config.get("User") or "",
                           "AttachStdin": bool(config.get("AttachStdin")),
                           "AttachStdout": bool(config.get("AttachStdout")),
                           "AttachStderr": bool(config.get("AttachStderr")), "Tty": container.tty,
                           "OpenStdin": bool(config.get("OpenStdin")), "StdinOnce": bool(config.get("StdinOnce")),
                           "Env": [f"{k}={v}" for k, v in container.environment().items() if k != "HOME"],
                           "Cmd": config.get("Cmd") or list(container.image.cmd), "Image": container.reference,
                           "WorkingDir": config.get("WorkingDir") or "", "Entrypoint": config.get("Entrypoint"),
                           "Labels": config.get("Labels") or {},
                           **({"StopTimeout": config["StopTimeout"]} if config.get("StopTimeout") is not None else {})},
                "HostConfig": {"NetworkMode": container.network,
                               "AutoRemove": bool(container.host_config.get("AutoRemove")),
                               "LogConfig": container.host_config.get("LogConfig") or self.config.log_config,
                               "RestartPolicy": container.restart_policy.to_api(),
                               **ports.host_config(container.host_config)},
                "NetworkSettings": {"Networks": self.networks_json(container),
                                    "Ports": self.bridges.ports_json(container),
                                    "SandboxKey": f"/proc/{container.pid}/ns/net" if container.running else ""},
                "Mounts": [mount.json() for mount in volumes.of(container, self.state)]}

    def networks_json(self, container: Container) -> dict:
        """NetworkSettings.Networks: an endpoint's settings for each network the container is on, and
        what was asked (addresses, aliases) for each it joins at start but is not on now."""
        networks = {}
        for endpoint in container.endpoints:
            network = self.resolver.network(endpoint.network_id) or self.find_network(endpoint.network_id)
            attachment = self.attachment(container, network)
            address, _, length = endpoint.address.partition("/")
            networks[network.name] = {"NetworkID": network.id, "EndpointID": endpoint.id,
                                      "Gateway": network.gateway.split("/")[0] if network.pool else GATEWAY,
                                      "IPAddress": address, "IPPrefixLen": int(length or 32),
                                      "GlobalIPv6Address": endpoint.address6.split("/")[0],
                                      "GlobalIPv6PrefixLen": 128 if endpoint.address6 else 0,
                                      "MacAddress": endpoint.mac, "Aliases": list(endpoint.aliases) or None,
                                      "Links": list(attachment.links) or None if attachment else None,
                                      "IPAMConfig": attachment.ipam_config() if attachment else None}
        for attachment in [] if container.endpoints else container.attachments:  # stopped, or on host or none
            local = next((n.id for n in self.local if n.name == attachment.network), "")  # host, none: no endpoint
            networks[attachment.network] = {"NetworkID": local, "EndpointID": "", "Gateway": "", "IPAddress": "",
                                            "IPPrefixLen": 0, "MacAddress": "",
                                            "Aliases": list(attachment.aliases) or None,
                                            "IPAMConfig": attachment.ipam_config()}
        return networks

    def container_summary(self, container: Container) -> dict:
        full = self.container_json(container)
        if container.running:
            status = f"Up {human_duration(time.time() - container.started_at)}"
        elif container.status == "restarting":
            status = f"Restarting ({container.exit_code}) {human_duration(time.time() - container.finished_at)} ago"
        elif container.exits:
            status = f"Exited ({container.exit_code}) {human_duration(time.time() - container.finished_at)} ago"
        else:
            status = "Created"
        return {"Id": container.id, "Names": ["/" + container.name], "Image": container.reference,
                "ImageID": full["Image"], "Command": " ".join(container.cmd), "Created": int(container.created),
                "State": container.status, "Status": status, "Ports": self.bridges.ports_summary(container),
                "Labels": full["Config"]["Labels"],
                "NetworkSettings": {"Networks": full["NetworkSettings"]["Networks"]}, "HostConfig": full["HostConfig"],
                "Mounts": full["Mounts"]}

    def network_json(self, network: Network) -> dict:
        with self.lock:
            endpoints = dn.endpoints(self.ds, network)
        containers = {}
        for endpoint in endpoints:
            local = next((c for c in self.containers.values() if endpoint in c.endpoints), None)
            if local is not None:
                containers[local.id] = {"Name": local.name, "EndpointID": endpoint.id, "MacAddress": endpoint.mac,
                                        "IPv4Address": endpoint.address, "IPv6Address": endpoint.address6}
        if predefined.is_local(network):  # not in the cluster store: this daemon's running containers there
            containers = {c.id: {"Name": c.name, "EndpointID": "", "MacAddress": "", "IPv4Address": "",
                                 "IPv6Address": "", **next(({"EndpointID": e.id, "MacAddress": e.mac,
                                                             "IPv4Address": e.address} for e in c.endpoints
                                                            if e.network_id == network.id), {})}
                          for c in list(self.containers.values()) if c.running
                          and (c.network == network.name or any(e.network_id == network.id for e in c.endpoints))}
        ipam = {"Subnet": network.pool, **({"IPRange": network.ip_range} if network.ip_range else {}),
                **({"AuxiliaryAddresses": {k: v.split("/")[0] for k, v in network.aux_addresses.items()}}
                   if network.aux_addresses else {}),
                **({"Gateway": network.gateway.split("/")[0]}
                   if network.gateway and network.gateway != "0.0.0.0/0" else {})}
        return {"Name": network.name, "Id": network.id, "Created": network.created or "0001-01-01T00:00:00Z",
                "Scope": "local" if predefined.is_local(network) else "global", "Driver": network.driver,
                "EnableIPv6": bool(network.pool_id6), "Internal": False, "Attachable": False, "Ingress": False,
                "IPAM": {"Driver": network.ipam_driver, "Options": {},
                         "Config": [] if predefined.is_local(network) and not network.pool else
                         [ipam, *([{"Subnet": network.pool6}] if network.pool6 else [])]},
                "Containers": containers, "Options": network.options or {}, "Labels": network.labels or {}}

    # -- exec ------------------------------------------------------------------------------------
    def exec_create(self, container: Container, body: dict) -> dict:
        if not container.running:
            raise APIError(409, f"container {container.id} is not running")
        if not body.get("Cmd"):
            raise APIError(400, "No exec command specified")
        execution = Exec(secrets.token_hex(32), container, list(body["Cmd"]), bool(body.get("Tty")),
                         bool(body.get("AttachStdin")), list(body.get("Env") or []), body.get("ConsoleSize") or [0, 0],
                         body.get("User") or container.config.get("User") or "", body.get("WorkingDir") or "",
                         detach_keys(body.get("DetachKeys") or body.get("detachKeys") or ""))  # Go: any case
        self.execs[execution.id] = execution
        return {"Id": execution.id}
