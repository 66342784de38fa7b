"""Docker Hub's busybox as `make setup` builds it: the deb-src entries, the config (upstream's
defconfig, static), the binary's applets (no root needed)."""

import struct
import subprocess

import pytest

from calisim.docker.busybox import BUILD_DIR, applets, deb_src_entries, static_config
from calisim.docker.images import IMAGES_DIR

built = pytest.mark.skipif(not (BUILD_DIR / "busybox.links").exists(), reason="busybox not built (make setup)")

MADISON = """\
   busybox | 1:1.35.0-4+deb12u1+b1 | http://deb.debian.org/debian bookworm/main amd64 Packages
   busybox | 1:1.35.0-4+deb12u1 | http://deb.debian.org/debian bookworm/main Sources
   busybox | 1:1.35.0-4+b9 | http://security.debian.org/debian-security bookworm-security/main amd64 Packages
   busybox | 1:1.35.0-4+deb12u1+b1 | http://deb.debian.org/debian bookworm/main amd64 Packages
"""


def test_deb_src_entries_are_the_archives_busybox_comes_from_once_each():
    assert deb_src_entries(MADISON) == ["deb-src http://deb.debian.org/debian bookworm main",
                                        "deb-src http://security.debian.org/debian-security bookworm-security main"]
    assert deb_src_entries("N: Unable to locate package busybox\n") == []


def test_the_static_config_is_defconfig_with_one_line_changed():
    defconfig = "CONFIG_DESKTOP=y\n# CONFIG_STATIC is not set\nCONFIG_NC=y\n"
    assert static_config(defconfig) == "CONFIG_DESKTOP=y\nCONFIG_STATIC=y\nCONFIG_NC=y\n"
    with pytest.raises(SystemExit, match="no CONFIG_STATIC"):
        static_config("CONFIG_NC=y\n")
    assert applets("/bin/sh\n/usr/bin/[\n/sbin/ip\n") == ["[", "ip", "sh"]


def options(config: str) -> list[str]:
    return [line for line in config.splitlines() if line.startswith("CONFIG_") or line.endswith(" is not set")]


@built
def test_the_image_runs_upstream_defconfig_statically_with_every_applet_it_enables():
    defconfig, config = ((BUILD_DIR / name).read_text() for name in ("defconfig", "config"))
    changed = set(options(defconfig)) ^ set(options(config))
    assert changed == {"# CONFIG_STATIC is not set", "CONFIG_STATIC=y"}
    assert "CONFIG_NC_110_COMPAT=y" in options(defconfig)  # nc -u, as Docker Hub's image has it
    binary = IMAGES_DIR / "busybox" / "bin" / "busybox"
    listed = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert listed == applets((BUILD_DIR / "busybox.links").read_text())
    assert {"nc", "wget", "httpd", "nslookup", "ping6", "traceroute", "traceroute6", "tc"} <= set(listed)
    usage = subprocess.run([str(binary), "nc", "--help"], capture_output=True, text=True).stderr
    assert "\t-u\tUDP mode" in usage
    assert not has_interpreter(binary.read_bytes())  # static: no dynamic loader to find in a scratch image


def has_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF asks for a dynamic loader (a PT_INTERP program header)."""
    offset, size, count = struct.unpack_from("<Q", elf, 0x20)[0], *struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, offset + i * size)[0] == 3 for i in range(count))
