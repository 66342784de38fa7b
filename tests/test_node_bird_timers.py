"""The BGP settings an emulation may change ($CALISIM_BGP_HOLD_TIME, $CALISIM_BGP_GRACEFUL_RESTART):
unset, the configs are Calico's (no hold time: BIRD's 240 s; graceful restart on); set, every
node's and reflector's config carries them and `bird -p` accepts it; a value BGP does not allow
is refused (no root needed)."""

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


def test_calicos_settings_unless_the_emulation_changes_them(tmp_path, monkeypatch):
    for name in (bird.HOLD_TIME_ENV, bird.GRACEFUL_RESTART_ENV):
        monkeypatch.delenv(name, raising=False)
    for text in rendered(tmp_path):
        assert "hold time" not in text and "  graceful restart;\n" in text


def test_settings_travel_through_the_environment(monkeypatch):
    timers = bird.Timers(hold=9, graceful_restart=False)
    assert timers.environment() == {bird.HOLD_TIME_ENV: "9", bird.GRACEFUL_RESTART_ENV: "off"}
    assert bird.Timers().environment() == {}
    for name, value in timers.environment().items():
        monkeypatch.setenv(name, value)
    assert bird.Timers.from_environment() == timers


def test_graceful_restart_off_in_every_bgp_session(tmp_path, monkeypatch):
    monkeypatch.setenv(bird.GRACEFUL_RESTART_ENV, "off")
    node, reflector = rendered(tmp_path)
    assert node.count("graceful restart off;") == 1 and reflector.count("graceful restart off;") == 1
    assert "graceful restart;" in node  # the kernel protocol's (the node's own routes across its BIRD's restart)


def test_the_hold_time_reaches_every_bgp_session(tmp_path, monkeypatch):
    monkeypatch.setenv(bird.HOLD_TIME_ENV, "9")
    node, reflector = rendered(tmp_path)
    assert node.count("hold time 9;") == 1 and reflector.count("hold time 9;") == 1  # in the templates all inherit


@pytest.mark.parametrize("value", ["2", "0", "nine", "-9", "9.5"])
def test_a_hold_time_bgp_does_not_allow_is_refused(monkeypatch, value):
    monkeypatch.setenv(bird.HOLD_TIME_ENV, value)
    with pytest.raises(bird.BirdError, match="at least 3"):
        bird.bird_config(ENTRIES, "host1")
    with pytest.raises(bird.BirdError, match="at least 3"):
        bird.Timers(hold=int(value) if value.isdigit() else value)


def test_graceful_restart_is_on_or_off(monkeypatch):
    monkeypatch.setenv(bird.GRACEFUL_RESTART_ENV, "sometimes")
    with pytest.raises(bird.BirdError, match="must be on or off, not 'sometimes'"):
        bird.Timers.from_environment()
