"""The images as `make setup` builds them (no root needed)."""

import os

import pytest

from calisim.docker.images import IMAGES, IMAGES_DIR, PATH, lookup

built = pytest.mark.skipif(not (IMAGES_DIR / "busybox" / "bin" / "busybox").exists(),
                           reason="images not built (make setup)")


def test_image_references_resolve_as_docker_names_them():
    assert lookup("busybox") is lookup("busybox:latest") is lookup("docker.io/library/busybox") is IMAGES["busybox"]
    assert lookup("workload").layers == ("workload", "busybox")
    assert lookup("busybox:1.36") is None and lookup("nosuchimage") is None
    busybox = IMAGES["busybox"]
    assert lookup(busybox.id) is lookup(busybox.id[7:19]) is busybox and lookup(busybox.id[7:9]) is None
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
