"""calicoctl node run's own checks of its addresses and IPv6 autodetection method (before anything starts), and node status
without a running node."""

import pytest

from calisim import calicoctl


@pytest.mark.parametrize("argv, message", [
    (["--ip", "fd00:3::229"], "Error executing command: --ip is wrong IP version"),
    (["--ip6", "192.168.3.229"], "Error executing command: --ip6 is wrong IP version"),
    (["--ip", "192.168.3.300"], "Error executing command: invalid IP address specified: 192.168.3.300"),
    (["--ip6", "autodetect", "--ip6-autodetection-method", "best-found"],
     "Error executing command: invalid IP autodetection method: best-found"),
    (["--ip6-autodetection-method", "can-reach=192.168.3.1"],
     "Error executing command: address for IP autodetection does not resolve to an IPv6 address: 192.168.3.1"),
])
def test_a_bad_address_or_autodetection_method_is_refused_before_anything_starts(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("ETCD_ENDPOINTS", raising=False)  # refused before calicoctl even looks for etcd
    with pytest.raises(SystemExit) as exit:
        calicoctl.main(["node", "run", "--name", "host1", *argv])
    assert exit.value.code == 1
    assert capsys.readouterr().out == message + "\n"


@pytest.mark.emulation
def test_node_status_without_a_running_node(ctl):
    assert ctl("node", "status") == (1, "Calico process is not running.\n")
