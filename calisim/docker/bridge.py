"""Docker's `bridge` driver with its built-in IPAM (`default`), as dockerd runs it in its host's
network namespace (never the machine's): the default `bridge` network (docker0, 172.17.0.1/16,
made at start) and the user-defined ones `docker network create` makes without `-d` (a Linux
bridge `br-<ID[:12]>` each, with --subnet, --ip-range, --gateway and --aux-address, else the next
free 172.18-31.0.0/16 or 192.168.x.0/20 that overlaps no network and no route of the host).

Each bridge has Docker 1.13's rules: masquerade for what leaves it (`-s SUBNET ! -o BRIDGE -j
MASQUERADE`), forwarding to and from it, and DOCKER-ISOLATION's drops between any two bridges.
A container gets a veth pair (host end `veth` + 7 hex digits on the bridge, inner end `eth0`, MAC
02:42 + its IPv4 address), the lowest free address of the range (a freed one is reused at once)
and a default route via the gateway.  Such a container is not a Calico endpoint: it reaches other
hosts through its host's NAT, and Calico's policy drops what it sends to a workload.  These
networks are local in scope: in no cluster store, each dockerd's own (daemon.py keeps them)."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone

from ..datastore.resources.docker import Endpoint, Network
from .errors import APIError, DockerError
from .netns import ROUTE_PROTOCOL, in_namespace, route_socket
from .networks import NetworkRequest

NAME = "docker0"
SUBNET = ipaddress.ip_network("172.17.0.0/16")
GATEWAY = SUBNET[1]
ISOLATION = "DOCKER-ISOLATION"
# libnetwork's predefined local pools, in the order it tries them for a network without --subnet
CANDIDATES = [*(ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)),
              *(ipaddress.ip_network(f"192.168.{n}.0/20") for n in range(0, 256, 16))]


@dataclass(frozen=True)
class Bridge:
    """A bridge network's Linux side and its built-in IPAM: the device, the subnet, the gateway,
    the range container addresses come from, and the addresses never given (--aux-address)."""
    device: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    range: ipaddress.IPv4Network
    reserved: frozenset[str] = frozenset()

    @classmethod
    def of(cls, network: Network) -> "Bridge":
        subnet = ipaddress.ip_network(network.pool)
        return cls(device_of(network), subnet, ipaddress.ip_interface(network.gateway).ip,
                   ipaddress.ip_network(network.ip_range) if network.ip_range else subnet,
                   frozenset(a.split("/")[0] for a in network.aux_addresses.values()))

    def rules(self) -> list[tuple[str, str, list[str]]]:
        """Docker's NAT and forwarding rules for this bridge (nat POSTROUTING, filter FORWARD)."""
        return [("nat", "POSTROUTING", ["-s", str(self.subnet), "!", "-o", self.device, "-j", "MASQUERADE"]),
                ("filter", "FORWARD", ["-o", self.device, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                                       "-j", "ACCEPT"]),
                ("filter", "FORWARD", ["-i", self.device, "!", "-o", self.device, "-j", "ACCEPT"]),
                ("filter", "FORWARD", ["-i", self.device, "-o", self.device, "-j", "ACCEPT"])]

    def lowest_free(self, taken: set[str]) -> str:
        """The built-in IPAM's choice: the lowest address of the range not in use (nor the gateway's,
        nor reserved); a freed one is reused at once."""
        busy = {*taken, *self.reserved, str(self.gateway)}
        edges = (self.subnet.network_address, self.subnet.broadcast_address)
        for address in self.range:
            if str(address) not in busy and address not in edges:
                return str(address)
        raise APIError(500, "no available IPv4 addresses on this network's address pools")

    def address_for(self, asked: str | None, taken: set[str], user_subnet: bool) -> str:
        """--ip if given (on a network with a user-configured subnet, as Docker allows it), else the lowest free."""
        if asked is None:
            return self.lowest_free(taken)
        if not user_subnet:
            raise APIError(400, "User specified IP address is supported only when connecting to networks with "
                                "user configured subnets" if self.device != NAME else
                                "User specified IP address is supported on user defined networks only")
        if ipaddress.ip_address(asked) not in self.subnet:
            raise APIError(400, f"Invalid address {asked}: It does not belong to any of this network's subnets")
        if asked in {*taken, *self.reserved, str(self.gateway)}:
            raise APIError(400, "Address already in use")
        return asked


DEFAULT = Bridge(NAME, SUBNET, GATEWAY, SUBNET)


def device_of(network: Network) -> str:
    return NAME if network.name == "bridge" else "br-" + network.id[:12]


def in_a_host() -> bool:
    """Whether this process is in an emulated host's network namespace: calisim's sandbox is set
    (CALISIM_SANDBOX, its namespace's inode, as calisim.emulation.sandbox sets it) and this is
    not that namespace.  Never the machine's own, where bridges and NAT rules must not go."""
    sandbox = os.environ.get("CALISIM_SANDBOX", "")
    return bool(sandbox) and sandbox != str(os.stat("/proc/self/ns/net").st_ino)


def iptables(table: str, chain: str, rule: list[str], action: str = "-A") -> None:
    """Add (-A, -I) a rule once, or delete (-D) it if present (-w: Felix and others share the lock)."""
    present = subprocess.run(["iptables", "-w", "-t", table, "-C", chain, *rule], capture_output=True).returncode == 0
    if present == (action == "-D"):
        subprocess.run(["iptables", "-w", "-t", table, action, chain, *rule], capture_output=True, check=True)


def saved_rules() -> dict[str, set[str]]:
    """The host's rules as iptables-save prints them: each table's `-A CHAIN ...` lines."""
    saved: dict[str, set[str]] = {}
    lines: set[str] = set()
    for line in subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout.splitlines():
        if line.startswith("*"):
            lines = saved.setdefault(line[1:], set())
        elif line.startswith("-A "):
            lines.add(line)
    return saved


def restore(lines_by_table: dict[str, list[str]]) -> None:
    """Rule commands (`-A ...`, `-F CHAIN`) in one iptables-restore that keeps everything else."""
    script = "".join(f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
                     for table, lines in lines_by_table.items() if lines)
    if script:
        subprocess.run(["iptables-restore", "--noflush", "-w"], input=script, text=True, capture_output=True,
                       check=True)


def append_missing(rules: list[tuple[str, str, list[str]]]) -> None:
    """Each rule appended where the host lacks it, as `iptables -C` then `-A` rule by rule did, in
    two processes (one if none is missing) instead of two a rule: each reads the host's whole
    ruleset, and a dockerd's start ran ten of them one after another."""
    saved = saved_rules()
    missing: dict[str, list[str]] = {}
    for table, chain, rule in rules:
        line = f"-A {chain} {' '.join(rule)}"
        if line not in saved.get(table, set()):
            missing.setdefault(table, []).append(line)
    restore(missing)


def default(bip: str = "") -> Bridge:
    """docker0: 172.17.0.1/16, or daemon.json's `bip` (its gateway's address and prefix)."""
    if not bip:
        return DEFAULT
    address = ipaddress.IPv4Interface(bip)
    return Bridge(NAME, address.network, address.ip, address.network)


def set_up(bridge: Bridge = DEFAULT) -> None:
    """The Linux bridge with its gateway address, up, and Docker's NAT and forwarding rules."""
    from pyroute2 import IPRoute

    if not in_a_host():
        raise DockerError("calisim's dockerd runs only in an emulated host: it makes docker0 and NAT rules there")
    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=bridge.device):
            ipr.link("add", ifname=bridge.device, kind="bridge")
        (index,) = ipr.link_lookup(ifname=bridge.device)
        addresses = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                     for a in ipr.get_addr(index=index, family=socket.AF_INET)]
        if addresses != [(str(bridge.gateway), bridge.subnet.prefixlen)]:  # another bip before: replaced, as libnetwork
            for address, length in addresses:
                ipr.addr("del", index=index, address=address, prefixlen=length)
            ipr.addr("add", index=index, address=str(bridge.gateway), prefixlen=bridge.subnet.prefixlen)
        ipr.link("set", index=index, state="up")
    append_missing(bridge.rules())


def isolate(device: str, others: list[str], action: str = "-I") -> None:
    """DOCKER-ISOLATION, jumped to first from FORWARD: nothing crosses from one bridge to another."""
    subprocess.run(["iptables", "-w", "-N", ISOLATION], capture_output=True)  # fails if it exists: fine
    iptables("filter", ISOLATION, ["-j", "RETURN"])
    iptables("filter", "FORWARD", ["-j", ISOLATION], "-I")
    for other in others:
        iptables("filter", ISOLATION, ["-i", device, "-o", other, "-j", "DROP"], action)
        iptables("filter", ISOLATION, ["-i", other, "-o", device, "-j", "DROP"], action)


def routed_subnets() -> list[ipaddress.IPv4Network]:
    """The destinations the host routes (not its default route): a chosen subnet must overlap none."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False)
                for r in ipr.get_routes(family=socket.AF_INET, table=254) if r["dst_len"]]


def check_request(request: NetworkRequest) -> None:
    """The docker CLI's own checks of the IPAM options (the SDK sends them unchecked)."""
    if request.ipam_driver != "default":
        raise APIError(400, f"the bridge driver takes Docker's built-in IPAM (default) here, not {request.ipam_driver}")
    if request.ipv6 or request.subnet6:
        raise APIError(400, "calisim's bridge networks are IPv4 only: use a Calico network (-d calico) for IPv6")
    if request.subnet is None and (request.ip_range or request.gateway or request.aux_addresses):
        raise APIError(400, "every ip-range or gateway must have a corresponding subnet")
    if request.subnet is None:
        return
    try:
        subnet = ipaddress.ip_network(request.subnet)
    except ValueError:
        raise APIError(400, f"invalid CIDR address: {request.subnet}") from None
    if request.ip_range and not ipaddress.ip_network(request.ip_range).subnet_of(subnet):
        raise APIError(400, f"no matching subnet for range {request.ip_range}")
    if request.gateway and ipaddress.ip_address(request.gateway) not in subnet:
        raise APIError(400, f"no matching subnet for gateway {request.gateway}")
    for address in request.aux_addresses.values():
        if ipaddress.ip_address(address) not in subnet:
            raise APIError(400, f"no matching subnet for aux-address {address}")


def choose_subnet(request: NetworkRequest, in_use: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """--subnet if it overlaps no other network here, else libnetwork's first free predefined pool."""
    if request.subnet is not None:
        subnet = ipaddress.ip_network(request.subnet)
        if any(subnet.overlaps(other) for other in in_use):
            raise APIError(403, "Pool overlaps with other one on this address space")
        return subnet
    taken = [*in_use, *routed_subnets()]
    for candidate in CANDIDATES:
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    raise APIError(500, "could not find an available, non-overlapping IPv4 address pool among the defaults to "
                        "assign to the network")


def create(request: NetworkRequest, networks: list[Network]) -> Network:
    """A user-defined bridge network: its IPAM checked and chosen, its bridge and rules made."""
    check_request(request)
    bridges = [n for n in networks if n.driver == "bridge"]
    subnet = choose_subnet(request, [ipaddress.ip_network(n.pool) for n in bridges])  # the local address space
    gateway = request.gateway or str(subnet[1])
    network_id = secrets.token_hex(32)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    network = Network(network_id, request.name, "bridge", "default", f"LocalDefault/{subnet}", str(subnet),
                      f"{gateway}/{subnet.prefixlen}", created, request.ip_range or "", request.options, request.labels,
                      {name: f"{address}/{subnet.prefixlen}" for name, address in request.aux_addresses.items()},
                      user_subnet=request.subnet is not None)
    bridge = Bridge.of(network)
    set_up(bridge)
    isolate(bridge.device, [device_of(n) for n in bridges])
    return network


def remove(network: Network, networks: list[Network]) -> None:
    """A user-defined bridge network's device and rules go."""
    from pyroute2 import IPRoute

    bridge = Bridge.of(network)
    isolate(bridge.device, [device_of(n) for n in networks if n.driver == "bridge" and n.id != network.id], "-D")
    for table, chain, rule in bridge.rules():
        iptables(table, chain, rule, "-D")
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=bridge.device):
            ipr.link("del", index=index)


def host_end(endpoint: Endpoint) -> str:
    return "veth" + endpoint.id[:7]


def next_eth(ipr) -> str:
    """The container's next interface name, as libnetwork numbers them: eth0, then eth1, ..."""
    names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    return next(f"eth{n}" for n in range(len(names) + 1) if f"eth{n}" not in names)


def connect(network: Network, container: str, pid: int, taken: set[str], ip: str | None = None,
            aliases: tuple[str, ...] = ()) -> Endpoint:
    """A veth pair from the network's bridge into the namespace of process pid, addressed and
    routed as dockerd does."""
    from pyroute2 import IPRoute

    bridge = Bridge.of(network)
    address = bridge.address_for(ip, taken, network.user_subnet)
    mac = "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.ip_address(address).packed)
    endpoint = Endpoint(secrets.token_hex(32), network.id, container,
                        f"{address}/{bridge.subnet.prefixlen}", mac, pid, "", aliases)
    peer = "vethp" + endpoint.id[:7]
    with IPRoute() as ipr:
        ipr.link("add", ifname=host_end(endpoint), kind="veth", peer=peer)
        (outer,) = ipr.link_lookup(ifname=host_end(endpoint))
        try:
            (device,) = ipr.link_lookup(ifname=bridge.device)
            ipr.link("set", index=outer, master=device, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_pid=pid)
            with IPRoute(fileno=in_namespace(pid, route_socket).detach()) as inside:
                (index,) = inside.link_lookup(ifname=peer)
                inside.link("set", index=index, ifname=next_eth(inside), address=mac)
                inside.addr("add", index=index, address=address, prefixlen=bridge.subnet.prefixlen)
                inside.link("set", index=index, state="up")
                if not inside.get_default_routes(family=socket.AF_INET):  # one gateway: the first network's
                    inside.route("add", dst="0.0.0.0/0", gateway=str(bridge.gateway), oif=index, proto=ROUTE_PROTOCOL)
        except Exception as error:
            ipr.link("del", index=outer)
            raise DockerError(f"failed to connect {container} to {bridge.device}: {error}") from None
    return endpoint


def disconnect(endpoint: Endpoint) -> None:
    """The veth pair goes (its inner end with it)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=host_end(endpoint)):
            ipr.link("del", index=index)
