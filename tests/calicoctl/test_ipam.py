"""calicoctl ipam against a real etcd: show and release, IPv4 and IPv6."""

import pytest

from tests.calicoctl.conftest import SEED_POOL
from tests.conftest import dump

pytestmark = pytest.mark.emulation


def test_ipam_show_and_release(ctl, ds):
    from calisim.ipam import IPAM

    ctl("create", "-f", "-", stdin=SEED_POOL)
    ipam = ds.wrap(IPAM(ds.target))
    ipam.assign_ip("10.10.0.5", "host1")
    ipam.assign_ip("10.10.0.6", "host1", handle="wl", attrs={"container": "workload-A"})
    assert ctl("ipam", "show", "--ip", "10.10.0.5") == (0, "No attributes defined for IP 10.10.0.5\n")
    assert ctl("ipam", "show", "--ip", "10.10.0.6") == (0, "container: workload-A\n")
    assert ctl("ipam", "show", "--ip", "10.10.0.7") == (0, "IP 10.10.0.7 is not currently assigned in block\n")
    assert ctl("ipam", "release", "--ip", "10.10.0.5") == (0, "Successfully released IP address 10.10.0.5\n")
    assert ctl("ipam", "release", "--ip", "10.10.0.5") == (1, "IP address 10.10.0.5 is not assigned\n")
    before = dump(ds)
    assert ctl("ipam", "show", "--ip", "10.10.0") == (1, "Invalid IP address: '10.10.0'\n")
    assert ctl("ipam", "release", "--ip", "fe80::1") == (1, "IP address fe80::1 is not assigned\n")
    assert dump(ds) == before


def test_ipam_show_and_release_ipv6_addresses(ctl, ds):
    from calisim.datastore.keys import BLOCKS_V6
    from calisim.ipam import IPAM

    ctl("create", "-f", "-", stdin="- apiVersion: v1\n  kind: ipPool\n  metadata: {cidr: 'fd80:24e2:f998:72d6::/64'}\n")
    ipam = ds.wrap(IPAM(ds.target))
    (address,) = ipam.auto_assign("host1", 1, handle="wl", attrs={"container": "workload-A"}, version=6)
    assert [e.value["cidr"] for e in ds.list(BLOCKS_V6)] == [f"{address}/122"]  # the first of its /122
    assert ctl("ipam", "show", "--ip", str(address)) == (0, "container: workload-A\n")
    assert ctl("ipam", "release", "--ip", str(address)) == (0, f"Successfully released IP address {address}\n")
    assert ctl("ipam", "show", "--ip", str(address)) == (0, f"IP {address} is not currently assigned in block\n")

