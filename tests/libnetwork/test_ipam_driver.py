"""The `calico-ipam` Docker plugin over its unix socket, against a real etcd: pools, addresses
requested and released, an exhausted pool (libnetwork-plugin v1.0's answers)."""

import pytest

from calisim.datastore.resources import IPPool

pytestmark = pytest.mark.emulation


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
