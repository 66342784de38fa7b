"""The Engine API's pure helpers: `docker ps`'s filters and its columns, and a stream's frames
(no root needed)."""

from calisim.docker.api import matches, parse_filters
from calisim.docker.containers import Container
from calisim.docker.daemon import human_duration
from calisim.docker.streams import frame
from calisim.docker.images import IMAGES


def test_docker_ps_details():
    assert frame(2, b"err\n") == b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert [human_duration(s) for s in (0.2, 5, 90, 600, 4000, 10000)] == [
        "Less than a second", "5 seconds", "About a minute", "10 minutes", "About an hour", "2 hours"]
    container = Container("ab" * 32, "web-1", IMAGES["busybox"], "busybox", ["sh"], "net1", None,
                          {"Labels": {"tier": "front"}}, {})
    assert matches(container, parse_filters('{"name": {"web": true}, "status": {"created": true}}'))
    assert matches(container, parse_filters('{"label": ["tier=front"], "id": ["abab"]}'))
    assert not matches(container, parse_filters('{"label": {"tier=back": true}}'))
    assert not matches(container, parse_filters('{"status": {"running": true}}'))

