"""The Engine API: its pure helpers (`docker ps`'s filters and columns, a stream's frames; no root
needed), then the routes the docker CLI and the Docker SDK use, on one live cluster (emulation)."""

import pytest

import topologies
from calisim.docker.api import matches, parse_filters
from calisim.emulation import Cluster
from calisim.docker.containers import Container
from calisim.docker.daemon import human_duration
from calisim.docker.streams import frame
from calisim.docker.images import IMAGES

from tests.conftest import replay


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



# -- through the real docker CLI and the Docker SDK, on one cluster for the module --------------
SETUP = """
host1$ calicoctl node run
host2$ calicoctl node run
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name A -tid busybox
"""


@pytest.fixture(scope="module")
def cluster():  # emulation tests only (marked one by one: the helpers above need no root)
    with Cluster(topologies.load("two_host")) as live:
        replay(live, SETUP)
        yield live


INFO_AND_IMAGES = r"""
# docker info: the host's name, the engine version, the containers by state, the network plugins.
host1$ docker create --net net1 --name created busybox
host1$ docker info --format '{{.Name}} {{.ServerVersion}} {{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}}' | grep -x 'host1 1.13.1 2 1 1 2'
host1$ docker info --format '{{.Plugins.Network}} {{.Plugins.Volume}} {{.OSType}}' | grep -x '\[calico\] \[local\] linux'
host1$ docker info --format '{{.KernelVersion}} {{.NCPU}}' | grep -x "$(uname -r) $(nproc)"
host2$ docker info --format '{{.Name}} {{.Containers}}' | grep -x 'host2 0'
# Today's CLI no longer prints the cluster store: the SDK (or curl) reads it, as the seed's daemon.json sets it.
host1$ python -c "import docker; i = docker.from_env().info(); print(i['ClusterStore'], i['Swarm']['LocalNodeState'])" | grep -x 'etcd://192.168.3.229:2379 inactive'
host1$ docker version --format '{{.Server.Version}} {{.Server.GoVersion}} {{.Server.KernelVersion}}' | grep -x "1.13.1 go1.7.5 $(uname -r)"
host1$ docker rm created
# Images: the ones make setup built, listed, filtered, inspected, pulled from here.
host1$ docker images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ' | grep -x 'busybox:latest workload:latest '
host1$ docker image ls --filter reference='busy*' --format '{{.Repository}}' | grep -x busybox
host1$ docker images busybox --format '{{.Repository}}' | grep -x busybox
host1$ docker images --filter dangling=true -q | grep -c . | grep -x 0
host1$ docker image inspect -f '{{.Id}}' busybox | grep -x "$(docker inspect -f '{{.Image}}' A)"
host1$ docker image inspect -f '{{.Config.Cmd}} {{.Os}}' busybox | grep -x '\[sh\] linux'
host1$ docker pull busybox | tail -2 | tr '\n' ' ' | grep -x 'Status: Image is up to date for busybox:latest docker.io/library/busybox:latest '
host1$ python -c "import docker; print(docker.from_env().images.pull('busybox').tags)" | grep -x "\['busybox:latest'\]"
# Refused in Docker's words, with its exit codes; nothing changes.
host1$ docker pull nosuchimage 2>&1 | grep -x "Error response from daemon: pull access denied for nosuchimage, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"
host1! docker pull nosuchimage
host1$ docker image inspect nosuchimage 2>&1 | grep -x 'Error response from daemon: No such image: nosuchimage'
host1$ docker images --filter colour=red 2>&1 | grep -x "Error response from daemon: Invalid filter 'colour'"
host1$ docker images -q | grep -c . | grep -x 2
"""


@pytest.mark.emulation
def test_docker_info_version_and_images(cluster):
    replay(cluster, INFO_AND_IMAGES)
