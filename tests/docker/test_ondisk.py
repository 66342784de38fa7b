"""Containers on disk and across a dockerd restart: config.v2.json written and read back, a
running container adopted by a dockerd with live-restore (inspect, exec, logs, its Calico
endpoint, stop, rm), and without it stopped and then started again as its restart policy says."""

import json

import pytest

import topologies
from calisim.docker.containers import Attachment, Container
from calisim.docker.images import lookup
from calisim.docker.ondisk import append_log, forget, load, read_log, save
from calisim.emulation import Cluster
from calisim.datastore.resources.docker import Endpoint

from tests.conftest import replay


def test_a_saved_container_reads_back_as_it_was(tmp_path):
    endpoint = Endpoint("e" * 64, "n" * 64, "w1", "10.10.0.5/32", "ee:ee:ee:ee:ee:ee", 42, aliases=("db",))
    container = Container("c" * 64, "w1", lookup("busybox"), "busybox", ["sh"],
                          [Attachment("net1", "10.10.0.5", None, ("db",))], {"Image": "busybox", "Tty": True},
                          {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}, created=1700000000.25,
                          status="exited", exit_code=3, started_at=1700000001.5, finished_at=1700000002.75,
                          exits=1, restart_count=2, manually_stopped=True, endpoints=[endpoint])
    save(container, tmp_path)
    written = json.loads((tmp_path / container.id / "config.v2.json").read_text())
    assert (written["Name"], written["State"]["ExitCode"], written["HasBeenManuallyStopped"]) == ("/w1", 3, True)
    assert json.loads((tmp_path / container.id / "hostconfig.json").read_text()) == container.host_config
    back = load(tmp_path / container.id, tmp_path / "state")
    for name in ("id", "name", "reference", "cmd", "attachments", "config", "host_config", "created", "status",
                 "exit_code", "started_at", "finished_at", "exits", "restart_count", "manually_stopped", "endpoints"):
        assert getattr(back, name) == getattr(container, name), name
    forget(container, tmp_path)
    assert not (tmp_path / container.id).exists()


def test_the_json_file_log_reads_back_line_by_line(tmp_path):
    path = tmp_path / "c-json.log"
    entries = [(1700000000.5, 1, b"one\n"), (1700000001.25, 2, b"two \xff\n"), (1700000002.0, 1, b"no newline")]
    append_log(path, entries[:2])
    append_log(path, entries[2:])
    assert json.loads(path.read_text().splitlines()[1]) == {"log": "two \ufffd\n", "stream": "stderr",
                                                           "time": "2023-11-14T22:13:21.250000000Z"}
    assert read_log(path) == [entries[0], (1700000001.25, 2, "two \ufffd\n".encode()), entries[2]]
    assert read_log(tmp_path / "none") == []


FETCH = "python -c \"import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())\""
SETUP = """
host1$ calicoctl node run
host2$ calicoctl node run
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ echo '{"live-restore": true}' > /etc/docker/daemon.json
"""


@pytest.fixture(scope="module")
def cluster():
    with Cluster(topologies.load("two_host")) as live:
        replay(live, SETUP)
        live.faults.kill("host1", "dockerd")  # host1's dockerd reads its daemon.json again
        live.faults.start("host1", "dockerd")
        yield live


def restart_dockerd(cluster, host: str) -> None:
    cluster.faults.kill(host, "dockerd")
    cluster.faults.start(host, "dockerd")


@pytest.mark.emulation
def test_live_restore_adopts_running_containers_across_a_dockerd_kill(cluster):
    replay(cluster, r"""
host1$ docker run --net net1 --name A -tid busybox
host1$ docker run -d --name L busybox sh -c 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done'
host1$ docker run --net net1 --name W -d workload
host1$ docker network create ubr
host1$ docker run --net ubr -p 8080:80 --name P -d busybox httpd -f -p 80 -h /etc
host1$ docker run --net ubr --name Q -d busybox sleep 600
host2$ docker run --net net1 --name B -tid busybox
host1$ test -s "/var/lib/docker/containers/$(docker inspect -f '{{.Id}}' A)/config.v2.json"
host1$ docker inspect -f '{{.State.Pid}} {{.NetworkSettings.Networks.net1.IPAddress}}' A > A-before
within 60s host2$ docker exec B ping -c 1 -W 1 A
""")
    cluster.faults.kill("host1", "dockerd")
    replay(cluster, r"""
within 10s host2$ docker exec B ping -c 1 -W 1 A
""")
    cluster.faults.start("host1", "dockerd")
    results = replay(cluster, r"""
host1$ docker inspect -f '{{.State.Status}} {{.State.Pid}} {{.NetworkSettings.Networks.net1.IPAddress}}' A | grep -x "running $(cat A-before)"
host1$ docker exec A hostname | grep -x "$(docker inspect -f '{{.Id}}' A | cut -c1-12)"
host1$ grep -q '"ServicePid": [1-9]' "/var/lib/docker/containers/$(docker inspect -f '{{.Id}}' W)/config.v2.json"
host1$ docker network inspect net1 -f '{{range .Containers}}{{.Name}} {{end}}' | grep -xE 'A W |W A '
within 5s host1$ docker logs --since 1s L | grep -q tick
host1$ docker logs L | head -1 | grep -x 'tick 0'
host1$ grep -c '"stream":"stdout"' "/var/lib/docker/containers/$(docker inspect -f '{{.Id}}' L)/$(docker inspect -f '{{.Id}}' L)-json.log"
host2$ docker exec B ping -c 1 -W 2 A
host1$ docker exec A ping -c 1 -W 2 B
within 10s host2$ docker exec B sh -c 'echo hi | nc -w 1 W 80' | grep -x hi
host1$ docker port P | grep -x '80/tcp -> 0.0.0.0:8080'
within 10s host2$ FETCH http://192.168.3.229:8080/hostname | grep -Ex '[0-9a-f]{12}'
host1$ docker exec Q ping -c 1 -W 1 P
host1$ docker stop -t 1 A && docker rm A L W P Q -f && docker network rm ubr
host1$ ip -o link | grep -c cali | grep -x 0
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix --keys-only /calico/v1/host/host1/workload/ | grep -c endpoint | grep -x 0
host1$ rm A-before
host2$ docker rm -f B
""".replace("FETCH", FETCH), keep_going=True)
    assert all(r.passed for r in results), [r for r in results if not r.passed]


@pytest.mark.emulation
def test_without_live_restore_containers_stop_and_their_restart_policy_applies(cluster):
    replay(cluster, r"""
host2$ docker run --net net1 --name R --restart always --stop-timeout 1 -tid busybox
host2$ docker run -d --name N --stop-timeout 1 busybox sleep 600
host2$ docker run -d --name U --restart unless-stopped --stop-timeout 1 busybox sleep 600
host2$ docker run --net net1 --name S --stop-timeout 1 -d workload
host2$ docker stop U
host2$ docker inspect -f '{{.State.Pid}}' R > R-before
""")
    restart_dockerd(cluster, "host2")
    results = replay(cluster, r"""
host2$ docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' N | grep -x 'exited 137'
host2$ docker inspect -f '{{.State.Status}}' U | grep -x exited
host2$ docker inspect -f '{{.State.Status}}' S | grep -x exited
within 10s host2$ ip -o link | grep -c cali | grep -x 1
within 10s host2$ docker inspect -f '{{.State.Status}}' R | grep -x running
host2$ test "$(docker inspect -f '{{.State.Pid}}' R)" != "$(cat R-before)"
host2! kill -0 "$(cat R-before)"
host2$ docker exec R ip -4 -o addr show cali0 | grep -q 'inet 192\.168\.'
host2$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix --keys-only /calico/v1/host/host2/workload/ | grep -c endpoint | grep -x 1
host2$ docker rm -f R N U S && rm R-before
""", keep_going=True)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
