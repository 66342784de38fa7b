"""The `calico` and `calico-ipam` Docker plugins, over their unix sockets, against a real etcd:
every answer and error string of calico-v1.md section 2."""

import asyncio
import json
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from calisim.datastore import Datastore
from calisim.datastore import keys
from calisim.datastore.resources.docker import Network
from calisim.libnetwork import CONTENT_TYPE, IpamDriver, NetworkDriver, PluginServer, call_plugin, endpoint_key
from calisim.libnetwork.protocol import _UnixConnection
from calisim.datastore.resources import IPPool

from .conftest import dump

pytestmark = pytest.mark.emulation
ENDPOINT = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2"
NETWORK = "9f8e7d6c5b4a"
POOL = IPPool(__import__("ipaddress").ip_network("10.10.0.0/16"), ipip=True, nat_outgoing=True)


@dataclass
class Plugins:
    driver_socket: Path
    ipam_socket: Path

    def driver(self, method: str, request: dict | None = None) -> tuple[int, dict]:
        return call_plugin(self.driver_socket, method, request)

    def ipam(self, method: str, request: dict | None = None) -> tuple[int, dict]:
        return call_plugin(self.ipam_socket, method, request)


@pytest.fixture
def plugins(etcd, ds):
    """Both plugins served as the node agent serves them: HTTP threads, handlers on an event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    directory = Path(tempfile.mkdtemp(prefix="cs-plugins-", dir="/tmp"))
    client = Datastore(etcd)
    servers = [PluginServer(directory / "calico.sock", NetworkDriver(client, "host1"), loop),
               PluginServer(directory / "calico-ipam.sock", IpamDriver(client, "host1"), loop)]
    for server in servers:
        server.start()
    ds.put(POOL.primary_key, POOL.to_value())
    ds.put(keys.docker_network(NETWORK), Network(NETWORK, "net1", "calico", "calico-ipam", "CalicoPoolIPv4", "0.0.0.0/0",
                                                 "0.0.0.0/0").to_value())
    try:
        yield Plugins(servers[0].path, servers[1].path)
    finally:
        for server in servers:
            server.stop()
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        shutil.rmtree(directory)


def test_handshakes_and_fixed_answers(plugins):
    driver, ipam = plugins.driver, plugins.ipam
    assert driver("Plugin.Activate") == (200, {"Implements": ["NetworkDriver"]})
    assert ipam("Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})
    assert driver("NetworkDriver.GetCapabilities") == (200, {"Scope": "global"})
    assert driver("NetworkDriver.EndpointOperInfo", {"NetworkID": NETWORK, "EndpointID": ENDPOINT}) == (200, {"Value": {}})
    for method in ("DeleteNetwork", "DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity",
                   "RevokeExternalConnectivity"):
        assert driver(f"NetworkDriver.{method}", {"NetworkID": NETWORK}) == (200, {})
    assert ipam("IpamDriver.GetCapabilities") == (200, {})
    assert ipam("IpamDriver.GetDefaultAddressSpaces") == (200, {
        "LocalDefaultAddressSpace": "CalicoLocalAddressSpace", "GlobalDefaultAddressSpace": "CalicoGlobalAddressSpace"})
    assert ipam("IpamDriver.ReleasePool", {"PoolID": "CalicoPoolIPv4"}) == (200, {})


def raw_post(path: Path, url: str, body: bytes) -> tuple[int, str, dict]:
    connection = _UnixConnection(path, 10)
    try:
        connection.request("POST", url, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        connection.close()


def test_content_type_unknown_urls_and_broken_requests(plugins):
    driver = plugins.driver
    socket_path = plugins.driver_socket
    assert raw_post(socket_path, "/Plugin.Activate", b"")[:2] == (200, CONTENT_TYPE)
    assert raw_post(socket_path, "/NetworkDriver.Bogus", b"{}")[0] == 404
    status, _, answer = raw_post(socket_path, "/NetworkDriver.CreateEndpoint", b"{not json")
    assert status == 500 and answer["Err"].startswith("Invalid JSON in request")
    assert raw_post(socket_path, "/NetworkDriver.CreateEndpoint", b"[1, 2]")[2] == {
        "Err": "The request body must be a JSON object"}
    assert driver("NetworkDriver.CreateEndpoint", {"NetworkID": NETWORK}) == (
        500, {"Err": "Missing or invalid EndpointID in request"})
    assert driver("Plugin.Activate") == (200, {"Implements": ["NetworkDriver"]})  # still serving


def test_request_pool(plugins):
    ipam = plugins.ipam
    assert ipam("IpamDriver.RequestPool", {"AddressSpace": "CalicoGlobalAddressSpace", "Pool": "", "V6": False}) == (
        200, {"PoolID": "CalicoPoolIPv4", "Pool": "0.0.0.0/0", "Data": {"com.docker.network.gateway": "0.0.0.0/0"}})
    assert ipam("IpamDriver.RequestPool", {"Pool": "10.10.0.0/16"}) == (
        200, {"PoolID": "10.10.0.0/16", "Pool": "10.10.0.0/16", "Data": {"com.docker.network.gateway": "0.0.0.0/0"}})
    assert ipam("IpamDriver.RequestPool", {"Pool": "10.10.0.0/24"}) == (
        500, {"Err": "The requested subnet must match the CIDR of a configured Calico IP Pool."})
    assert ipam("IpamDriver.RequestPool", {"Pool": "10.10.0.0/16", "SubPool": "10.10.1.0/24"}) == (500, {"Err": (
        "Calico IPAM does not support sub pool configuration on 'docker create network'. Calico IP Pools "
        "should be configured first and IP assignment is from those pre-configured pools.")})
    assert ipam("IpamDriver.RequestPool", {"V6": True}) == (  # libnetwork-plugin v1.1.1
        200, {"PoolID": "CalicoPoolIPv6", "Pool": "::/0", "Data": {"com.docker.network.gateway": "::/0"}})
    assert ipam("IpamDriver.RequestPool", {"V6": True, "Pool": "fd00:99::/64"}) == (
        500, {"Err": "The requested subnet must match the CIDR of a configured Calico IP Pool."})


def test_request_and_release_address(plugins, ds):
    ipam = plugins.ipam
    status, answer = ipam("IpamDriver.RequestAddress", {"PoolID": "CalicoPoolIPv4", "Address": ""})
    assert status == 200 and answer["Data"] == {} and answer["Address"].endswith("/32")
    first = answer["Address"][:-3]
    assert ipam("IpamDriver.RequestAddress", {"PoolID": "10.10.0.0/16"})[1]["Address"] != answer["Address"]
    assert ipam("IpamDriver.RequestAddress", {"PoolID": "CalicoPoolIPv4", "Address": "10.10.200.7"}) == (
        200, {"Address": "10.10.200.7/32", "Data": {}})
    assert ipam("IpamDriver.RequestAddress", {"Address": "10.10.200.7"}) == (500, {"Err": "Address already assigned in block"})
    assert ipam("IpamDriver.RequestAddress", {"Address": "10.99.0.1"}) == (
        500, {"Err": "The provided IP address is not in a configured pool"})
    assert ipam("IpamDriver.RequestAddress", {"PoolID": "10.20.0.0/16"}) == (500, {"Err": (
        "The network references a Calico pool which has been deleted. "
        "Please re-instate the Calico pool before using the network.")})
    assert ipam("IpamDriver.ReleaseAddress", {"PoolID": "CalicoPoolIPv4", "Address": first}) == (200, {})
    assert ipam("IpamDriver.ReleaseAddress", {"PoolID": "CalicoPoolIPv4", "Address": first}) == (200, {})


def test_an_exhausted_pool_gets_calicos_message(plugins, ds):
    ipam = plugins.ipam
    small = IPPool(__import__("ipaddress").ip_network("10.30.0.0/26"))
    ds.put(small.primary_key, small.to_value())
    for _ in range(64):
        assert ipam("IpamDriver.RequestAddress", {"PoolID": "10.30.0.0/26"})[0] == 200
    assert ipam("IpamDriver.RequestAddress", {"PoolID": "10.30.0.0/26"}) == (500, {"Err": (
        "Unexpected number of assigned IP addresses. A single address should be assigned. Got []")})


def test_create_network_checks_options_and_writes_nothing(plugins, ds):
    driver = plugins.driver
    before = dump(ds)
    calico_ipam = [{"AddressSpace": "CalicoGlobalAddressSpace", "Pool": "0.0.0.0/0", "Gateway": "0.0.0.0/0"}]
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "Options": {}, "IPv4Data": calico_ipam}) == (200, {})
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "IPv4Data": calico_ipam, "Options": {
        "com.docker.network.generic": {"mtu": "1400"}}}) == (500, {"Err": "Arbitrary options are not supported"})
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "IPv4Data": [
        {"Pool": "172.18.0.0/16", "Gateway": "172.18.0.1/16"}]}) == (500, {"Err": "Non-Calico IPAM driver is used"})
    assert dump(ds) == before


def test_endpoint_join_leave_delete(plugins, ds):
    driver = plugins.driver
    assert driver("NetworkDriver.CreateEndpoint", {"NetworkID": NETWORK, "EndpointID": ENDPOINT, "Interface": {}}) == (
        500, {"Err": "No address assigned for endpoint"})
    assert driver("NetworkDriver.CreateEndpoint", {"NetworkID": NETWORK, "EndpointID": ENDPOINT, "Options": {},
                                                   "Interface": {"Address": "10.10.86.192/32", "MacAddress": ""}}) == (
        200, {"Interface": {"MacAddress": "EE:EE:EE:EE:EE:EE"}})
    assert ds.get(endpoint_key("host1", ENDPOINT)).value == {
        "state": "active", "name": "calia1b2c3d4e5f", "mac": "ee:ee:ee:ee:ee:ee", "profile_ids": ["net1"],
        "ipv4_nets": ["10.10.86.192/32"], "ipv6_nets": []}
    assert endpoint_key("host1", ENDPOINT) == f"/calico/v1/host/host1/workload/libnetwork/libnetwork/endpoint/{ENDPOINT}"
    assert ds.get("/calico/v1/policy/profile/net1/tags").value == ["net1"]
    assert ds.get("/calico/v1/policy/profile/net1/labels").value == {}
    assert ds.get("/calico/v1/policy/profile/net1/rules").value == {
        "inbound_rules": [{"action": "allow", "src_tag": "net1"}], "outbound_rules": [{"action": "allow"}]}

    assert driver("NetworkDriver.Join", {"NetworkID": NETWORK, "EndpointID": ENDPOINT, "SandboxKey": "/x",
                                         "Options": {}}) == (200, {
        "InterfaceName": {"SrcName": "tempa1b2c3d4e5f", "DstPrefix": "cali"}, "Gateway": "169.254.1.1",
        "StaticRoutes": [{"Destination": "169.254.1.1/32", "RouteType": 1, "NextHop": ""}]})
    with IPRoute() as ipr:
        (host_side,) = ipr.get_links(ifname="calia1b2c3d4e5f")
        (container_side,) = ipr.get_links(ifname="tempa1b2c3d4e5f")
        assert host_side.get_attr("IFLA_OPERSTATE") in ("UP", "LOWERLAYERDOWN", "DOWN") and host_side["flags"] & 1
        assert container_side.get_attr("IFLA_ADDRESS") == "ee:ee:ee:ee:ee:ee"
    assert driver("NetworkDriver.Leave", {"NetworkID": NETWORK, "EndpointID": ENDPOINT}) == (200, {})
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname="calia1b2c3d4e5f") and not ipr.link_lookup(ifname="tempa1b2c3d4e5f")
    assert driver("NetworkDriver.DeleteEndpoint", {"NetworkID": NETWORK, "EndpointID": ENDPOINT}) == (200, {})
    assert ds.get(endpoint_key("host1", ENDPOINT)) is None
    assert ds.get("/calico/v1/policy/profile/net1/tags") is not None  # profiles outlive their endpoints


def test_endpoint_of_an_unknown_network_is_refused(plugins, ds):
    driver = plugins.driver
    before = dump(ds)
    status, answer = driver("NetworkDriver.CreateEndpoint", {"NetworkID": "nope", "EndpointID": ENDPOINT,
                                                             "Interface": {"Address": "10.10.0.1/32"}})
    assert status == 500 and "not known" in answer["Err"]
    assert dump(ds) == before


def test_ipv6_addresses_endpoints_and_join_as_libnetwork_plugin_v1_1_1(plugins, ds):
    import ipaddress

    pool6 = IPPool(ipaddress.ip_network("fd80:24e2:f998:72d6::/64"))
    ds.put(pool6.primary_key, pool6.to_value())
    driver, ipam = plugins.driver, plugins.ipam
    status, answer = ipam("IpamDriver.RequestAddress", {"PoolID": "CalicoPoolIPv6", "Address": ""})
    assert status == 200 and answer["Address"].endswith("/128")
    address6 = answer["Address"]
    assert ipaddress.ip_interface(address6).ip in pool6.cidr
    assert ipam("IpamDriver.RequestPool", {"V6": True, "Pool": "fd80:24e2:f998:72d6::/64"})[1]["PoolID"] == \
        "fd80:24e2:f998:72d6::/64"
    v6_data = [{"AddressSpace": "CalicoGlobalAddressSpace", "Pool": "::/0", "Gateway": "::/0"}]
    v4_data = [{"AddressSpace": "CalicoGlobalAddressSpace", "Pool": "0.0.0.0/0", "Gateway": "0.0.0.0/0"}]
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "IPv4Data": v4_data, "IPv6Data": v6_data,
                                                  "Options": {"com.docker.network.enable_ipv6": True}}) == (200, {})
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "IPv4Data": v4_data, "IPv6Data": [
        {"AddressSpace": "LocalDefault", "Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]}) == (
        500, {"Err": "Non-Calico IPAM driver is used"})
    assert driver("NetworkDriver.CreateEndpoint", {"NetworkID": NETWORK, "EndpointID": ENDPOINT, "Options": {},
                                                   "Interface": {"Address": "10.10.86.192/32", "AddressIPv6": address6}})[0] == 200
    assert ds.get(endpoint_key("host1", ENDPOINT)).value["ipv6_nets"] == [address6]
    status, joined = driver("NetworkDriver.Join", {"NetworkID": NETWORK, "EndpointID": ENDPOINT, "SandboxKey": "/x",
                                                   "Options": {}})
    try:
        assert status == 200 and ipaddress.ip_address(joined["GatewayIPv6"]).is_link_local, joined
        with IPRoute() as ipr:
            (index,) = ipr.link_lookup(ifname="calia1b2c3d4e5f")
            host_addresses = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=10, index=index)]
        assert joined["GatewayIPv6"] in host_addresses  # the host side's own fe80:: address
        assert joined["StaticRoutes"][1] == {"Destination": f"{joined['GatewayIPv6']}/128", "RouteType": 1, "NextHop": ""}
    finally:
        assert driver("NetworkDriver.Leave", {"NetworkID": NETWORK, "EndpointID": ENDPOINT}) == (200, {})
