"""The `calico` Docker network plugin (and its fixed answers beside `calico-ipam`'s), over their
unix sockets, against a real etcd: every answer and error string of libnetwork-plugin v1.0."""

import pytest
from pyroute2 import IPRoute

from calisim.datastore.resources import IPPool
from calisim.libnetwork import endpoint_key

from tests.conftest import dump
from tests.libnetwork.conftest import ENDPOINT, NETWORK

pytestmark = pytest.mark.emulation


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


def test_create_network_checks_options_and_writes_nothing(plugins, ds):
    driver = plugins.driver
    before = dump(ds)
    calico_ipam = [{"AddressSpace": "CalicoGlobalAddressSpace", "Pool": "0.0.0.0/0", "Gateway": "0.0.0.0/0"}]
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "Options": {}, "IPv4Data": calico_ipam}) == (200, {})
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "IPv4Data": calico_ipam, "Options": {
        "com.docker.network.generic": {"mtu": "1400"}}}) == (500, {"Err": "Arbitrary options are not supported"})
    assert driver("NetworkDriver.CreateNetwork", {"NetworkID": NETWORK, "IPv4Data": calico_ipam, "Options": {
        "com.docker.network.generic": {}, "com.docker.network.internal": True}}) == (
        500, {"Err": "Calico driver does not support the --internal flag."})
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
