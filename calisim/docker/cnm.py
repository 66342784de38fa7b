"""libnetwork's side of Docker's CNM flow, as dockerd plays it against Calico's plugins.

Networks: RequestPool (Pool from --subnet, SubPool from --ip-range, V6 with --ipv6), RequestAddress
for a --gateway and each --aux-address, then CreateNetwork with the --opt options as generic
options, as dockerd passes them; then the network is stored in Docker's cluster store (the same
etcd, as the seed's `cluster-store`), so one made on host1 is usable on host2.  A plugin's
refusal reaches the user as dockerd words it: "<Method>: <the plugin's Err>".
Endpoints: RequestAddress -> CreateEndpoint -> Join, then the container side of the veth is
moved into the container's network namespace, renamed `cali0`, given its /32 (and on an `--ipv6`
network its /128 from the IPv6 pool, and the Join's IPv6 gateway), MAC and the returned routes; disconnecting runs Leave -> DeleteEndpoint -> ReleaseAddress.  A step that
fails undoes the ones before it, so a failed connect leaves no interface, endpoint or address.

Runs inside an emulated host: plugins are reached through /run/docker/plugins.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ipaddress
import os
import secrets
import socket
import subprocess
import time
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from ..datastore import Synchronous, Txn, keys
from ..datastore.resources.docker import Endpoint, Network
from ..libnetwork import ADDRESS_SPACE, call_plugin

PLUGIN_DIR = Path("/run/docker/plugins")
ROUTE_PROTOCOL = 3  # "boot", as `ip route add` and libnetwork leave it
IFA_F_NODAD = 0x02
CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


class DockerError(RuntimeError):
    """What dockerd answers ("Error response from daemon: ...")."""


@dataclass(frozen=True)
class NetworkRequest:
    """`docker network create` as the Engine API carries it."""
    name: str
    driver: str = "calico"
    ipam_driver: str = "calico-ipam"
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict = field(default_factory=dict)
    ipam_options: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # --opt: the driver's generic options
    labels: dict = field(default_factory=dict)
    ipv6: bool = False
    subnet6: str | None = None  # an IPv6 --subnet: must be a Calico pool

    @classmethod
    def from_api(cls, body: dict) -> "NetworkRequest":
        ipam = body.get("IPAM") or {}
        configs = ipam.get("Config") or []
        v4 = next((c for c in configs if ":" not in (c.get("Subnet") or "")), {}) or {}
        v6 = next((c for c in configs if ":" in (c.get("Subnet") or "")), {}) or {}
        return cls(body["Name"], body.get("Driver") or "calico", ipam.get("Driver") or "calico-ipam",
                   v4.get("Subnet") or None, v4.get("IPRange") or None, v4.get("Gateway") or None,
                   v4.get("AuxiliaryAddresses") or {}, ipam.get("Options") or {}, body.get("Options") or {},
                   body.get("Labels") or {}, bool(body.get("EnableIPv6")), v6.get("Subnet") or None)


def call(plugin: str, method: str, request: dict, plugin_dir: Path = PLUGIN_DIR) -> dict:
    path = plugin_dir / f"{plugin}.sock"
    if not path.exists():
        raise DockerError(f"plugin \"{plugin}\" not found")
    status, answer = call_plugin(path, method, request)
    if status != 200:
        raise DockerError(f"{method}: {answer.get('Err') or f'failed with HTTP {status}'}")
    return answer


def networks(ds: Synchronous) -> list[Network]:
    return [Network.from_value(e.value) for e in ds.list(keys.DOCKER_NETWORKS)]


def find_network(ds: Synchronous, name_or_id: str) -> Network:
    for network in networks(ds):
        if name_or_id in (network.name, network.id) or (len(name_or_id) >= 12 and network.id.startswith(name_or_id)):
            return network
    raise DockerError(f"network {name_or_id} not found")


def create_network(ds: Synchronous, request: NetworkRequest, plugin_dir: Path = PLUGIN_DIR) -> Network:
    if any(n.name == request.name for n in networks(ds)):
        raise DockerError(f"network with name {request.name} already exists")
    undo: list = []
    try:
        pool, gateway, aux, v6 = allocate_pool(request, undo, plugin_dir)
        network = Network(secrets.token_hex(32), request.name, request.driver, request.ipam_driver, pool["PoolID"],
                          pool["Pool"], gateway,
                          datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                          request.ip_range or "", request.options, request.labels, aux,
                          v6["PoolID"] if v6 else "", v6["Pool"] if v6 else "")
        ipv6_data = [{"AddressSpace": ADDRESS_SPACE, "Pool": v6["Pool"],
                      "Gateway": (v6.get("Data") or {}).get("com.docker.network.gateway", "")}] if v6 else []
        call(request.driver, "NetworkDriver.CreateNetwork", {
            "NetworkID": network.id, "Options": {"com.docker.network.enable_ipv6": request.ipv6,
                                                 "com.docker.network.generic": request.options},
            "IPv4Data": [{"AddressSpace": ADDRESS_SPACE, "Pool": network.pool, "Gateway": network.gateway,
                          "AuxAddresses": aux}], "IPv6Data": ipv6_data}, plugin_dir)
        if not ds.commit(Txn().require_absent(network.key).put(network.key, network.to_value())):
            raise DockerError(f"network {network.id} already exists")
    except DockerError:
        undo_all(undo)
        raise
    return network


def allocate_pool(request: NetworkRequest, undo: list, plugin_dir: Path) -> tuple[dict, str, dict, dict | None]:
    """libnetwork's ipamAllocate: the pools (v4, then v6 with --ipv6), the gateway (the
    driver's, or a --gateway requested as an address), each --aux-address.  Returns (pool,
    gateway, aux addresses, the IPv6 pool or None); undo collects the releases."""
    if request.ipam_driver == "default":  # Docker's built-in IPAM: a subnet with a real gateway, no plugin
        subnet = request.subnet or "172.18.0.0/16"
        network = ipaddress.ip_network(subnet)
        gateway = f"{request.gateway or network[1]}/{network.prefixlen}"
        return {"PoolID": f"LocalDefault/{subnet}", "Pool": subnet, "Data": {}}, gateway, dict(request.aux_addresses), None
    ipam = request.ipam_driver
    pool = call(ipam, "IpamDriver.RequestPool", {"AddressSpace": ADDRESS_SPACE, "Pool": request.subnet or "",
                                                 "SubPool": request.ip_range or "", "Options": request.ipam_options,
                                                 "V6": False}, plugin_dir)
    undo.append(lambda: call(ipam, "IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]}, plugin_dir))
    v6 = None
    if request.ipv6:
        v6 = call(ipam, "IpamDriver.RequestPool", {"AddressSpace": ADDRESS_SPACE, "Pool": request.subnet6 or "",
                                                   "SubPool": "", "Options": request.ipam_options, "V6": True},
                  plugin_dir)
        undo.append(lambda: call(ipam, "IpamDriver.ReleasePool", {"PoolID": v6["PoolID"]}, plugin_dir))
    prefix = pool["Pool"].split("/")[1]

    def reserve(address: str, options: dict) -> str:
        answer = call(ipam, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": address,
                                                          "Options": options}, plugin_dir)["Address"]
        undo.append(lambda: call(ipam, "IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"],
                                                                     "Address": answer.split("/")[0]}, plugin_dir))
        return f"{answer.split('/')[0]}/{prefix}"

    gateway = (reserve(request.gateway, {"RequestAddressType": "com.docker.network.gateway"}) if request.gateway
               else (pool.get("Data") or {}).get("com.docker.network.gateway", ""))
    aux = {name: reserve(address, {}) for name, address in request.aux_addresses.items()}
    return pool, gateway, aux, v6


def endpoints(ds: Synchronous, network: Network) -> list[Endpoint]:
    return [Endpoint.from_value(e.value) for e in ds.list(keys.docker_endpoints(network.id))]


def remove_network(ds: Synchronous, name_or_id: str, plugin_dir: Path = PLUGIN_DIR) -> None:
    network = find_network(ds, name_or_id)
    if endpoints(ds, network):
        raise DockerError(f"error while removing network: network {network.name} id {network.id} has active endpoints")
    call(network.driver, "NetworkDriver.DeleteNetwork", {"NetworkID": network.id}, plugin_dir)
    for address in network.aux_addresses.values():
        call(network.ipam_driver, "IpamDriver.ReleaseAddress",
             {"PoolID": network.pool_id, "Address": address.split("/")[0]}, plugin_dir)
    for pool_id in filter(None, (network.pool_id, network.pool_id6)):
        call(network.ipam_driver, "IpamDriver.ReleasePool", {"PoolID": pool_id}, plugin_dir)
    ds.commit(Txn().delete(network.key))


def connect(ds: Synchronous, network: Network, container: str, sandbox_pid: int, ip: str | None = None,
            plugin_dir: Path = PLUGIN_DIR) -> Endpoint:
    """Give the container (a process's network namespace) an interface on network."""
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise DockerError(f"invalid IPv4 address: {ip}") from None
    endpoint_id = secrets.token_hex(32)
    undo: list = []
    try:
        address = request_address(network, network.pool_id, ip or "", undo, plugin_dir)
        address6 = request_address(network, network.pool_id6, "", undo, plugin_dir) if network.pool_id6 else ""
        created = call(network.driver, "NetworkDriver.CreateEndpoint", {
            "NetworkID": network.id, "EndpointID": endpoint_id, "Options": {},
            "Interface": {"Address": address, "AddressIPv6": address6, "MacAddress": ""}}, plugin_dir)
        undo.append(lambda: call(network.driver, "NetworkDriver.DeleteEndpoint",
                                 {"NetworkID": network.id, "EndpointID": endpoint_id}, plugin_dir))
        mac = created["Interface"]["MacAddress"].lower()
        joined = call(network.driver, "NetworkDriver.Join", {
            "NetworkID": network.id, "EndpointID": endpoint_id, "SandboxKey": f"/proc/{sandbox_pid}/ns/net",
            "Options": {}}, plugin_dir)
        undo.append(lambda: call(network.driver, "NetworkDriver.Leave",
                                 {"NetworkID": network.id, "EndpointID": endpoint_id}, plugin_dir))
        configure_container_interface(sandbox_pid, joined, address, mac, address6)
        endpoint = Endpoint(endpoint_id, network.id, container, address, mac, sandbox_pid, address6)
        ds.put(endpoint.key, endpoint.to_value())
        return endpoint
    except Exception:
        undo_all(undo)
        raise


def request_address(network: Network, pool_id: str, ip: str, undo: list, plugin_dir: Path) -> str:
    """An address from one of the network's pools (undo gets its release)."""
    address = call(network.ipam_driver, "IpamDriver.RequestAddress",
                   {"PoolID": pool_id, "Address": ip, "Options": {}}, plugin_dir)["Address"]
    undo.append(lambda: call(network.ipam_driver, "IpamDriver.ReleaseAddress",
                             {"PoolID": pool_id, "Address": address.split("/")[0]}, plugin_dir))
    return address


def undo_all(undo: list) -> None:
    """Undo the steps done so far, last first: what can be undone is, and the error that
    stopped the flow stays the one reported."""
    for step in reversed(undo):
        try:
            step()
        except DockerError:
            pass


def disconnect(ds: Synchronous, endpoint: Endpoint, plugin_dir: Path = PLUGIN_DIR) -> None:
    """Leave, DeleteEndpoint, ReleaseAddress: each step is tried even if one before it failed (a
    failed Leave must not keep the endpoint and its address); the first error is raised after."""
    network = find_network(ds, endpoint.network_id)
    request = {"NetworkID": network.id, "EndpointID": endpoint.id}
    first: DockerError | None = None
    releases = [(network.ipam_driver, "IpamDriver.ReleaseAddress", {"PoolID": pool_id, "Address": address.split("/")[0]})
                for pool_id, address in ((network.pool_id, endpoint.address), (network.pool_id6, endpoint.address6))
                if address]
    for plugin, method, body in ((network.driver, "NetworkDriver.Leave", request),
                                 (network.driver, "NetworkDriver.DeleteEndpoint", request), *releases):
        try:
            call(plugin, method, body, plugin_dir)
        except DockerError as error:
            first = first or error
    ds.commit(Txn().delete(endpoint.key))
    if first is not None:
        raise first


def in_namespace(pid: int, make: Callable[[], T]) -> T:
    """make() run inside the network namespace of process pid, on a thread of its own: setns(2)
    moves only the calling thread, and a socket stays in the namespace it was made in.  (pyroute2's
    netns= forks the daemon instead, and a fork costs more with every container's threads: 9 ms
    with one thread, 25 ms with 800.)"""
    def entered() -> T:
        with open(f"/proc/{pid}/ns/net") as namespace:
            if libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"setns into the network namespace of {pid}: {os.strerror(error)}")
        return make()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as once:
        return once.submit(entered).result()


def route_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


def configure_container_interface(sandbox_pid: int, joined: dict, address: str, mac: str, address6: str = "") -> None:
    """Move the Join's interface into the sandbox, rename it, address it, add the routes."""
    from pyroute2 import IPRoute

    source = joined["InterfaceName"]["SrcName"]
    name = joined["InterfaceName"]["DstPrefix"] + "0"
    with IPRoute() as ipr:
        (index,) = ipr.link_lookup(ifname=source) or [None]
        if index is None:
            raise DockerError(f"the driver did not create interface {source}")
        ipr.link("set", index=index, net_ns_pid=sandbox_pid)
    with IPRoute(fileno=in_namespace(sandbox_pid, route_socket).detach()) as inside:
        (index,) = inside.link_lookup(ifname=source)
        inside.link("set", index=index, ifname=name, address=mac)
        ip = ipaddress.ip_interface(address)
        inside.addr("add", index=index, address=str(ip.ip), prefixlen=32)
        if address6:  # nodad: usable at once, as the /32 is
            inside.addr("add", index=index, address=address6.split("/")[0], prefixlen=128, flags=IFA_F_NODAD)
        inside.link("set", index=index, state="up")
        for route in joined.get("StaticRoutes") or []:
            if route.get("RouteType") == 1:
                inside.route("add", dst=route["Destination"], oif=index, scope="link", proto=ROUTE_PROTOCOL)
            else:
                inside.route("add", dst=route["Destination"], gateway=route["NextHop"], oif=index, proto=ROUTE_PROTOCOL)
        if joined.get("Gateway"):
            inside.route("add", dst="0.0.0.0/0", gateway=joined["Gateway"], oif=index, proto=ROUTE_PROTOCOL)
        if address6 and joined.get("GatewayIPv6"):
            inside.route("add", dst="::/0", gateway=joined["GatewayIPv6"], oif=index, proto=ROUTE_PROTOCOL)


def start_sandbox(name: str, files: Path | None = None, timeout: float = 10.0) -> subprocess.Popen:
    """A container's sandbox: a process holding new network, UTS and mount namespaces
    (hostname = name; with files, its hosts and resolv.conf are the container's /etc/hosts and
    /etc/resolv.conf).  Returns once the process is in its own namespaces."""
    mounts = ('mount --bind "$1/hosts" /etc/hosts && mount --bind "$1/resolv.conf" /etc/resolv.conf && '
              if files else "")
    process = subprocess.Popen(["unshare", "--net", "--uts", "--mount", "--", "sh", "-c",
                                f'hostname "$0" && {mounts}ip link set lo up && exec sleep infinity', name,
                                str(files or "")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    own = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + timeout
    while os.stat(f"/proc/{process.pid}/ns/net").st_ino == own or _comm(process.pid) != "sleep":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise DockerError(f"the sandbox of {name} did not start")
        time.sleep(0.005)
    return process


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> None:
    """Drive the flow by hand inside a host (until the emulated dockerd serves Docker's API)."""
    import argparse
    import json
    import signal
    import sys

    from ..datastore import Datastore

    parser = argparse.ArgumentParser(prog="python -m calisim.docker.cnm", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("network-create")
    create.add_argument("name")
    create.add_argument("--subnet")
    commands.add_parser("network-rm").add_argument("name")
    run = commands.add_parser("run", help="start a sandbox and connect it; prints the endpoint as JSON")
    run.add_argument("name")
    run.add_argument("--network", required=True)
    run.add_argument("--ip")
    commands.add_parser("rm", help="disconnect a container and stop its sandbox").add_argument("name")
    args = parser.parse_args(argv)
    with Synchronous(Datastore.from_env()) as ds:
        try:
            if args.command == "network-create":
                print(create_network(ds, NetworkRequest(args.name, subnet=args.subnet)).id)
            elif args.command == "network-rm":
                remove_network(ds, args.name)
            elif args.command == "run":
                network = find_network(ds, args.network)
                sandbox = start_sandbox(args.name)
                try:
                    print(json.dumps(asdict(connect(ds, network, args.name, sandbox.pid, args.ip))))
                except Exception:
                    sandbox.kill()
                    raise
            else:
                mine = [e for n in networks(ds) for e in endpoints(ds, n) if e.container == args.name]
                if not mine:
                    raise DockerError(f"No such container: {args.name}")
                for endpoint in mine:
                    disconnect(ds, endpoint)
                    os.kill(endpoint.sandbox_pid, signal.SIGKILL)
        except DockerError as error:
            sys.exit(f"Error response from daemon: {error}")


if __name__ == "__main__":
    main()
