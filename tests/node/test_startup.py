"""calico/node's startup against a real etcd: the default pools of each IP version (IPv6 only where
the kernel has IPv6), and the IPv6 address checks that run before anything is stored."""

import asyncio
import ipaddress
from pathlib import Path

import pytest

from calisim.datastore import Datastore
from calisim.datastore.resources import IPPool, Node
from calisim.node import startup

from tests.conftest import dump

pytestmark = pytest.mark.emulation
V4 = ipaddress.ip_interface("192.168.3.229/24")


def register(etcd, options: startup.NodeOptions) -> list[str]:
    async def run():
        ds = Datastore(etcd)
        try:
            return await startup.register(ds, options)
        finally:
            await ds.close()
    return asyncio.run(run())


def test_both_default_pools_where_the_kernel_has_ipv6(etcd, ds):
    said = register(etcd, startup.NodeOptions("host1", V4))
    assert "Created default IPv6 pool (fd80:24e2:f998:72d6::/64) with NAT outgoing false. IPIP mode: off" in said
    assert sorted(str(p.cidr) for p in ds.run(IPPool.load_all)) == ["192.168.0.0/16", "fd80:24e2:f998:72d6::/64"]
    ds.delete_prefix("/calico/v1/ipam/v4/pool/")
    said = register(etcd, startup.NodeOptions("host1", V4))  # a version without a pool gets its default again
    assert [line for line in said if line.startswith("Created")] == [
        "Created default IPv4 pool (192.168.0.0/16) with NAT outgoing false. IPIP mode: off"]


def test_no_ipv6_pool_without_kernel_ipv6(etcd, ds, monkeypatch, tmp_path):
    monkeypatch.setattr(startup, "KERNEL_IPV6", Path(tmp_path / "no-ipv6"))
    register(etcd, startup.NodeOptions("host1", V4))
    assert [str(p.cidr) for p in ds.run(IPPool.load_all)] == ["192.168.0.0/16"]


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
