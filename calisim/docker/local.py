"""The networks one dockerd keeps itself, local in scope and in no cluster store: the predefined
`bridge`, `host` and `none` (predefined.py) and the user-defined bridge networks (bridge.py), with
their endpoints, their names in Docker's embedded DNS (user-defined ones only, as Docker: the
default bridge has none) and the ports published through them (ports.py).  The user-defined ones
are kept on disk in dockerd's state (`network/<ID>.json`, where Docker has its local-kv.db), so a
dockerd started again has them back, with their bridges and rules."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..datastore.resources.docker import Endpoint, Network
from . import bridge, ports, predefined
from .containers import Attachment, Container
from .errors import APIError
from .networks import NetworkRequest
from .resolver import EmbeddedDNS


@dataclass
class Bridges:
    """A dockerd's bridge networks (in networks, beside host and none) and their published ports."""
    networks: list[Network]  # the daemon's local networks: this list is the daemon's own
    resolver: EmbeddedDNS
    directory: Path  # where the user-defined ones are kept for the next dockerd of the host
    publisher: ports.Publisher = field(default_factory=ports.Publisher)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def restore(self) -> None:
        """The user-defined bridge networks an earlier dockerd of this host made: back, with their
        bridges, rules and names (at start, before the API answers); no port of theirs is published yet."""
        ports.flush()
        for path in sorted(self.directory.glob("*.json")):
            network = Network.from_value(json.loads(path.read_text()))
            bridge.set_up(bridge.Bridge.of(network))
            bridge.isolate(bridge.device_of(network), [bridge.device_of(n) for n in self.networks
                                                       if n.driver == "bridge"])
            self.networks.append(network)
            self.resolver.record_local(network.key, network.to_value())

    def keep(self, network: Network) -> None:
        """On disk, whole or not at all (a new file renamed over)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{network.id}.json"
        partial.write_text(json.dumps(network.to_value()))
        os.replace(partial, self.directory / f"{network.id}.json")

    def refuse(self, name: str) -> None:
        """A new network (of any driver) may take neither a predefined name nor a local network's."""
        predefined.refuse(name, "created")
        if any(n.name == name for n in self.networks):
            raise APIError(409, f"network with name {name} already exists")

    def create(self, request: NetworkRequest, everyone: list[Network]) -> Network:
        """`docker network create [-d bridge]`: a user-defined bridge network on this host."""
        if any(n.name == request.name for n in everyone):
            raise APIError(409, f"network with name {request.name} already exists")
        network = bridge.create(request, everyone)
        self.keep(network)
        self.networks.append(network)
        self.resolver.record_local(network.key, network.to_value())
        return network

    def remove(self, network: Network, containers: list[Container]) -> None:
        """`docker network rm` of a user-defined bridge: refused while an endpoint is on it."""
        if any(e.network_id == network.id for c in containers for e in c.endpoints):
            raise APIError(403, f"error while removing network: network {network.name} id {network.id} has active "
                                "endpoints")
        bridge.remove(network, self.networks)
        (self.directory / f"{network.id}.json").unlink(missing_ok=True)
        self.networks.remove(network)
        self.resolver.record_local(network.key, None)

    def is_bridge(self, network_id: str) -> bool:
        return any(n.id == network_id and n.driver == "bridge" for n in self.networks)

    def network(self, network_id: str) -> Network:
        return next(n for n in self.networks if n.id == network_id)

    def join(self, container: Container, network: Network, attachment: Attachment, pid: int,
             containers: dict[str, Container]) -> None:
        """An endpoint on a bridge network, in container.endpoints: its veth and address, its names (a
        user-defined network's), and the container's published ports if this is its first network (the
        gateway's).  One join at a time, so that two containers starting together never get one address."""
        if attachment.aliases and network.name == "bridge":
            raise APIError(400, "Network-scoped alias is supported only for containers in user defined networks")
        with self.lock:
            container.endpoints.append(self.connect(container, network, attachment, pid, containers))

    def connect(self, container: Container, network: Network, attachment: Attachment, pid: int,
                containers: dict[str, Container]) -> Endpoint:
        taken = {e.address.split("/")[0] for c in list(containers.values()) for e in c.endpoints
                 if e.network_id == network.id}
        user_defined = network.name != "bridge"
        aliases = attachment.aliases + container.aliases if user_defined else ()
        endpoint = bridge.connect(network, container.name, pid, taken, attachment.ipv4, aliases)
        if attachment is container.attachments[0]:
            try:
                self.publish(container, network, endpoint)
            except APIError:
                bridge.disconnect(endpoint)
                raise
        if user_defined:
            self.resolver.record_local(endpoint.key, endpoint.to_value())
        return endpoint

    def adopt(self, container: Container, endpoint: Endpoint) -> None:
        """A bridge endpoint of a container an earlier dockerd started (live-restore): its names
        answered, and its published ports bound and forwarded again (they went with that dockerd)."""
        network = self.network(endpoint.network_id)
        if network.name != "bridge":
            self.resolver.record_local(endpoint.key, endpoint.to_value())
        if endpoint is container.endpoints[0]:
            self.publish(container, network, endpoint)

    def publish(self, container: Container, network: Network, endpoint: Endpoint) -> None:
        """The container's -p and -P on its first network's endpoint."""
        self.publisher.publish(container.id, f"{container.name} ({endpoint.id})", bridge.device_of(network),
                               endpoint.address.split("/")[0], ports.requests(container.config, container.host_config))

    def rename(self, endpoint: Endpoint, name: str) -> Endpoint:
        """The endpoint under the container's new name (`docker rename`), answered at once on a user-defined network."""
        renamed = dataclasses.replace(endpoint, container=name)
        if self.network(endpoint.network_id).name != "bridge":  # a user-defined network's (docker0 has no names)
            self.resolver.record_local(endpoint.key, renamed.to_value())
        return renamed

    def leave(self, container: Container, endpoint: Endpoint) -> None:
        """The endpoint's ports, names and veth go."""
        network = self.network(endpoint.network_id)
        self.publisher.unpublish(container.id, bridge.device_of(network), endpoint.address.split("/")[0])
        self.resolver.record_local(endpoint.key, None)
        bridge.disconnect(endpoint)

    def ports_json(self, container: Container) -> dict:
        """Inspect's NetworkSettings.Ports."""
        return ports.inspect_ports(container.config, self.publisher.published.get(container.id, []),
                                   container.running)

    def ports_summary(self, container: Container) -> list[dict]:
        """/containers/json's Ports (`docker ps` PORTS): none for a container that is not running."""
        if not container.running:
            return []
        return ports.summary_ports(container.config, self.publisher.published.get(container.id, []))
