"""calicoctl node status without a running node."""

import pytest

pytestmark = pytest.mark.emulation


def test_node_status_without_a_running_node(ctl):
    assert ctl("node", "status") == (1, "Calico process is not running.\n")
