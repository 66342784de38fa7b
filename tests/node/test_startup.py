"""calico/node's startup: its IPv6 environment (CALICO_IPV6POOL_CIDR, NO_DEFAULT_POOLS, FELIX_IPV6SUPPORT)
read as calico/node reads it (no root); then against a real etcd: the default pools of each IP version
(IPv6 only where the kernel has IPv6 and FELIX_IPV6SUPPORT is not false, at CALICO_IPV6POOL_CIDR), and
the IPv6 address checks and autodetection methods that run before anything is stored."""

import asyncio
import ipaddress
from pathlib import Path

import pytest

from calisim.datastore import Datastore
from calisim.datastore.resources import IPPool, Node
from calisim.node import autodetection, startup

from tests.conftest import dump

V4 = ipaddress.ip_interface("192.168.3.229/24")


@pytest.mark.parametrize("environ, message", [
    ({"CALICO_IPV6POOL_CIDR": "10.10.0.0/16"}, "Invalid CIDR specified in CALICO_IPV6POOL_CIDR '10.10.0.0/16'"),
    ({"CALICO_IPV6POOL_CIDR": "fd00:20::"}, "Invalid CIDR specified in CALICO_IPV6POOL_CIDR 'fd00:20::'"),
    ({"CALICO_IPV6POOL_CIDR": "fd00:20::/123"}, "Failed to create default IPv6 IP pool: error with field CIDR = "
     "'fd00:20::/123' (IP pool size is too small (min /122) for use with Calico IPAM)"),
    ({"CALICO_IPV6POOL_CIDR": "fd00:20::/64", "NO_DEFAULT_POOLS": "true"}, "Invalid configuration with "
     "NO_DEFAULT_POOLS defined and CALICO_IPV4POOL_CIDR or CALICO_IPV6POOL_CIDR defined."),
])
def test_a_bad_ipv6_pool_cidr_is_fatal_in_calico_nodes_words(environ, message):
    with pytest.raises(startup.StartupError) as refused:
        startup.ipv6_pool_from_env(environ)
    assert str(refused.value) == message


def test_the_ipv6_environment_as_calico_node_reads_it():
    assert startup.ipv6_pool_from_env({}) == startup.DEFAULT_IPV6_POOL
    assert startup.ipv6_pool_from_env({"CALICO_IPV6POOL_CIDR": "fd00:20::1/64"}) == ipaddress.ip_network("fd00:20::/64")
    assert [startup.env_bool({"FELIX_IPV6SUPPORT": word}, "FELIX_IPV6SUPPORT", True)
            for word in ("false", "0", "No", "f", "true", "yes")] == [False] * 4 + [True] * 2
    assert startup.env_bool({}, "FELIX_IPV6SUPPORT", True)
    assert [startup.no_default_pools({"NO_DEFAULT_POOLS": word}) for word in ("True", "1", "")] == [True, False, False]


def register(etcd, options: startup.NodeOptions) -> list[str]:
    async def run():
        ds = Datastore(etcd)
        try:
            return await startup.register(ds, options)
        finally:
            await ds.close()
    return asyncio.run(run())


@pytest.mark.emulation
def test_both_default_pools_where_the_kernel_has_ipv6(etcd, ds):
    said = register(etcd, startup.NodeOptions("host1", V4))
    assert "Created default IPv6 pool (fd80:24e2:f998:72d6::/64) with NAT outgoing false. IPIP mode: off" in said
    assert sorted(str(p.cidr) for p in ds.run(IPPool.load_all)) == ["192.168.0.0/16", "fd80:24e2:f998:72d6::/64"]
    ds.delete_prefix("/calico/v1/ipam/v4/pool/")
    said = register(etcd, startup.NodeOptions("host1", V4))  # a version without a pool gets its default again
    assert [line for line in said if line.startswith("Created")] == [
        "Created default IPv4 pool (192.168.0.0/16) with NAT outgoing false. IPIP mode: off"]


@pytest.mark.emulation
def test_no_ipv6_pool_without_kernel_ipv6(etcd, ds, monkeypatch, tmp_path):
    monkeypatch.setattr(startup, "KERNEL_IPV6", Path(tmp_path / "no-ipv6"))
    register(etcd, startup.NodeOptions("host1", V4))
    assert [str(p.cidr) for p in ds.run(IPPool.load_all)] == ["192.168.0.0/16"]


@pytest.mark.emulation
def test_an_ip6_not_on_the_host_stores_nothing_and_a_stored_one_is_kept(etcd, ds, monkeypatch):
    monkeypatch.setattr(startup, "host_addresses", lambda version: [ipaddress.ip_interface("fd00:3::229/64")])
    with pytest.raises(startup.StartupError, match="Unable to confirm IPv6 address fd00:3::99 is assigned to this host"):
        register(etcd, startup.NodeOptions("host1", V4, "fd00:3::99"))
    assert dump(ds) == {}
    assert "Autodetected IPv6 address fd00:3::229/64" in register(etcd, startup.NodeOptions("host1", V4, "autodetect"))
    register(etcd, startup.NodeOptions("host1", V4))  # no --ip6: the stored address stays
    (node,) = ds.run(Node.load_all)
    assert node.ipv6 == ipaddress.ip_interface("fd00:3::229/64")
    assert ds.get("/calico/bgp/v1/host/host1/ip_addr_v6").value == "fd00:3::229"
    assert ds.get("/calico/bgp/v1/host/host1/network_v6").value == "fd00:3::/64"
    with pytest.raises(startup.StartupError, match="Calico node 'host1' is already using the IPv6 address fd00:3::229"):
        register(etcd, startup.NodeOptions("host2", ipaddress.ip_interface("192.168.3.228/24"), "fd00:3::229"))


@pytest.mark.emulation
def test_the_default_ipv6_pool_follows_the_environment(etcd, ds):
    register(etcd, startup.NodeOptions("host1", V4, ipv6_pool=ipaddress.ip_network("fd00:20::/64")))
    assert sorted(str(p.cidr) for p in ds.run(IPPool.load_all)) == ["192.168.0.0/16", "fd00:20::/64"]
    ds.delete_prefix("/calico/v1/ipam/")
    said = register(etcd, startup.NodeOptions("host1", V4, ipv6_support=False))  # FELIX_IPV6SUPPORT=false
    assert [str(p.cidr) for p in ds.run(IPPool.load_all)] == ["192.168.0.0/16"]
    assert not any("IPv6 pool" in line for line in said)
    ds.delete_prefix("/calico/v1/ipam/")
    register(etcd, startup.NodeOptions("host1", V4, default_pools=False))  # NO_DEFAULT_POOLS=true
    assert ds.run(IPPool.load_all) == []


@pytest.mark.emulation
def test_ip6_autodetection_methods_pick_and_store_the_address_or_store_nothing(etcd, ds, monkeypatch):
    links = [("h1-eth0", ipaddress.ip_interface("fd00:3::229/64")), ("h1-eth1", ipaddress.ip_interface("fd00:4::229/64"))]
    monkeypatch.setattr(autodetection, "host_interfaces", lambda version: links)
    with pytest.raises(startup.StartupError, match="Couldn't autodetect a management IPv6 address: Unable to "
                                                   "auto-detect an IPv6 address using interface regexes"):
        register(etcd, startup.NodeOptions("host1", V4, "autodetect", ip6_autodetection_method="interface=wlan0"))
    assert dump(ds) == {}
    said = register(etcd, startup.NodeOptions("host1", V4, "autodetect", ip6_autodetection_method="interface=eth1"))
    assert "Using autodetected IPv6 address fd00:4::229/64 on matching interface h1-eth1" in said
    assert ds.get("/calico/bgp/v1/host/host1/ip_addr_v6").value == "fd00:4::229"
