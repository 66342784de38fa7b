"""libnetwork's side of Docker's CNM flow, as dockerd plays it against Calico's plugins (reached
only over their sockets in /run/docker/plugins), inside an emulated host.

Networks: RequestPool (Pool from --subnet, SubPool from --ip-range, then V6 with --ipv6),
RequestAddress for a --gateway and each --aux-address, then CreateNetwork with the --opt options
as generic options, as dockerd passes them; then the network is stored in Docker's cluster store
(the same etcd, as the seed's `cluster-store`), so one made on host1 is usable on host2.
Endpoints: RequestAddress (and one from the IPv6 pool on an --ipv6 network) -> CreateEndpoint ->
Join, then the Join's interface goes into the container's network namespace (netns.py),
ProgramExternalConnectivity (Calico's answers once Felix has programmed the endpoint) and the
endpoint into the cluster store; disconnecting runs Leave -> DeleteEndpoint -> ReleaseAddress.  A
step that fails undoes the ones before it, so a failed connect leaves no interface, endpoint or
address.  A plugin's refusal reaches the user as dockerd words it: "<Method>: <the plugin's Err>".

`python -m calisim.docker.cnm` drives the same flow from a host's shell without dockerd, with a
bare sandbox (netns.start_sandbox) for a container: the dataplane tests' workloads.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import secrets
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..datastore import Datastore, Synchronous, Txn, keys
from ..datastore.resources.docker import Endpoint, Network
from ..libnetwork import ADDRESS_SPACE, call_plugin
from .errors import DockerError
from .netns import configure_container_interface, start_sandbox
from .networks import NetworkRequest

PLUGIN_DIR = Path("/run/docker/plugins")


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
            "NetworkID": network.id, "Options": request.driver_options(),
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
        return ({"PoolID": f"LocalDefault/{subnet}", "Pool": subnet, "Data": {}}, gateway, dict(request.aux_addresses),
                None)
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
            ip6: str | None = None, aliases: tuple[str, ...] = (), plugin_dir: Path = PLUGIN_DIR) -> Endpoint:
    """Give the container (a process's network namespace) an interface on network, with the
    addresses asked for (--ip, --ip6) and the names it also answers to (aliases)."""
    for address, kind in ((ip, ipaddress.IPv4Address), (ip6, ipaddress.IPv6Address)):
        if address is not None:
            try:
                kind(address)
            except ValueError:
                raise DockerError(f"invalid IPv{kind.version} address: {address}") from None
    if ip6 is not None and not network.pool_id6:  # libnetwork finds no IPv6 pool that holds it
        raise DockerError(f"Invalid address {ip6}: It does not belong to any of this network's subnets")
    endpoint_id = secrets.token_hex(32)
    undo: list = []
    try:
        address = request_address(network, network.pool_id, ip or "", undo, plugin_dir)
        address6 = request_address(network, network.pool_id6, ip6 or "", undo, plugin_dir) if network.pool_id6 else ""
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
        call(network.driver, "NetworkDriver.ProgramExternalConnectivity", {
            "NetworkID": network.id, "EndpointID": endpoint_id, "Options": {}}, plugin_dir)
        endpoint = Endpoint(endpoint_id, network.id, container, address, mac, sandbox_pid, address6, tuple(aliases))
        ds.put(endpoint.key, endpoint.to_value())
        return endpoint
    except Exception:
        undo_all(undo)
        raise


def rename(ds: Synchronous, endpoint: Endpoint, container: str) -> Endpoint:
    """The endpoint under the container's new name (`docker rename`): stored again, so every
    host's embedded DNS server answers the new name and no longer the old one."""
    renamed = dataclasses.replace(endpoint, container=container)
    ds.put(renamed.key, renamed.to_value())
    return renamed


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
    releases = [(network.ipam_driver, "IpamDriver.ReleaseAddress",
                 {"PoolID": pool_id, "Address": address.split("/")[0]})
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


def main(argv: list[str] | None = None) -> None:
    """Drive the CNM flow by hand inside a host, without dockerd: networks, and bare sandboxes
    connected to them (run prints the endpoint as JSON)."""
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
                    print(json.dumps(connect(ds, network, args.name, sandbox.pid, args.ip).to_value()))
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
