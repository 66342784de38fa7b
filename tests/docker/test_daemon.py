"""The emulated dockerd through the real docker CLI: the bad-input paths answer with Docker's and
Calico's own errors, and a failed `docker run` leaves no interface, route, endpoint or address."""

import pytest

import topologies
from calisim.emulation import Cluster

from tests.conftest import replay


pytestmark = pytest.mark.emulation

ERRORS = r"""
host1$ calicoctl node run
host2$ calicoctl node run
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}' | calicoctl create -f -
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host2$ docker network inspect net1 --format '{{.Name}} {{.Driver}} {{.Scope}}' | grep -x 'net1 calico global'

# Networks: Calico's refusals reach the user through Docker.
host1$ docker network create --driver calico --ipam-driver calico-ipam net1 2>&1 | grep -q 'network with name net1 already exists'
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.50.0.0/16 netx 2>&1 | grep -q 'The requested subnet must match the CIDR of a configured Calico IP Pool.'
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.10.0.0/16 net16
host1$ docker network create --driver calico netd 2>&1 | grep -q 'Non-Calico IPAM driver is used'
host1$ docker network ls --format '{{.Name}}' | sort | tr '\n' ' ' | grep -x 'bridge host net1 net16 none '

# Containers: unknown images and networks, name clashes, an address outside every pool.
host1$ docker run --net net1 --name w1 -tid nosuchimage 2>&1 | grep -q 'pull access denied for nosuchimage, repository does not exist'
host1$ docker run --net nosuchnet --name w1 -tid busybox 2>&1 | grep -q 'network nosuchnet not found'
host1$ docker run --net net1 --name w1 -tid busybox
host1$ docker run --net net1 --name w1 -tid busybox 2>&1 | grep -q 'Conflict. The container name "/w1" is already in use'
within 10s host1$ ip route | grep -q 'dev cali'
host1$ ip -o link | grep -c cali > links-before && ip route | grep -c 'dev cali' > routes-before
host1$ docker run --net net1 --ip 10.99.0.5 --name w2 -tid busybox 2>&1 | grep -q 'The provided IP address is not in a configured pool'
host1$ ip -o link | grep -c cali | cmp - links-before && ip route | grep -c 'dev cali' | cmp - routes-before
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix --keys-only /calico/v1/host/host1/workload/ | grep -c endpoint | grep -x 1
host1$ docker run --net net16 --ip 10.10.250.9 --name w3 -tid busybox
host1$ docker exec w3 ip -4 -o addr show cali0 | grep -q '10.10.250.9/32'
host1$ docker exec nosuch true 2>&1 | grep -q 'No such container: nosuch'
host1$ docker exec w1 sh -c 'exit 3'; test $? -eq 3
host1$ docker exec w1 sh -c 'echo out; echo err >&2' 2>/dev/null | grep -x out
host1$ docker ps --format '{{.Names}}' | sort | tr '\n' ' ' | grep -x 'w1 w3 '
host1$ docker inspect w1 --format '{{.State.Status}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' | grep -E '^running 10\.10\.'

# Removal: a network with endpoints stays; a removed container gives everything back.
host1$ docker network rm net1 2>&1 | grep -q 'has active endpoints'
host1$ docker rm w1 2>&1 | grep -q 'container is running'
host1$ docker rm -f w1 w3
host1$ ip -o link | grep -c cali | grep -x 0
host1$ calicoctl ipam show --ip 10.10.250.9 | grep -x 'IP 10.10.250.9 is not currently assigned in block'
host1$ docker network rm net1 net16
host2$ docker network ls --format '{{.Name}}' | sort | tr '\n' ' ' | grep -x 'bridge host none '
"""


def test_docker_cli_errors_and_clean_failures(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        results = replay(cluster, ERRORS, keep_going=True)
    assert all(r.passed for r in results)


SDK = """
host1$ calicoctl node run
host2$ calicoctl node run
host1$ python - <<'EOF'
import docker
client = docker.from_env()
network = client.networks.create("net1", driver="calico", ipam=docker.types.IPAMConfig(driver="calico-ipam"))
assert (network.name, network.attrs["Driver"], network.attrs["Scope"]) == ("net1", "calico", "global")
a = client.containers.run("busybox", detach=True, tty=True, name="sdk-A", network="net1")
client.containers.run("busybox", detach=True, tty=True, name="sdk-C", network="net1")
assert client.containers.get("sdk-A").status == "running"
assert sorted(c.name for c in client.containers.list()) == ["sdk-A", "sdk-C"]
try:
    client.containers.run("nosuchimage", detach=True, name="x", network="net1")
    raise SystemExit("an unknown image was accepted")
except docker.errors.ImageNotFound:
    pass
EOF
within 10s host1$ python - <<'EOF'
import docker
result = docker.from_env().containers.get("sdk-A").exec_run(["ping", "-c", "2", "sdk-C"])
assert result.exit_code == 0 and b"ttl=63" in result.output, result
assert docker.from_env().containers.get("sdk-A").exec_run(["sh", "-c", "exit 4"]).exit_code == 4
EOF
host1$ python - <<'EOF'
import docker
client = docker.from_env()
for name in ("sdk-A", "sdk-C"):
    client.containers.get(name).remove(force=True)
client.networks.get("net1").remove()
assert client.containers.list(all=True) == [] and sorted(n.name for n in client.networks.list()) == ["bridge", "host", "none"]
EOF
host1$ ip -o link | grep -c cali | grep -x 0
"""


def test_the_docker_python_sdk_drives_the_emulated_dockerd(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        results = replay(cluster, SDK)
    assert all(r.passed for r in results)
