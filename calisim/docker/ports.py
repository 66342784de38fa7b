"""Port publishing (`-p [IP:]HOST:CONTAINER[/udp]`, `-P`) on Docker's bridge networks, as dockerd
1.13 programs it in its host's network namespace when a container starts, and what `docker port`,
`docker ps` (PORTS) and `docker inspect` show of it.

The docker CLI parses `-p` itself and sends `HostConfig.PortBindings` ({"80/tcp": [{"HostIp",
"HostPort"}]}), `-P` as `PublishAllPorts` over `Config.ExposedPorts` (`--expose`, the image's).
At start each binding gets its host port (the one asked, the first free of a range, or the
lowest free of the host's `ip_local_port_range` for `-P` and `-p CONTAINER`), is held in the
allocator (another container asking for it: Docker's "port is already allocated") and by a
listening socket in the host (docker-proxy's part: a port another process holds fails with
"address already in use"), and gets Docker's rules: nat DOCKER `! -i BRIDGE -p P -d IP --dport
HP -j DNAT --to-destination CIP:CP` (jumped to from PREROUTING and OUTPUT for the host's own
addresses), filter DOCKER's ACCEPT into the bridge, and the hairpin MASQUERADE.  The proxy
serves TCP connections to the host's loopback (which DNAT does not see), as docker-proxy does;
UDP on loopback is not relayed.  On a Calico network `-p`/`-P` is accepted and does nothing, as
libnetwork-plugin v1.0's ProgramExternalConnectivity did (README, "Docker in the hosts")."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .bridge import iptables, restore, saved_rules
from .errors import APIError

LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")  # the host's own: dockerd runs in its namespace
JUMPS = [("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]),
         ("nat", "OUTPUT", ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"])]


@dataclass(frozen=True)
class Binding:
    """One published port: the container's port and protocol, and the host address and port."""
    container_port: int
    proto: str
    host_ip: str
    host_port: int

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def rules(self, device: str, container_ip: str) -> list[tuple[str, str, list[str]]]:
        """Docker's rules for the binding (nat DOCKER's DNAT, filter DOCKER's ACCEPT, the hairpin)."""
        destination = "0/0" if self.host_ip == "0.0.0.0" else f"{self.host_ip}/32"
        port = ["-p", self.proto, "--dport"]
        return [("nat", "DOCKER", ["!", "-i", device, *port, str(self.host_port), "-d", destination, "-j", "DNAT",
                                   "--to-destination", f"{container_ip}:{self.container_port}"]),
                ("filter", "DOCKER", ["-d", f"{container_ip}/32", "!", "-i", device, "-o", device,
                                      *port, str(self.container_port), "-j", "ACCEPT"]),
                ("nat", "POSTROUTING", ["-s", f"{container_ip}/32", "-d", f"{container_ip}/32",
                                        *port, str(self.container_port), "-j", "MASQUERADE"])]


@dataclass(frozen=True)
class Request:
    """A port to publish, as asked: the host address, and the host port (empty: any free; a-b: a range)."""
    container_port: int
    proto: str
    host_ip: str
    host_port: str


def requests(config: dict, host_config: dict) -> list[Request]:
    """What create asked to publish: each PortBindings entry, and with -P every exposed port too."""
    bindings = host_config.get("PortBindings") or {}
    asked = []
    ports = sorted({*bindings, *((config.get("ExposedPorts") or {}) if host_config.get("PublishAllPorts") else ())},
                   key=port_order)
    for port in ports:
        number, proto = split_port(port)
        for entry in bindings.get(port) or [{}]:
            host_ip = entry.get("HostIp") or "0.0.0.0"
            check_ip(host_ip)
            asked.append(Request(number, proto, host_ip, entry.get("HostPort") or ""))
    return asked


def split_port(port: str) -> tuple[int, str]:
    number, _, proto = port.partition("/")
    if not number.isdigit():
        raise APIError(400, f"Invalid containerPort: {number}")
    if (proto or "tcp") not in ("tcp", "udp"):
        raise APIError(400, f"Invalid proto: {proto}")
    return int(number), proto or "tcp"


def port_order(port: str) -> tuple[int, str]:
    number, _, proto = port.partition("/")
    return (int(number) if number.isdigit() else 0, proto)


def local_port_range() -> range:
    """Where ephemeral host ports come from (Docker's fallback: 49153-65535)."""
    try:
        low, high = (int(n) for n in LOCAL_PORT_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 49153, 65535
    return range(low, high + 1)


@dataclass
class Held:
    """A published port's socket in the host (docker-proxy's part) and, for TCP, the relay to the container."""
    sock: socket.socket
    target: tuple[str, int]

    def serve(self) -> None:
        """Relay each connection to the container until the socket is closed."""
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=relay, args=(client, self.target), daemon=True).start()


def relay(client: socket.socket, target: tuple[str, int]) -> None:
    """One loopback connection to a published TCP port, spliced to the container's port."""
    try:
        upstream = socket.create_connection(target, timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (sink, source):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
    pump(client, upstream)
    client.close()
    upstream.close()


@dataclass
class Publisher:
    """One dockerd's allocator of host ports and what each container has published."""
    published: dict[str, list[Binding]] = field(default_factory=dict)  # container ID -> its bindings
    held: dict[Binding, Held] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def taken(self, proto: str, host_ip: str, port: int) -> bool:
        """Whether another binding has the port (on the same address, or either on every address)."""
        return any(b.proto == proto and b.host_port == port
                   and (b.host_ip == host_ip or "0.0.0.0" in (b.host_ip, host_ip)) for b in self.held)

    def allocate(self, request: Request, endpoint: str) -> Iterator[Binding]:
        """The bindings a request may have, in order (the port asked, a range's free ones, any free
        one): Docker's refusal if none is free."""
        if request.host_port:
            low, _, high = request.host_port.partition("-")
            if not low.isdigit() or not (high or low).isdigit():
                raise APIError(400, f"Invalid hostPort: {request.host_port}")
            candidates = range(int(low), int(high or low) + 1)
        else:
            candidates = local_port_range()
        free = (port for port in candidates if not self.taken(request.proto, request.host_ip, port))
        first = next(free, None)
        if first is not None:
            for port in (first, *free):
                yield Binding(request.container_port, request.proto, request.host_ip, port)
            return
        raise APIError(500, f"driver failed programming external connectivity on endpoint {endpoint}: Bind for "
                            f"{request.host_ip}:{request.host_port or candidates.start} failed: "
                            "port is already allocated")

    def publish(self, container: str, endpoint: str, device: str, container_ip: str, asked: list[Request]) -> None:
        """Every binding asked, or none (a refusal undoes the ones made); endpoint: `NAME (ENDPOINT ID)`."""
        with self.lock:
            try:
                for request in asked:
                    binding = self.bind(request, container_ip, endpoint)
                    self.published.setdefault(container, []).append(binding)
                    self.program(binding, device, container_ip, "-A")
            except Exception:
                self.unpublish_locked(container, device, container_ip)
                raise

    def bind(self, request: Request, container_ip: str, endpoint: str) -> Binding:
        """The first binding whose socket the host lets us have: for a port asked, the first one's
        (or Docker's error); for any port, the next free one while another process has one."""
        for binding in self.allocate(request, endpoint):
            try:
                self.hold(binding, container_ip, endpoint)
                return binding
            except APIError as error:
                if request.host_port:
                    raise
                refusal = error
        raise refusal

    def hold(self, binding: Binding, container_ip: str, endpoint: str) -> None:
        """The host's socket on the port, as docker-proxy binds it (a port another process has fails)."""
        kind = socket.SOCK_STREAM if binding.proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((binding.host_ip, binding.host_port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
        except OSError as error:
            sock.close()
            raise APIError(500, f"driver failed programming external connectivity on endpoint {endpoint}: Error "
                                f"starting userland proxy: listen {binding.proto} {binding.host_ip}:"
                                f"{binding.host_port}: bind: {error.strerror.lower()}") from None
        held = self.held[binding] = Held(sock, (container_ip, binding.container_port))
        if kind == socket.SOCK_STREAM:
            threading.Thread(target=held.serve, daemon=True).start()

    @staticmethod
    def program(binding: Binding, device: str, container_ip: str, action: str) -> None:
        if action == "-A":
            for table in ("nat", "filter"):
                iptables_chain(table, "DOCKER")
            for table, chain, rule in [*JUMPS, ("filter", "FORWARD", ["-o", device, "-j", "DOCKER"])]:
                iptables(table, chain, rule)
        for table, chain, rule in binding.rules(device, container_ip):
            iptables(table, chain, rule, action)

    def unpublish(self, container: str, device: str, container_ip: str) -> None:
        """The container's bindings go: rules, sockets, allocations."""
        with self.lock:
            self.unpublish_locked(container, device, container_ip)

    def unpublish_locked(self, container: str, device: str, container_ip: str) -> None:
        for binding in self.published.pop(container, []):
            self.program(binding, device, container_ip, "-D")
            held = self.held.pop(binding, None)
            if held is not None:
                try:
                    held.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                held.sock.close()


def iptables_chain(table: str, chain: str) -> None:
    """A user chain, made once (-N fails when it exists: that is fine)."""
    subprocess.run(["iptables", "-w", "-t", table, "-N", chain], capture_output=True)


def flush() -> None:
    """An earlier dockerd's port rules go (it may have been killed), as dockerd empties its DOCKER
    chains at start; its sockets went with it.  One iptables-save says whether there are any."""
    saved = saved_rules()
    restore({table: ["-F DOCKER"] for table in ("nat", "filter")
             if any(line.startswith("-A DOCKER ") for line in saved.get(table, ()))})


def host_config(asked: dict) -> dict:
    """Inspect's HostConfig.PortBindings and PublishAllPorts, as create asked."""
    return {"PortBindings": asked.get("PortBindings") or {}, "PublishAllPorts": bool(asked.get("PublishAllPorts"))}


def inspect_ports(config: dict, bindings: list[Binding], running: bool) -> dict:
    """NetworkSettings.Ports: each exposed or published port, null where nothing is bound."""
    if not running:
        return {}
    ports: dict = {port: None for port in (config.get("ExposedPorts") or {})}
    for binding in bindings:
        ports.setdefault(binding.key, None)
        ports[binding.key] = [*(ports[binding.key] or []), {"HostIp": binding.host_ip,
                                                             "HostPort": str(binding.host_port)}]
    return ports


def summary_ports(config: dict, bindings: list[Binding]) -> list[dict]:
    """/containers/json's Ports, from which `docker ps` makes its PORTS column."""
    bound = {b.key for b in bindings}
    exposed = [{"PrivatePort": split_port(p)[0], "Type": split_port(p)[1]}
               for p in (config.get("ExposedPorts") or {}) if p not in bound]
    return [*({"IP": b.host_ip, "PrivatePort": b.container_port, "PublicPort": b.host_port, "Type": b.proto}
              for b in bindings), *exposed]


def check_ip(address: str) -> None:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise APIError(400, f"Invalid ip address: {address}") from None
