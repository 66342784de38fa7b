"""daemon.json as dockerd 1.13 reads it: its keys, and the texts with which a bad file stops dockerd."""

import json

import pytest

import topologies
from calisim.docker.config import ConfigError, DaemonConfig
from calisim.emulation import Cluster
from calisim.emulation.state import inspect_cluster

from tests.conftest import replay

SEED = {"cluster-store": "etcd://192.168.3.229:2379"}


def test_no_file_is_dockerds_defaults(tmp_path):
    config = DaemonConfig.load(tmp_path / "daemon.json")
    assert config == DaemonConfig()
    assert config.etcd_endpoints() is None
    assert config.info() == {"ClusterAdvertise": "", "LiveRestoreEnabled": False, "Labels": [],
                             "LoggingDriver": "json-file"}


def test_every_known_key_is_read(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({**SEED, "cluster-advertise": "192.168.3.229:2376", "live-restore": True,
                                "bip": "172.30.0.1/16", "dns": ["10.0.0.2"], "labels": ["rack=r1"],
                                "log-driver": "json-file", "log-opts": {"max-size": "10m"}}))
    config = DaemonConfig.load(path)
    assert config.etcd_endpoints() == "http://192.168.3.229:2379"
    assert config.info() == {"ClusterStore": "etcd://192.168.3.229:2379", "ClusterAdvertise": "192.168.3.229:2376",
                             "LiveRestoreEnabled": True, "Labels": ["rack=r1"], "LoggingDriver": "json-file"}
    assert config.log_config == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert config.bip == "172.30.0.1/16"
    assert config.resolv_conf("search lan\nnameserver 1.1.1.1\n") == "search lan\nnameserver 10.0.0.2\n"


def test_an_interface_name_is_advertised_as_its_address():
    config = DaemonConfig.from_json(json.dumps({**SEED, "cluster-advertise": "lo:2376"}))
    assert config.cluster_advertise == "127.0.0.1:2376"


@pytest.mark.parametrize("text, message", [
    ("", "unexpected end of JSON input"),
    ('{"live-restore": true', "unexpected end of JSON input"),
    ('{"live-restore": true,}', "invalid character '}' looking for beginning of object key string"),
    ("{live-restore: true}", "invalid character 'l' looking for beginning of object key string"),
    ('{"live-restore" true}', "invalid character 't' after object key"),
    ('{"live-restore": yes}', "invalid character 'y' looking for beginning of value"),
    ('{"live-restore": tru}', "invalid character '}' in literal true (expecting 'e')"),
    ('{"live-restore": fals', "unexpected end of JSON input"),
    ('{"live-restore": true "bip": ""}', "invalid character '\"' after object key:value pair"),
    ('{"dns": ["10.0.0.2" "10.0.0.3"]}', "invalid character '\"' after array element"),
    ("{} {}", "invalid character '{' after top-level value"),
    ('{"live-restore": "yes"}', "json: cannot unmarshal string into Go value of type bool"),
    ('{"default-address-pools": []}',
     "the following directives don't match any configuration option: default-address-pools"),
    ('{"cluster-advertise": "10.0.0.1:2376"}', "--cluster-advertise must be accompanied by --cluster-store"),
    ('{"cluster-store": "etcd://a:2379", "cluster-advertise": "eth0"}',
     "invalid --cluster-advertise configuration: eth0: address eth0: missing port in address"),
    ('{"cluster-store": "etcd://a:2379", "cluster-advertise": "nosuch0:2376"}',
     "invalid cluster advertise IP address or interface name"),
    ('{"bip": "172.30.0.1/99"}', "invalid CIDR address: 172.30.0.1/99"),
    ('{"bip": "fd00::1/64"}', "invalid CIDR address: fd00::1/64"),
    ('{"dns": ["resolver"]}', "resolver is not an ip address"),
    ('{"labels": ["rack"]}', "bad attribute format: rack"),
    ('{"log-driver": "bogus"}', "logger: no log driver named 'bogus' is registered"),
    ('{"log-opts": {"foo": "bar"}}', "unknown log opt 'foo' for json-file log driver"),
])
def test_a_bad_file_stops_dockerd_with_its_words(tmp_path, text, message):
    path = tmp_path / "daemon.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        DaemonConfig.load(path)
    assert str(refused.value).startswith(f"unable to configure the Docker daemon with file {path}: ")
    assert message in str(refused.value)


def test_only_an_etcd_cluster_store_is_emulated():
    with pytest.raises(ConfigError, match="only etcd://"):
        DaemonConfig(cluster_store="consul://10.0.0.1:8500").etcd_endpoints()


@pytest.mark.emulation
def test_each_hosts_daemon_json_is_read_at_start_and_a_bad_one_stops_only_its_dockerd(untouched, runs):
    with Cluster(topologies.load("flat", hosts=2)) as cluster:
        written = replay(cluster, r"""
host1$ printf '{"cluster-store": "etcd://%s", "cluster-advertise": "host1-eth0:2376", "labels": ["rack=r1"], "dns": ["10.0.0.2"], "log-driver": "none", "bip": "172.30.0.1/16"}' "${ETCD_ENDPOINTS#http://}" > /etc/docker/daemon.json
host2$ echo '{"live-restore": true,}' > /etc/docker/daemon.json
""")
        assert all(r.passed for r in written), written
        for host in ("host1", "host2"):
            cluster.faults.kill(host, "dockerd")
        cluster.faults.start("host1", "dockerd")
        with pytest.raises(Exception, match="unable to configure the Docker daemon with file /etc/docker/daemon.json: "
                                            "invalid character '}' looking for beginning of object key string"):
            cluster.faults.start("host2", "dockerd")
        hosts = {h["name"]: h for h in inspect_cluster(cluster)["hosts"]}
        assert (hosts["host1"]["dockerd"], hosts["host1"]["dockerd_error"]) == (True, "")
        assert not hosts["host2"]["dockerd"]
        assert hosts["host2"]["dockerd_error"].startswith("unable to configure the Docker daemon with file")
        results = replay(cluster, r"""
host1$ docker info --format '{{.Labels}} {{.LiveRestoreEnabled}} {{.LoggingDriver}}' | grep -x '\[rack=r1\] false none'
host1$ python3 -c 'import docker; i = docker.from_env().info(); print(i["ClusterStore"], i["ClusterAdvertise"])' | grep -xE 'etcd://[0-9.]+:2379 172\.16\.0\.1:2376'
host1$ docker run --rm busybox cat /etc/resolv.conf | grep -x 'nameserver 10.0.0.2'
host1$ docker run -d --name plain busybox true && docker inspect -f '{{.HostConfig.LogConfig.Type}}' plain | grep -x none
host1$ ip -4 -o addr show docker0 | awk '{print $4}' | grep -x 172.30.0.1/16
host1$ docker network inspect bridge -f '{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}' | grep -x '172.30.0.0/16 172.30.0.1'
host1$ docker run --rm busybox ip -4 -o addr show eth0 | grep -q 'inet 172.30.0.2/16'
host2$ ip -4 -o addr show docker0 | awk '{print $4}' | grep -x 172.17.0.1/16
host2! docker ps
host2$ grep -c 'unable to configure the Docker daemon' /var/log/calico/dockerd.log | grep -x 1
host2$ echo '{"live-restore": true}' > /etc/docker/daemon.json
""", keep_going=True)
        assert all(r.passed for r in results), [r for r in results if not r.passed]
        cluster.faults.start("host2", "dockerd")
        assert cluster.run("host2", "docker info --format '{{.LiveRestoreEnabled}}'").stdout.strip() == "true"
