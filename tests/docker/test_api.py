"""The Engine API: its pure helpers (`docker ps`'s filters and columns, a stream's frames; no root
needed), then the routes the docker CLI and the Docker SDK use, on one live cluster (emulation)."""

import pytest

import topologies
from calisim.docker.api import matches, parse_filters
from calisim.emulation import Cluster
from calisim.docker.containers import Attachment, Container
from calisim.docker.daemon import human_duration
from calisim.docker.streams import frame
from calisim.docker.busybox import BUILD_DIR
from calisim.docker.images import IMAGES

from tests.conftest import replay


def test_docker_ps_details():
    assert frame(2, b"err\n") == b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert [human_duration(s) for s in (0.2, 5, 90, 600, 4000, 10000)] == [
        "Less than a second", "5 seconds", "About a minute", "10 minutes", "About an hour", "2 hours"]
    container = Container("ab" * 32, "web-1", IMAGES["busybox"], "busybox", ["sh"], [Attachment("net1")],
                          {"Labels": {"tier": "front"}}, {})
    assert matches(container, parse_filters('{"name": {"web": true}, "status": {"created": true}}'))
    assert matches(container, parse_filters('{"label": ["tier=front"], "id": ["abab"]}'))
    assert not matches(container, parse_filters('{"label": {"tier=back": true}}'))
    assert not matches(container, parse_filters('{"status": {"running": true}}'))
    linking = Attachment.from_api("net1", {"Links": ["A:db", "/web", "B:/Store"], "Aliases": ["x"]})
    assert linking.link_aliases() == {"db": "A", "web": "web", "store": "B"} and linking.aliases == ("x",)
    assert Container("cd" * 32, "c", IMAGES["busybox"], "busybox", ["env"], [Attachment("net1")],
                     {"Env": ["FOO=bar", "BAZ", "EMPTY="]}, {}).environment()["FOO"] == "bar"
    bare = Container("cd" * 32, "c", IMAGES["busybox"], "busybox", ["env"], [Attachment("net1")],
                     {"Env": ["BAZ", "EMPTY="]}, {}).environment(["QUX"])
    assert "BAZ" not in bare and "QUX" not in bare and bare["EMPTY"] == ""



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
host1$ docker info --format '{{.Plugins.Network}} {{.Plugins.Volume}} {{.OSType}}' | grep -x '\[bridge calico host null\] \[local\] linux'
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


NETWORK_GAPS = r"""
# Aliases: kept with the endpoint, resolved on every host, shown with the short ID in inspect.
host1$ docker run --net net1 --network-alias db --network-alias store --name D -tid busybox
host1$ docker inspect -f '{{json .NetworkSettings.Networks.net1.Aliases}}' D | grep -x "\[\"db\",\"store\",\"$(docker inspect -f '{{.Id}}' D | cut -c1-12)\"\]"
host1$ docker exec A nslookup store | grep -x "Address: $(docker inspect -f '{{.NetworkSettings.Networks.net1.IPAddress}}' D)"
within 10s host2$ docker run --rm --net net1 busybox nslookup db | grep -qx 'Name:[[:space:]]*db'
# A created container connected to a second network joins both at start, with its alias there.
host1$ docker network create --driver calico --ipam-driver calico-ipam net2
host1$ docker create --net net1 --name C busybox sleep 600
host1$ docker network connect --alias cee net2 C
host1$ docker inspect -f '{{.State.Status}} {{len .NetworkSettings.Networks}} {{json .NetworkSettings.Networks.net2.Aliases}}' C | grep -x 'created 2 \["cee"\]'
host1$ docker start C
host1$ docker exec C ip -o -4 addr | awk '{print $2}' | tr '\n' ' ' | grep -x 'lo cali0 cali1 '
host1$ docker run --rm --net net2 busybox nslookup cee | grep -x "Address: $(docker inspect -f '{{.NetworkSettings.Networks.net2.IPAddress}}' C)"
host1$ docker network connect net2 C 2>&1 | grep -x 'Error response from daemon: endpoint with name C already exists in network net2'
host1$ docker network disconnect net2 C && docker exec C ip -o -4 addr | grep -c cali | grep -x 1
host1$ docker network disconnect net2 C 2>&1 | grep -xE 'Error response from daemon: container [0-9a-f]{64} is not connected to the network net2'
# Rename: the new name resolves and the old one no longer does; Docker's refusals.
host1$ docker rename C C2 && docker exec A nslookup C2 | grep -qx 'Name:[[:space:]]*C2'
host1$ docker exec A nslookup C 2>&1 | grep -x "\*\* server can't find C: NXDOMAIN"
host1$ docker rename C2 A 2>&1 | grep -F 'Conflict. The container name "/A" is already in use by container'
host1$ docker rename C2 C2 2>&1 | grep -x 'Error response from daemon: Renaming a container with the same name as its current name'
host1$ docker rm -f C2 D
# network ls filters; percent-encoded paths (a network named with a space).
host1$ docker network create --driver calico --ipam-driver calico-ipam --label tier=back 'test 01'
host1$ docker network inspect -f '{{.Name}} {{.Labels.tier}}' 'test 01' | grep -x 'test 01 back'
host1$ docker network ls --filter name=net --format '{{.Name}}' | sort | tr '\n' ' ' | grep -x 'net1 net2 '
host1$ docker network ls --filter label=tier=back --filter driver=calico --format '{{.Name}}' | grep -x 'test 01'
host1$ docker network ls --filter type=builtin --format '{{.Name}} {{.Driver}} {{.Scope}}' | tr '\n' ' ' | grep -x 'bridge bridge local host host local none null local '
host1$ docker network ls --filter type=bogus 2>&1 | grep -x "Error response from daemon: Invalid filter: 'type'='bogus'"
host1$ docker network ls --filter colour=red 2>&1 | grep -x "Error response from daemon: Invalid filter 'colour'"
host1$ docker network rm 'test 01' net2
# --ip6 on a dual-stack network (Calico's default IPv6 pool); refused where the network has no IPv6 pool, nothing left.
host1$ docker network create --driver calico --ipam-driver calico-ipam --ipv6 net6
host1$ docker run --net net6 --ip6 fd80:24e2:f998:72d6::99 --name six -tid busybox
host1$ docker exec six ip -6 -o addr show cali0 | grep -q 'fd80:24e2:f998:72d6::99/128'
host1$ docker inspect -f '{{.NetworkSettings.Networks.net6.IPAMConfig.IPv6Address}}' six | grep -x 'fd80:24e2:f998:72d6::99'
host1$ ip -o link | grep -c cali > links-before
host1$ docker run --rm --net net1 --ip6 fd80:24e2:f998:72d6::98 busybox true 2>&1 | grep -F "Invalid address fd80:24e2:f998:72d6::98: It does not belong to any of this network's subnets"
host1$ ip -o link | grep -c cali | cmp - links-before
host1$ docker rm -f six && docker network rm net6
# Swarm routes: a daemon outside a swarm.
host1$ docker node ls 2>&1 | grep -x 'Error response from daemon: This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.'
host1$ docker swarm leave 2>&1 | grep -x 'Error response from daemon: This node is not part of a swarm'
host1$ docker ps -aq | wc -l | grep -x 1
"""


@pytest.mark.emulation
def test_aliases_connect_before_start_rename_filters_ip6_and_swarm(cluster):
    replay(cluster, NETWORK_GAPS)


PROCESS_GAPS = r"""
# --user, exec -u and exec -w, looked up in the container's /etc; refusals in the runtime's words.
host1$ docker run --rm --net net1 --user nobody busybox sh -c 'id; echo $HOME' | tr '\n' ' ' | grep -x 'uid=65534(nobody) gid=65534(nogroup) /home '
host1$ docker run --rm --net net1 -u 33:100 busybox id | grep -x 'uid=33(www-data) gid=100(users)'
host1$ docker run --rm --net net1 -u nosuch busybox id 2>&1 | grep -x 'docker: Error response from daemon: linux spec user: unable to find user nosuch: no matching entries in passwd file'
host1$ docker exec -u nobody -w /tmp A sh -c 'id -u; pwd' | tr '\n' ' ' | grep -x '65534 /tmp '
host1$ docker exec A sh -c 'id -u; pwd' | tr '\n' ' ' | grep -x '0 / '
host1$ docker exec -u nosuch A true; test $? -eq 126
host1$ docker exec -w /nosuch A pwd 2>&1 | grep -F 'chdir to cwd ("/nosuch") set in config.json failed: no such file or directory'
host1$ docker ps -aq | wc -l | grep -x 1
# Exec output framed as the exec's start asks (Tty), whatever its create said; attach logs=1 replays the log;
# detach keys end an attach or an exec -it.
host1$ python - <<'EOF'
import socket
import docker

def read_all(sock):
    raw = getattr(sock, "_sock", sock)
    data = b""
    while chunk := raw.recv(4096):
        data += chunk
    return data

def frames(data):
    # (stream, payload) of Docker's 8-byte-header frames; ValueError if data is not framed
    found = []
    while data:
        if len(data) < 8 or data[0] not in (1, 2) or data[1:4] != bytes(3):
            raise ValueError(data)
        length = int.from_bytes(data[4:8], "big")
        found.append((data[0], data[8:8 + length]))
        data = data[8 + length:]
    return found

api = docker.from_env().api
for create, start, expected in ((False, True, b"out\nerr\n"), (True, True, b"out\r\nerr\r\n"),
                                (True, False, [(1, b"out\r\nerr\r\n")]),
                                (False, False, [(1, b"out\n"), (2, b"err\n")])):
    made = api.exec_create("A", ["sh", "-c", "sleep 0.2; echo out; echo err >&2"], tty=create)
    got = read_all(api.exec_start(made["Id"], tty=start, socket=True))
    if isinstance(expected, list):  # framed: the pty's one stream may come in one frame or several
        joined = {}
        for stream, payload in frames(got):
            joined[stream] = joined.get(stream, b"") + payload
        got = sorted(joined.items())
    assert got == expected, (create, start, got)
api.create_container("busybox", ["sh", "-c", "echo one; echo two >&2"], name="L",
                     host_config=api.create_host_config(network_mode="net1"))
api.start("L")
assert api.wait("L")["StatusCode"] == 0
with socket.socket(socket.AF_UNIX) as sock:  # the whole answer, 101 included: nothing can be lost before reading
    sock.connect("/run/docker/docker.sock")
    sock.sendall(b"POST /containers/L/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\n"
                 b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    answer = read_all(sock)
assert answer.startswith(b"HTTP/1.1 101 UPGRADED\r\n"), answer
assert answer.endswith(b"\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x04one\n\x02\x00\x00\x00\x00\x00\x00\x04two\n"), answer
api.remove_container("L")
# Detach keys (here one key, one read): the client is hung up on, the process runs on.
made = api.exec_create("A", ["sh"], stdin=True, tty=True, detach_keys="ctrl-x")
raw = getattr(api.exec_start(made["Id"], tty=True, socket=True), "_sock", None)
raw.sendall(b"echo hi$((1+1))\n")
seen = b""
while b"hi2" not in seen:
    seen += raw.recv(4096)
raw.sendall(b"\x18")
read_all(raw)  # returns: the daemon hung up
assert api.exec_inspect(made["Id"])["Running"]
raw = getattr(api.attach_socket("A", params={"stdin": 1, "stream": 1, "stdout": 1, "detachKeys": "ctrl-x"}),
              "_sock", None)
raw.sendall(b"\x18")
read_all(raw)
assert api.inspect_container("A")["State"]["Running"]
EOF
"""


@pytest.mark.emulation
def test_users_workdirs_exec_framing_attach_logs_and_detach_keys(cluster):
    replay(cluster, PROCESS_GAPS)


EXEC_STREAMS = r"""
# 500 execs through the Docker SDK and 500 through the docker CLI, half of each with a TTY, every
# output checked whole: half on an idle host, half while 20 containers are created beside them.
# The SDK reads the 101 through a buffered reader and then the raw socket: output that came with
# the 101 would be lost, so the daemon starts the process only once the client has read it.
host1$ cat > execs.py <<'END'
import subprocess, sys, threading
import docker

A = docker.from_env().containers.get("A")
lost = []

def execs(tag, tty, n=125):
    for i in range(n):
        output = A.exec_run(["echo", f"{tag} {i}"], tty=tty).output
        if output.replace(b"\r\n", b"\n") != f"{tag} {i}\n".encode():
            lost.append((tag, i, output))

beside = subprocess.Popen(["sh", "-c", sys.argv[1]]) if len(sys.argv) > 1 else None
loops = [threading.Thread(target=execs, args=(tag, tag.endswith("tty"))) for tag in ("sdk", "sdktty")]
[loop.start() for loop in loops]
[loop.join() for loop in loops]
assert beside is None or beside.wait() == 0
assert not lost, lost[:5]
END
host1$ python execs.py
host1$ python execs.py 'for i in $(seq 20); do docker run -d --net none --name sdkbusy$i busybox sleep 600; done'
host1$ cat > execs.sh <<'END'
execs() {  # $1: a tag, $2: how many, $3...: docker exec's options; one line an exec
    tag=$1 n=$2; shift 2
    for i in $(seq "$n"); do docker exec "$@" A echo "$tag $i" | tr -d '\r'; done > "execs-$tag"
    seq "$n" | sed "s/^/$tag /" | cmp - "execs-$tag"
}
END
host1$ . ./execs.sh; execs plain 125 & a=$!; execs tty 125 -t & b=$!; wait $a && wait $b
host1$ . ./execs.sh; (for i in $(seq 20); do docker run -d --net none --name busy$i busybox sleep 600 >/dev/null; done) & a=$!; execs busyplain 125 & b=$!; execs busytty 125 -t & c=$!; wait $a && wait $b && wait $c
host1$ docker ps -q --filter name=busy | wc -l | grep -x 40
host1$ docker rm -f $(docker ps -aq --filter name=busy) > /dev/null
"""


@pytest.mark.emulation
def test_500_execs_lose_no_output_idle_or_beside_creations(cluster):
    replay(cluster, EXEC_STREAMS)


REMAINING_GAPS = r"""
# A bare -e NAME: the client's value when its environment has NAME (the CLI fills it in), else not set at all.
host1$ unset BAZ; FOO=bar docker run --rm --net none -e FOO -e BAZ busybox env | grep -E '^(FOO|BAZ)' | tr '\n' ' ' | grep -x 'FOO=bar '
host1$ unset QUX; docker exec -e QUX A env | grep -c '^QUX' | grep -x 0
# --internal refused on a Calico network in libnetwork-plugin v1.0's words; nothing made.
host1$ docker network create -d calico --ipam-driver calico-ipam --internal inside 2>&1 | grep -x 'Error response from daemon: NetworkDriver.CreateNetwork: Calico driver does not support the --internal flag.'
host1$ docker network ls -q --filter name=inside | grep -c . | grep -x 0
# --link on a user-defined network: an alias that the linking container alone resolves, kept in inspect.
host1$ docker run --net net1 --link A:db --name linker -tid busybox
host1$ docker exec linker nslookup db | grep -x "Address: $(docker inspect -f '{{.NetworkSettings.Networks.net1.IPAddress}}' A)"
host1$ docker inspect -f '{{json .NetworkSettings.Networks.net1.Links}}' linker | grep -x '\["A:db"\]'
host1$ docker exec A nslookup db 2>&1 | grep -x "\*\* server can't find db: NXDOMAIN"
host1$ docker rm -f linker
# ... and on a user-defined bridge network.
host1$ docker network create userbr && docker run --net userbr --name target -tid busybox
host1$ docker run --rm --net userbr --link target:tgt busybox nslookup tgt | grep -x "Address: $(docker inspect -f '{{.NetworkSettings.Networks.userbr.IPAddress}}' target)"
host1$ docker rm -f target && docker network rm userbr
"""


@pytest.mark.emulation
def test_bare_env_internal_and_links_on_a_user_network(cluster):
    replay(cluster, REMAINING_GAPS)


PRUNE = r"""
# prune as Docker 1.13 answers it (the SDK's clean-ups call it): stopped containers, networks without an endpoint
# on any host, no dangling image, an empty build cache; running containers and used networks kept.
host1$ docker create --net net1 --name stopped1 busybox && docker run --net net1 --name stopped2 busybox true
host1$ docker network create --driver calico --ipam-driver calico-ipam unused
host2$ docker network create --driver calico --ipam-driver calico-ipam used && docker run --net used --name user2 -tid busybox
host1$ docker container prune -f | grep -cxE '[0-9a-f]{64}' | grep -x 2
host1$ docker ps -a --format '{{.Names}}' | grep -x A
host1$ docker network prune -f | sed -n 2p | grep -x unused
host1$ docker network ls --format '{{.Name}}' | sort | tr '\n' ' ' | grep -x 'bridge host net1 none used '
host1$ docker image prune -f | grep -x 'Total reclaimed space: 0B'
host1$ docker system prune -f | tail -1 | grep -x 'Total reclaimed space: 0B'
host1$ docker container prune -f --filter until=1h 2>&1 | grep -x "Error response from daemon: Invalid filter 'until'"
host1$ python -c "import docker; c = docker.from_env(); print(c.containers.prune(), c.networks.prune())" | grep -x "{'ContainersDeleted': None, 'SpaceReclaimed': 0} {'NetworksDeleted': None}"
host2$ docker rm -f user2 && docker network rm used
"""


@pytest.mark.emulation
def test_prune_as_docker_1_13_answers_it(cluster):
    replay(cluster, PRUNE)


VOLUMES = r"""
# -v: a host path (made if missing), read-only or not; a named volume kept across containers; an anonymous one.
host1$ mkdir -p vol-src && echo from-host > vol-src/f
host1$ docker run --rm --net none -v $PWD/vol-src:/data busybox cat /data/f | grep -x from-host
host1$ docker run --rm --net none -v $PWD/vol-src:/data busybox sh -c 'echo from-container > /data/g' && grep -x from-container vol-src/g
host1$ docker run --rm --net none -v $PWD/vol-src:/data:ro busybox sh -c 'echo x > /data/h' 2>&1 | grep -q 'Read-only file system'
host1$ test ! -e vol-src/h && docker run --rm --net none -v $PWD/vol-new/sub:/new busybox true && test -d vol-new/sub
host1$ docker run --net none --name V -v keep:/keep busybox sh -c 'echo kept > /keep/k'
host1$ docker run --rm --net none -v keep:/again:ro busybox cat /again/k | grep -x kept
host1$ docker inspect -f '{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}' V | grep -x 'volume keep /keep true'
host1$ docker volume ls --format '{{.Name}} {{.Driver}}' | grep -x 'keep local'
host1$ docker volume rm keep 2>&1 | grep -x "Error response from daemon: remove keep: volume is in use - \[$(docker inspect -f '{{.Id}}' V)\]"
host1$ docker rm V && docker volume rm keep && docker volume ls -q | grep -c . | grep -x 0
# An anonymous volume goes with its container (--rm, rm -v); a named one stays until removed or pruned.
host1$ docker run --rm --net none -v /anon busybox sh -c 'echo a > /anon/a; cat /anon/a' | grep -x a
host1$ docker volume ls -q | grep -c . | grep -x 0
host1$ docker run --net none --name W2 -v /anon -v kept:/kept busybox true && docker volume ls -q | grep -c . | grep -x 2
host1$ docker rm -v W2 && docker volume ls -q | tr '\n' ' ' | grep -x 'kept '
host1$ docker volume create made | grep -x made && docker volume inspect -f '{{.Mountpoint}}' made | grep -q '/volumes/made/_data$'
host1$ docker volume prune -af | grep -c . && docker volume ls -q | grep -c . | grep -x 0
# Docker's refusals, at create: nothing made.
host1$ docker run --rm --net none -v rel/path:/x busybox true 2>&1 | grep -F '"rel/path" includes invalid characters for a local volume name'
host1$ docker run --rm --net none -v /tmp:x busybox true 2>&1 | grep -F "Invalid volume destination path: 'x' mount path must be absolute."
host1$ docker volume inspect nosuch 2>&1 | grep -x 'Error response from daemon: get nosuch: no such volume'
host1$ docker ps -aq | wc -l | grep -x 1
"""


@pytest.mark.emulation
def test_volumes_host_paths_named_and_anonymous(cluster):
    replay(cluster, VOLUMES)


COPY = r"""
# docker cp out of and into a running container: files and directories, as the container sees its paths.
host1$ rm -rf cp-out && mkdir cp-out && docker cp A:/etc/passwd cp-out/p && head -1 cp-out/p | grep -x 'root:x:0:0:root:/root:/bin/sh'
host1$ docker cp A:/etc cp-out/etc && test -f cp-out/etc/group && test -f cp-out/etc/hostname
host1$ echo hello > cp-in.txt && docker cp cp-in.txt A:/tmp/ && docker exec A cat /tmp/cp-in.txt | grep -x hello
host1$ mkdir -p cp-dir && echo x > cp-dir/y && docker cp cp-dir A:/root/ && docker exec A cat /root/cp-dir/y | grep -x x
host1$ python -c "import docker; print(docker.from_env().containers.get('A').get_archive('/etc/hostname')[1]['name'])" | grep -x hostname
# Refusals in Docker's words.
host1$ docker cp A:/nosuch cp-out 2>&1 | grep -x 'Error response from daemon: Could not find the file /nosuch in container A'
host1$ docker cp cp-in.txt A:/etc/passwd/x 2>&1 | grep -x 'Error response from daemon: extraction point is not a directory'
host1$ docker exec A rm -rf /tmp/cp-in.txt /root/cp-dir
"""


@pytest.mark.emulation
def test_docker_cp_in_and_out_of_a_running_container(cluster):
    replay(cluster, COPY)


DIFF_AND_HISTORY = r"""
# docker diff: the writable layer against the image (added, changed, deleted), running or not.
host1$ docker run --net none --name F busybox sh -c 'echo x > /tmp/new; rm /etc/shadow; mkdir /data'
host1$ docker diff F | tr '\n' ' ' | grep -x 'A /data C /etc D /etc/shadow C /tmp A /tmp/new '
host1$ docker rm F
# docker history: the command's row, then a row a layer, newest first.
host1$ docker history busybox --format '{{.CreatedBy}}' | head -1 | grep -x '/bin/sh -c #(nop)  CMD \["sh"\]'
host1$ docker history workload -q | tr '\n' ' ' | grep -x "$(docker image inspect -f '{{.Id}}' workload | cut -c8-19) <missing> <missing> "
# docker system df: the images (busybox's layer shared with workload), the containers, the volumes.
host1$ docker system df --format '{{.Type}} {{.TotalCount}} {{.Active}}' | head -2 | tr '\n' ' ' | grep -x "Images 2 1 Containers $(docker ps -aq | wc -l) $(docker ps -q | wc -l) "
host1$ python -c "import docker; df = docker.from_env().df(); print(sorted((i['RepoTags'][0], i['SharedSize'] > 0) for i in df['Images']))" | grep -x "\[('busybox:latest', True), ('workload:latest', True)\]"
"""


@pytest.mark.emulation
def test_docker_diff_history_and_system_df(cluster):
    replay(cluster, DIFF_AND_HISTORY)


BUSYBOX = r"""
# busybox --list in a container: exactly the applets upstream's defconfig enables (the build's busybox.links).
host1$ docker exec A busybox --list > listed && sed 's#.*/##' LINKS | LC_ALL=C sort | cmp - listed
# UDP with nc -u, as Calico's tests check it: a listener on host2, a datagram from host1.
host2$ docker run -tid --net net1 --name U busybox nc -l -u -p 69
within 10s host1$ docker exec A ping -c 1 -W 1 U | grep -q '1 packets received'
host1$ echo hi | docker exec -i A nc -u -w 1 U 69
within 10s host2$ docker logs U | tr -d '\r' | grep -x hi
# httpd and wget, nslookup; traceroute to the other host, hop by hop.
host2$ docker run -d --net net1 --name web busybox httpd -f -p 80 -h /etc
within 10s host1$ docker exec A wget -q -O - http://web/passwd | head -1 | grep -x 'root:x:0:0:root:/root:/bin/sh'
host1$ docker exec A nslookup web | grep -qx 'Name:[[:space:]]*web'
host1$ docker exec A traceroute -n -q 1 -w 1 192.168.3.228 2>&1 | tail -1 | grep -qE '^ ?[0-9]+ +192\.168\.3\.228 '
# ping6 on a workload of an IPv6 network (Calico's default IPv6 pool): its own address and loopback.
host1$ docker network create --driver calico --ipam-driver calico-ipam --ipv6 v6net
host1$ docker run --net v6net --name s6 -tid busybox
host1$ docker exec s6 ping6 -c 1 -W 1 $(docker inspect -f '{{.NetworkSettings.Networks.v6net.GlobalIPv6Address}}' s6) | grep -q '1 packets received'
host1$ docker exec s6 ping6 -c 1 -W 1 ::1 | grep -q '1 packets received'
host1$ docker rm -f s6 && docker network rm v6net
host2$ docker rm -f U web
"""


@pytest.mark.emulation
def test_busybox_has_defconfigs_applets_and_its_network_tools_work(cluster):
    replay(cluster, BUSYBOX.replace("LINKS", str(BUILD_DIR / "busybox.links")))


PREDEFINED_NETWORKS = r"""
# bridge, host and none on every host, local in scope.
host2$ docker network ls --filter type=builtin --format '{{.Name}} {{.Driver}} {{.Scope}}' | tr '\n' ' ' | grep -x 'bridge bridge local host host local none null local '
host2$ docker network inspect -f '{{.Scope}} {{.Driver}} {{len .IPAM.Config}}' none | grep -x 'local null 0'
host1$ docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}' bridge | grep -x '172.17.0.0/16 172.17.0.1'
# bridge: docker0 in the host, a container without --net on it, the lowest free address, NAT to other hosts.
host1$ ip -o -4 addr show docker0 | grep -q ' 172.17.0.1/16 '
host1$ docker run -tid --name b1 busybox && docker run -tid --name b2 busybox
host1$ docker inspect -f '{{.NetworkSettings.Networks.bridge.IPAddress}} {{.NetworkSettings.Networks.bridge.MacAddress}} {{.NetworkSettings.Networks.bridge.Gateway}}' b2 | grep -x '172.17.0.3 02:42:ac:11:00:03 172.17.0.1'
host1$ docker exec b1 ip route | grep -x 'default via 172.17.0.1 dev eth0 '
host1$ docker exec b1 ping -c 1 -W 1 172.17.0.3 | grep -q '1 packets received'
host1$ docker exec b1 ping -c 1 -W 1 192.168.3.228 | grep -q '1 packets received'
host1$ iptables -t nat -S POSTROUTING | grep -x -- '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE'
# Beside Calico: a bridge container is no Calico endpoint, so Calico's policy drops what it sends to a
# workload; a workload reaches it (Calico lets workloads out; the replies are established traffic).
host1$ docker run --net net1 --name W -tid busybox
within 10s host1$ docker exec W ping -c 1 -W 1 172.17.0.2 | grep -q '1 packets received'
host1$ docker exec b1 ping -c 1 -W 1 $(docker inspect -f '{{.NetworkSettings.Networks.net1.IPAddress}}' W) | grep -q '0 packets received'
host1$ docker rm -f b1 b2 W && ip -o link | grep -c ' veth' | grep -x 0
# none: a loopback only; host: the host's namespace, its name and its /etc/hosts.
host1$ docker run --rm --net none busybox ip -o link | awk -F': ' '{print $2}' | tr '\n' ' ' | grep -x 'lo '
host1$ docker run --rm --net host busybox hostname | grep -x host1
host1$ docker run --rm --net host busybox ip -o -4 addr show host1-eth0 | grep -q ' 192.168.3.229/24 '
host1$ docker run --rm --net host busybox cat /etc/hosts | cmp - /etc/hosts
host1$ docker run --net host --name H -tid busybox
host1$ docker network inspect -f '{{range .Containers}}{{.Name}}{{end}}' host | grep -x H
host1$ docker network connect net1 H 2>&1 | grep -x 'Error response from daemon: container cannot be disconnected from host network or connected to host network'
host1$ docker rm -f H
# Docker's refusals; nothing made, nothing removed.
host1$ docker network create -d calico --ipam-driver calico-ipam host 2>&1 | grep -x 'Error response from daemon: host is a pre-defined network and cannot be created'
host1$ docker network rm none 2>&1 | grep -x 'Error response from daemon: none is a pre-defined network and cannot be removed'
host1$ docker network ls -q | wc -l | grep -x 4
host1$ docker ps -aq | wc -l | grep -x 1
"""


@pytest.mark.emulation
def test_the_predefined_bridge_host_and_none_networks(cluster):
    replay(cluster, PREDEFINED_NETWORKS)
