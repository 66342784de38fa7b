"""What the emulated dockerd says of itself and its images, in Docker 1.13's fields and texts (no
root needed)."""

import re

import pytest

from calisim.docker.containers import Attachment, Container
from calisim.docker.errors import APIError
from calisim.docker.images import IMAGES
from calisim.docker.system import (NOT_A_MANAGER, cluster_store, engine_id, image_list, info, pull, swarm,
                                   version)

INFO_KEYS = """ID Containers ContainersRunning ContainersPaused ContainersStopped Images Driver DriverStatus SystemStatus
Plugins MemoryLimit SwapLimit KernelMemory CpuCfsPeriod CpuCfsQuota CPUShares CPUSet IPv4Forwarding BridgeNfIptables
BridgeNfIp6tables Debug NFd OomKillDisable NGoroutines SystemTime LoggingDriver CgroupDriver NEventsListener
KernelVersion OperatingSystem OSType Architecture IndexServerAddress RegistryConfig NCPU MemTotal DockerRootDir
HttpProxy HttpsProxy NoProxy Name Labels ExperimentalBuild ServerVersion ClusterStore ClusterAdvertise Runtimes
DefaultRuntime Swarm LiveRestoreEnabled Isolation InitBinary ContainerdCommit RuncCommit InitCommit
SecurityOptions""".split()


def container(name: str, status: str) -> Container:
    made = Container(name * 32, name, IMAGES["busybox"], "busybox", ["sh"], [Attachment("net1")], {}, {})
    made.status = status
    return made


def test_info_has_docker_1_13s_keys_and_counts_containers_by_state(tmp_path):
    found = info([container("a", "running"), container("b", "exited"), container("c", "created")], {"calico"},
                 tmp_path, "http://192.168.3.229:2379")
    assert sorted(found) == sorted(INFO_KEYS)
    assert (found["Containers"], found["ContainersRunning"], found["ContainersPaused"],
            found["ContainersStopped"]) == (3, 1, 0, 2)
    assert found["ClusterStore"] == "etcd://192.168.3.229:2379" and found["ClusterAdvertise"] == ""
    assert found["Plugins"]["Network"] == ["calico"] and found["Plugins"]["Volume"] == ["local"]
    assert (found["ServerVersion"], found["Images"], found["DockerRootDir"]) == ("1.13.1", 2, str(tmp_path))
    assert found["Swarm"]["LocalNodeState"] == "inactive" and found["MemTotal"] > 0 and found["NCPU"] >= 1
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", found["ID"]) and engine_id("host1") != engine_id("host2")


def test_version_and_the_cluster_store_as_daemon_json_writes_it():
    assert {"Version", "ApiVersion", "MinAPIVersion", "GitCommit", "GoVersion", "Os", "Arch",
            "KernelVersion"} <= set(version("1.50"))
    assert version("1.50")["GoVersion"] == "go1.7.5" and version("1.50")["ApiVersion"] == "1.50"
    assert cluster_store("http://10.0.0.1:2379,http://10.0.0.2:2379") == "etcd://10.0.0.1:2379"


def test_image_filters_reference_dangling_before_and_since():
    names = lambda filters: sorted(i["RepoTags"][0] for i in image_list(filters))  # noqa: E731
    assert names({}) == ["busybox:latest", "workload:latest"]
    assert names({"reference": ["busy*"]}) == names({"reference": ["busybox:latest"]}) == ["busybox:latest"]
    assert names({"reference": ["nosuch"]}) == [] and names({"dangling": ["true"]}) == []
    assert names({"dangling": ["false"]}) == ["busybox:latest", "workload:latest"]
    assert names({"label": ["maintainer"]}) == []
    summary = image_list({"reference": ["workload"]})[0]
    assert summary["Id"] == IMAGES["workload"].id and summary["Id"].startswith("sha256:")
    assert {"ParentId", "RepoDigests", "Created", "Size", "VirtualSize", "SharedSize", "Labels",
            "Containers"} <= set(summary)
    for filters, message in (({"colour": ["red"]}, "Invalid filter 'colour'"),
                             ({"dangling": ["maybe"]}, "Invalid filter 'dangling=maybe'"),
                             ({"before": ["nosuch"]}, "No such image: nosuch")):
        with pytest.raises(APIError, match=re.escape(message)):
            image_list(filters)


def test_pull_finds_the_local_images_and_refuses_others_in_dockers_words():
    assert pull("docker.io/library/busybox", "latest")[-1] == {"status": "Status: Image is up to date for "
                                                                         "busybox:latest"}
    with pytest.raises(APIError) as refused:
        pull("nosuchimage", "latest")
    assert refused.value.status == 404 and str(refused.value) == (
        "pull access denied for nosuchimage, repository does not exist or may require 'docker login': denied: "
        "requested access to the resource is denied")
    with pytest.raises(APIError, match="manifest for busybox:1.36 not found: manifest unknown"):
        pull("busybox", "1.36")


def test_swarm_routes_answer_as_a_daemon_outside_a_swarm():
    assert (swarm("GET", ["swarm"]).status, str(swarm("GET", ["nodes"]))) == (503, NOT_A_MANAGER)
    assert str(swarm("POST", ["swarm", "leave"])) == "This node is not part of a swarm"
    assert "incompatible with swarm mode" in str(swarm("POST", ["swarm", "init"]))
