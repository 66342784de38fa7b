"""The images as `make setup` builds them, and the daemon's pure helpers (no root needed)."""

import os
import resource
import socket

import pytest

from calisim.docker.daemon import Container, frame, human_duration, matches, parse_filters
from calisim.docker.runtime import readable
from calisim.docker.images import IMAGES, IMAGES_DIR, PATH, lookup

built = pytest.mark.skipif(not (IMAGES_DIR / "busybox" / "bin" / "busybox").exists(),
                           reason="images not built (make setup)")


def test_image_references_resolve_as_docker_names_them():
    assert lookup("busybox") is lookup("busybox:latest") is lookup("docker.io/library/busybox") is IMAGES["busybox"]
    assert lookup("workload").layers == ("workload", "busybox")
    assert lookup("busybox:1.36") is None and lookup("nosuchimage") is None
    assert IMAGES["busybox"].config() == {"Cmd": ["sh"], "Env": [f"PATH={PATH}"], "Entrypoint": None,
                                          "WorkingDir": "", "User": ""}


@built
def test_busybox_is_a_root_filesystem_with_a_link_per_applet():
    root = IMAGES_DIR / "busybox"
    binary = (root / "bin" / "busybox").stat()
    for applet in ("sh", "nc", "wget", "ping", "ip", "nslookup", "httpd", "telnet", "traceroute", "ps"):
        assert (root / "bin" / applet).stat().st_ino == binary.st_ino, applet
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh\n")
    assert "nobody:x:65534:65534:nobody:/home:/bin/false" in (root / "etc" / "passwd").read_text()
    assert oct((root / "tmp").stat().st_mode & 0o7777) == "0o1777" and oct((root / "root").stat().st_mode & 0o777) == "0o700"
    assert all((root / d).is_dir() for d in ("proc", "sys", "dev", "home")) and not os.listdir(root / "dev")
    assert os.access(IMAGES_DIR / "workload" / "code" / "tcpping.sh", os.X_OK)


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


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200, reason="needs 1200 open files")
def test_the_daemon_watches_descriptors_above_1023():
    """select(2) cannot (a dockerd with 500 containers has more than a thousand descriptors)."""
    ours, theirs = socket.socketpair()
    copies = [os.dup(ours.fileno()) for _ in range(1100)]
    try:
        high = copies[-1]
        assert high > 1023 and readable([high], 0) == []
        theirs.send(b"x")
        assert sorted(readable([copies[0], high], 1)) == [copies[0], high]
        ours.recv(1)
        theirs.close()
        assert readable([high], 1) == [high]  # ended: readable, as select says
    finally:
        for fd in copies:
            os.close(fd)
        ours.close()
