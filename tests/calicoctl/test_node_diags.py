"""calicoctl node diags and node checksystem inside emulated hosts, in calicoctl v1.0's words."""

import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

import topologies
from calisim.emulation import Cluster

pytestmark = pytest.mark.emulation


@pytest.fixture(scope="module")
def cluster():
    """One two-host cluster for the module, its run directory in a fresh /tmp/cs-* (pytest's own
    temporary directories are rotated away by other pytest sessions on the machine)."""
    base = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALISIM_RUNS", str(base / "runs"))
        with Cluster(topologies.load("flat", 2)) as running:
            running.start_nodes()
            running.wait_for_mesh(timeout=90)
            yield running
    shutil.rmtree(base)


def test_checksystem_passes_on_a_healthy_host(cluster):
    done = cluster.run("host2", "calicoctl node checksystem")
    assert done.rc == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Checking kernel version..." and lines[-1] == "System meets minimum system requirements to run Calico!"
    for check in ("nf_tables", "net.ipv4.ip_forward", "ipip: ", "bird "):
        assert re.search(rf"^\t\t{re.escape(check)}.*\tOK$", done.stdout, re.M), (check, done.stdout)


def test_checksystem_fails_without_forwarding_and_says_so(cluster):
    done = cluster.run("host2", "sysctl -qw net.ipv4.ip_forward=0; calicoctl node checksystem; rc=$?; "
                                "sysctl -qw net.ipv4.ip_forward=1; exit $rc")
    assert done.rc == 1 and re.search(r"^\t\tnet.ipv4.ip_forward\s+FAIL$", done.stdout, re.M), done.stdout
    assert done.stdout.rstrip().endswith("System doesn't meet one or more minimum systems requirements to run Calico")


def test_diags_archive_holds_the_logs_bird_state_rules_and_the_nodes_keys(cluster):
    home = cluster.host("host2").home
    done = cluster.run("host2", f"TMPDIR={home} calicoctl node diags")
    assert done.rc == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Collecting diagnostics\nUsing temp dir: ")
    archive = Path(re.search(r"^Diags saved to (\S+\.tar\.gz)$", done.stdout, re.M)[1])
    assert archive.parent.parent == home and f"curl --upload-file {archive} https://transfer.sh/" in done.stdout
    with tarfile.open(archive) as tar:
        files = {member.name: member for member in tar.getmembers()}

        def text(name):
            return tar.extractfile(files[f"diagnostics/{name}"]).read().decode()

        assert "Calico node started successfully" in text("logs/node.log")
        assert re.search(r"^Mesh_172_16_0_1\s+BGP\s+.*Established", text("bird_protocols"), re.M), text("bird_protocols")
        assert "table ip calico" in text("nftables") and "172.16.0.2" in text("ipv4_addr")
        assert '"key": "/calico/v1/host/host2/metadata"' in text("etcd_keys")
        assert "/calico/v1/host/host1/" not in text("etcd_keys")
        assert text("hostname").strip() == "host2"
