"""calicoctl node run's own checks of its options (before anything starts), and node status
without a running node."""

import pytest

from calisim import calicoctl


@pytest.mark.parametrize("argv, message", [
    (["--ip", "fd00:3::229"], "Error executing command: --ip is wrong IP version"),
    (["--ip6", "192.168.3.229"], "Error executing command: --ip6 is wrong IP version"),
    (["--ip", "192.168.3.300"], "Error executing command: invalid IP address specified: 192.168.3.300"),
])
def test_an_address_of_the_wrong_version_is_refused_before_anything_starts(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("ETCD_ENDPOINTS", raising=False)  # refused before calicoctl even looks for etcd
    with pytest.raises(SystemExit) as exit:
        calicoctl.main(["node", "run", "--name", "host1", *argv])
    assert exit.value.code == 1
    assert capsys.readouterr().out == message + "\n"


@pytest.mark.emulation
def test_node_status_without_a_running_node(ctl):
    assert ctl("node", "status") == (1, "Calico process is not running.\n")
