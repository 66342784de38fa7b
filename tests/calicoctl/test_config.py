"""calicoctl config against a real etcd: set and get, and bad values that store nothing."""

import pytest

from calisim.datastore import keys

from tests.conftest import dump

pytestmark = pytest.mark.emulation


def test_config_set_and_get(ctl, ds):
    assert ctl("config", "get", "asNumber") == (0, "64512\n")
    assert ctl("config", "set", "asNumber", "4294.566") == (0, "")
    assert ds.get(keys.GLOBAL_AS).value == str(4294 * 65536 + 566)
    assert ctl("config", "set", "nodeToNodeMesh", "off") == (0, "")
    assert ctl("config", "get", "nodeToNodeMesh") == (0, "off\n")
    assert ds.get(keys.NODE_MESH).value == {"enabled": False}
    assert ctl("config", "set", "asNumber", "65001", "--node", "host1")[0] == 0
    assert ds.get(keys.bgp_host_as("host1")).value == "65001"
    before = dump(ds)
    for bad in (("asNumber", "0"), ("nodeToNodeMesh", "maybe"), ("logLevel", "loud"), ("colour", "blue")):
        code, output = ctl("config", "set", *bad)
        assert code == 1 and "Error executing command" in output
    assert dump(ds) == before

