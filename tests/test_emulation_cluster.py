"""Emulated clusters end to end: the seed transcript through the CLI, a 10-host mesh through the
API, clean-up after errors and signals, and proof that the caller's namespace is untouched."""

import ipaddress
import json
import os
import re
import signal
import subprocess
from importlib import resources
from pathlib import Path

import pytest

import topologies
from calisim.scenarios import transcript
from calisim.emulation import Cluster, ClusterError, wait_until

from .conftest import PYTHON, replay, running_daemons

pytestmark = pytest.mark.emulation

SEED_TRANSCRIPT = resources.files("calisim.scenarios").joinpath("transcripts/two_host.txt")


def calisim(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "calisim", *args], capture_output=True, text=True, timeout=600, **kwargs)


def test_the_seed_end_to_end_through_the_cli(runs, untouched):
    done = calisim("two-host", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    results = document["steps"]
    assert len(results) == len(transcript.parse(SEED_TRANSCRIPT.read_text()))
    assert all(r["passed"] for r in results)
    assert set(results[0]) == {"host", "command", "expect", "rc", "stdout", "stderr", "passed", "seconds"}
    by_command = {r["command"]: r for r in results}
    status = by_command["calicoctl node status"]["stdout"]
    assert status.startswith("Calico process is running.\n\nIPv4 BGP status\n+---------------+")
    assert "| 192.168.3.228 | node-to-node mesh | up    |" in status
    assert by_command["calicoctl get node"]["stdout"] == "NAME            \n192.168.3.228   \n192.168.3.229   \n"
    assert by_command["calicoctl get ipPool"]["stdout"] == (  # as the seed shows it
        "CIDR                       \n192.168.0.0/16             \nfd80:24e2:f998:72d6::/64   \n")
    assert "\nIPv6 BGP status\nNo IPv6 peers found.\n" in status
    assert by_command["calicoctl get ipPool -o wide"]["stdout"] == (
        "CIDR                       NAT     IPIP    \n10.10.0.0/16               true    true    \n"
        "fd80:24e2:f998:72d6::/64   false   false   \n")
    assert "ttl=63" in by_command["docker exec workload-A ping -c 4 workload-C"]["stdout"]
    assert "ttl=62" in by_command["docker exec workload-A ping -c 4 workload-E"]["stdout"]
    addresses = dict(re.findall(r"^(workload-[A-E]): cali0:([0-9.]+)/32$", "".join(r["stdout"] for r in results), re.M))
    assert sorted(addresses) == ["workload-A", "workload-B", "workload-C", "workload-D", "workload-E"]
    blocks = {name: ipaddress.ip_network(f"{ip}/26", strict=False) for name, ip in addresses.items()}
    assert all(block.subnet_of(ipaddress.ip_network("10.10.0.0/16")) for block in blocks.values())
    assert blocks["workload-A"] == blocks["workload-B"] == blocks["workload-C"] != blocks["workload-D"] == blocks["workload-E"]
    run_dir = next(p for p in runs.iterdir() if p.name != "latest")
    for name in ("calisim.log", "transcript.json", "etcd/etcd.log", "hosts/host1/run/bird.cfg",
                 "hosts/host2/log/node.log", "hosts/host2/log/bird.log"):
        assert (run_dir / name).is_file(), name
    assert f"transcript: {len(results)} passed, 0 failed" in done.stderr
    summary = document["summary"]
    assert summary["mismatches"] == []
    measured = {(p["source"], p["destination"]): p["probe"] for p in summary["pairs"]}
    assert measured[("workload-A", "workload-C")]["ttl"] == 63 and measured[("workload-A", "workload-C")]["received"] == 4
    assert measured[("workload-A", "workload-E")]["ttl"] == 62 and measured[("workload-A", "workload-E")]["received"] == 4
    assert summary["addresses"] == addresses


def test_run_prints_the_steps_as_json(runs, untouched, tmp_path):
    script = tmp_path / "steps.txt"
    script.write_text("host2$ hostname\nhost1! false\n")
    done = calisim("run", str(script), "--topology", "two_host", "--json")
    assert done.returncode == 0, done.stderr
    assert [(r["host"], r["command"], r["expect"], r["rc"], r["stdout"], r["passed"]) for r in json.loads(done.stdout)] == [
        ("host2", "hostname", "success", 0, "host2\n", True), ("host1", "false", "failure", 1, "", True)]


def test_ten_host_flat_mesh_through_the_api(untouched, runs):
    with Cluster(topologies.load("flat", 10)) as cluster:
        assert cluster.run("host7", "hostname").stdout == "host7\n"
        # The underlay's ARP entries are pinned: the kernel's shared table cannot hold a big mesh.
        neighbours = cluster.run("host7", "ip neigh show nud permanent").stdout.splitlines()
        assert sorted(line.split()[0] for line in neighbours) == sorted(f"172.16.0.{i}" for i in range(1, 11) if i != 7)
        cluster.start_nodes()
        cluster.wait_for_mesh(timeout=60)
        established = sum(cluster.bgp_established(host) for host in cluster.hosts)
        assert established == 2 * 45  # each of the 45 sessions counted at both ends
        names = cluster.run("host3", "calicoctl get node").stdout.split()
        assert names == ["NAME"] + [f"host{i}" for i in sorted(range(1, 11), key=str)]
        with cluster.datastore() as ds:
            assert ds.get("/calico/bgp/v1/host/host10/ip_addr_v4").value == "172.16.0.10"


NODE_ERRORS = """
host1$ calicoctl node run
host2! calicoctl node run --ip 192.168.3.229/24
host2$ calicoctl node run --ip 192.168.3.229/24 2>&1 | grep -q "Calico node 'host1' is already using the IPv4 address 192.168.3.229"
host2! calicoctl node run --as 0
host2! calicoctl node status
host2$ calicoctl node status | grep -qx 'Calico process is not running.'
host1! calicoctl delete ipPool 10.99.0.0/16
host1$ echo '{"kind": "ipPool", "apiVersion": "v1", "metadata": {"cidr": "10.0.0.0/26"}, "spec": {}}' | calicoctl create -f -
host1! echo '[{"kind": "ipPool", "apiVersion": "v1", "metadata": {"cidr": "10.1.0.0/16"}}, {"kind": "node"}]' | calicoctl create -f -
host1$ calicoctl get ipPool | grep -c / | grep -x 3
host1$ calicoctl node run
host1$ test "$(hostname)" = host1 && test "$ETCD_ENDPOINTS" = http://192.168.3.229:2379
host1$ test -S /run/docker/plugins/calico.sock && test -S /run/docker/plugins/calico-ipam.sock
host1$ python -c "from calisim.libnetwork import call_plugin as c; assert c('/run/docker/plugins/calico-ipam.sock', 'Plugin.Activate') == (200, {'Implements': ['IpamDriver']})"
host2! test -e /run/docker/plugins/calico.sock
"""


def test_node_errors_and_rejected_input_through_the_api(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        results = replay(cluster, NODE_ERRORS, keep_going=True)
    assert all(r.passed for r in results)


def test_an_exception_inside_the_cluster_stops_everything(untouched, runs):
    with pytest.raises(RuntimeError, match="boom"):
        with Cluster(topologies.load("two_host")) as cluster:
            cluster.start_nodes()
            cluster.run("host2", "sleep 300 > /dev/null 2>&1 &")
            wait_until(lambda: cluster.bgp_established("host1") == 1, 20, what="the mesh")
            raise RuntimeError("boom")


def test_unknown_hosts_and_commands_on_a_stopped_cluster_are_errors(untouched, runs):
    cluster = Cluster(topologies.load("two_host"))
    with pytest.raises(ClusterError, match="not running"):
        cluster.run("host1", "true")
    with cluster:
        with pytest.raises(ClusterError, match="unknown host 'host3' \\(this topology has host1, host2\\)"):
            cluster.run("host3", "true")


@pytest.mark.parametrize("args, message", [
    (["run", "-", "--topology", "two_host"], "line 1: unknown host 'host9'"),
    (["run", "-", "--topology", "ring"], "unknown topology 'ring'"),
    (["run", "-", "--topology", "flat", "--hosts", "0"], "takes 1 to 1000 hosts"),
    (["run", "/nonexistent/steps.txt", "--topology", "two_host"], "No such file"),
])
def test_cli_rejects_bad_input_before_building_anything(runs, untouched, args, message):
    done = calisim(*args, input="host9$ true\n")
    assert done.returncode != 0 and message in done.stderr
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_and_everything_it_started(runs, untouched, tmp_path, signum):
    script = tmp_path / "steps.txt"
    script.write_text("host1$ calicoctl node run\nhost1$ sleep 300\n")
    process = subprocess.Popen([PYTHON, "-m", "calisim", "run", str(script), "--topology", "two_host"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_until(lambda: any("bird" in cmd for _, cmd in running_daemons()), 60, what="BIRD to start")
        # Ctrl-C reaches the whole foreground process group; SIGTERM is sent to the command alone.
        os.killpg(process.pid, signum) if signum == signal.SIGINT else process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum
    assert "stopped" in (Path(os.environ["CALISIM_RUNS"]) / "latest" / "calisim.log").read_text()


RESILIENCE = """
host1$ calicoctl node run
host2$ calicoctl node run
within 20s host1$ calicoctl node status | grep -q Established
# BIRD dies: calico-node starts it again and the session comes back.
host1$ kill -9 "$(cat /var/run/calico/bird.pid)"
within 30s host1$ calicoctl node status | grep -q Established
host1$ test "$(grep -c 'BIRD exited' /var/log/calico/node.log)" -ge 1
"""


def test_nodes_live_through_a_bird_crash_and_an_etcd_restart(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, RESILIENCE)
        cluster.restart_etcd()
        # The agents' watches died with etcd; a change made now must still reach both BIRDs.
        added = cluster.run("host1", "echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.77.0.0/16}}' | calicoctl create -f -")
        assert added.rc == 0, added.stdout + added.stderr
        for host in cluster.hosts:
            wait_until(lambda: "10.77.0.0/16" in (cluster.host(host).state_dir / "run" / "bird.cfg").read_text(), 30,
                       what=f"{host}'s BIRD config to follow etcd after its restart")
        assert all(cluster.bgp_established(host) == 1 for host in cluster.hosts)
        for host in cluster.hosts:  # the change came through a re-established watch, not a lucky one
            assert "etcd watch lost" in (cluster.host(host).state_dir / "log" / "node.log").read_text()
