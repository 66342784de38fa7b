"""Each host's dockerd forked by the run's node zygote: a process of its own in its host's network,
mount and UTS namespaces, with dockerd's command line and signal dispositions, answering the
docker CLI; stopped by its PID and forked again by `calisim fault`'s start."""

import os
import signal
from pathlib import Path

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.process import pids as process_ids

pytestmark = pytest.mark.emulation


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def namespaces(pid: int) -> dict[str, str]:
    return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in ("net", "mnt", "uts")}


def ignored_signals(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigIgn:"))
    return int(line.split()[1], 16)


def assert_forked_into_its_host(cluster: Cluster, name: str) -> int:
    pid = cluster.dockerds[name].pid
    assert parent(pid) == cluster.zygote.pid
    assert namespaces(pid) == namespaces(cluster.host(name).pid) != namespaces(os.getpid())
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"calisim.docker"]
    assert ignored_signals(pid) & (1 << (signal.SIGPIPE - 1))  # as `python -m` leaves it: a closed stream is no death
    assert cluster.run(name, "docker info -f '{{.Name}}'").stdout == f"{name}\n"
    return pid


def test_each_dockerd_is_forked_into_its_host_and_again_after_a_kill(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        started = {name: assert_forked_into_its_host(cluster, name) for name in cluster.hosts}
        assert len(set(started.values())) == 2
        cluster.faults.kill("host2", "dockerd")
        assert not process_ids.alive(started["host2"])
        assert cluster.run("host2", "docker ps").rc != 0
        cluster.faults.start("host2", "dockerd")
        assert assert_forked_into_its_host(cluster, "host2") != started["host2"]
