"""The BGP hold time an emulation may set ($CALISIM_BGP_HOLD_TIME): unset, no hold time is
rendered (Calico's templates, BIRD's 240 s); set, every node's and reflector's config carries
it and `bird -p` accepts it; a value BGP does not allow is refused (no root needed)."""

import pytest

from calisim.datastore import keys
from calisim.node import bird

ENTRIES = {keys.GLOBAL_AS: "64512", keys.bgp_host_ip_v4("host1"): "172.16.0.1",
           keys.bgp_host_ip_v4("host2"): "172.16.0.2",
           keys.GLOBAL_PEERS_V4 + "172.16.254.1": {"ip": "172.16.254.1", "as_num": "64512"},
           keys.ROUTE_REFLECTORS_V4 + "172.16.254.1": {"ip": "172.16.254.1", "cluster_id": "255.0.0.1"}}


def rendered(tmp_path) -> tuple[str, str]:
    node = bird.render(bird.bird_config(ENTRIES, "host1"))
    reflector = bird.render_reflector(bird.reflector_config(ENTRIES, "172.16.254.1"))
    for name, text in (("node.cfg", node), ("rr.cfg", reflector)):
        (tmp_path / name).write_text(text)
        bird.check(tmp_path / name)
    return node, reflector


def test_no_hold_time_unless_the_emulation_sets_one(tmp_path, monkeypatch):
    monkeypatch.delenv(bird.HOLD_TIME_ENV, raising=False)
    assert all("hold time" not in text for text in rendered(tmp_path))


def test_the_hold_time_reaches_every_bgp_session(tmp_path, monkeypatch):
    monkeypatch.setenv(bird.HOLD_TIME_ENV, "9")
    node, reflector = rendered(tmp_path)
    assert node.count("hold time 9;") == 1 and reflector.count("hold time 9;") == 1  # in the templates all inherit


@pytest.mark.parametrize("value", ["2", "0", "nine", "-9", "9.5"])
def test_a_hold_time_bgp_does_not_allow_is_refused(monkeypatch, value):
    monkeypatch.setenv(bird.HOLD_TIME_ENV, value)
    with pytest.raises(bird.BirdError, match="at least 3"):
        bird.bird_config(ENTRIES, "host1")
