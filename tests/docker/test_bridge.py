"""The default bridge's address choice and its guard (no root needed)."""

import os

from calisim.docker.bridge import GATEWAY, in_a_host, lowest_free


def test_the_lowest_free_address_is_taken_and_a_freed_one_reused():
    assert str(GATEWAY) == "172.17.0.1" and lowest_free(set()) == "172.17.0.2"
    assert lowest_free({"172.17.0.2", "172.17.0.3"}) == "172.17.0.4"
    assert lowest_free({"172.17.0.3"}) == "172.17.0.2"


def test_docker0_is_made_only_in_an_emulated_hosts_namespace(monkeypatch):
    here = str(os.stat("/proc/self/ns/net").st_ino)
    monkeypatch.delenv("CALISIM_SANDBOX", raising=False)
    assert not in_a_host()  # the machine's own namespace, or anyone's outside calisim
    monkeypatch.setenv("CALISIM_SANDBOX", here)
    assert not in_a_host()  # the sandbox's own namespace is no host
    monkeypatch.setenv("CALISIM_SANDBOX", "1")
    assert in_a_host()
