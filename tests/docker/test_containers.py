"""Containers through the real docker CLI, on one two-host cluster: the image's own root and
PID namespace, Docker's files, the run/logs/stop/start/exec life cycle, Calico's network
refusals word for word, and nothing left behind by a removal or by bad input."""

import pytest

import topologies
from calisim.emulation import Cluster

from tests.conftest import replay

pytestmark = pytest.mark.emulation

SETUP = """
host1$ calicoctl node run
host2$ calicoctl node run
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name A -tid busybox
host2$ docker run --net net1 --name E -d workload
"""


@pytest.fixture(scope="module")
def cluster():
    with Cluster(topologies.load("two_host")) as live:
        replay(live, SETUP)
        yield live


ISOLATION = r"""
# The image's root, not the machine's; only the container's processes; busybox's applets.
host1$ docker exec A ls / | tr '\n' ' ' | grep -x 'bin dev etc home proc root sys tmp usr var '
host1! docker exec A test -e /work
# Docker Hub's busybox ps: PID USER TIME COMMAND (defconfig has FEATURE_PS_TIME)
host1$ docker exec A ps | awk 'NR > 1 {print $1, $4}' | tr '\n' ' ' | grep -xE '1 sh [0-9]+ ps '
host1$ docker exec A which nc wget ping nslookup httpd | tr '\n' ' ' | grep -x '/bin/nc /bin/wget /bin/ping /bin/nslookup /bin/httpd '
host1$ docker exec A sh -c 'echo $PATH; id -un; cat /etc/hostname; hostname' | tr '\n' ' ' | grep -xE '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin root ([0-9a-f]{12}) \1 '
host1$ docker inspect -f '{{.Id}}' A | cut -c1-12 | grep -x "$(docker exec A hostname)"
host1$ docker exec A cat /etc/resolv.conf | tr '\n' ' ' | grep -x 'nameserver 127.0.0.11 options ndots:0 '
# /etc/hosts: Docker's six lines and the container's own address and hostname, nothing else.
host1$ docker exec A sh -c 'sed -n 7,\$p /etc/hosts | grep -xE "(10|192)\.[0-9.]+[[:space:]]$(hostname)"'
host1$ docker exec A grep -c . /etc/hosts | grep -x 7
host1$ docker run --rm --net net1 --hostname web busybox hostname | grep -x web
# Busybox's nc reaches the echo service of a workload on the other host, by name.
within 30s host1$ docker exec A sh -c 'echo hi | nc -w1 E 80' | grep -x hi
host2$ docker exec E /code/tcpping.sh E | grep -x hello
"""


def test_a_container_sees_its_image_its_processes_and_docker_files(cluster):
    replay(cluster, ISOLATION)


NAMES = r"""
# Docker's embedded DNS server at 127.0.0.11 answers NAME and NAME.NETWORK for the containers on the
# asker's networks, on every host; the other networks' names are bad addresses.
host2$ docker exec E ip -4 -o addr show cali0 | awk '{print $4}' | cut -d/ -f1 > "$CALISIM_RUN_DIR/e-ip"
host1$ docker exec A nslookup E | grep -A1 -xE 'Name:[[:space:]]+E' | grep -x "Address: $(cat "$CALISIM_RUN_DIR/e-ip")"
host1$ docker exec A nslookup E.net1 | grep -x "Address: $(cat "$CALISIM_RUN_DIR/e-ip")"
host1$ docker exec A ping -c 1 -W 1 E.net1 | grep -F "PING E.net1 ($(cat "$CALISIM_RUN_DIR/e-ip"))"
host1$ docker exec A nslookup $(cat "$CALISIM_RUN_DIR/e-ip") | grep -xE "$(cat "$CALISIM_RUN_DIR/e-ip" | awk -F. '{print $4"."$3"."$2"."$1}').in-addr.arpa[[:space:]]+name = E.net1"
host1$ docker network create --driver calico --ipam-driver calico-ipam net2
host2$ docker run --net net2 --name F -tid busybox
host1$ docker exec A ping -c 1 F 2>&1 | grep -x "ping: bad address 'F'"
host1$ docker exec A ping -c 1 F.net2 2>&1 | grep -x "ping: bad address 'F.net2'"
host2$ docker exec F ping -c 1 E 2>&1 | grep -x "ping: bad address 'E'"
host2$ docker exec F nslookup A 2>&1 | grep -x "\*\* server can't find A: NXDOMAIN"
host2$ docker exec F nslookup F.net2 | grep -qxE 'Name:[[:space:]]+F\.net2'
# A new container resolves on its own host once `docker run` has returned, elsewhere soon after;
# a removed one stops resolving on its host at once, elsewhere soon after.
host2$ docker run --net net1 --name G -tid busybox && docker exec E nslookup G | grep -qxE 'Name:[[:space:]]+G'
within 10s host1$ docker exec A nslookup G | grep -qxE 'Name:[[:space:]]+G'
within 30s host1$ docker exec A ping -c 1 -W 1 G | grep -q '1 packets received'
host2$ docker rm -f G && docker exec E ping -c 1 G 2>&1 | grep -x "ping: bad address 'G'"
within 10s host1$ docker exec A ping -c 1 G 2>&1 | grep -x "ping: bad address 'G'"
host2$ docker rm -f F
host1$ docker network rm net2
"""


def test_names_resolve_through_the_embedded_dns_server(cluster):
    replay(cluster, NAMES)


LIFE_CYCLE = r"""
host1$ docker run --rm --net net1 busybox echo hi | grep -x hi
host1! docker run --rm --net net1 busybox sh -c 'exit 3'
host1$ docker run --rm --net net1 busybox sh -c 'exit 3'; test $? -eq 3
host1$ echo piped | docker run -i --rm --net net1 busybox cat | grep -x piped
host1$ python -c "import docker; print(docker.from_env().containers.run('busybox', ['echo', 'sdk'], network='net1', remove=True).decode(), end='')" | grep -x sdk
host1$ docker ps -a --format '{{.Names}}' | sort | tr '\n' ' ' | grep -x 'A '
# -d: the output is in the logs; wait gives the exit code; ps -a shows how it ended.
host1$ docker run -d --name L --net net1 busybox sh -c 'echo one; echo two; exit 4'
host1$ docker wait L | grep -x 4
host1$ docker logs L | tr '\n' ' ' | grep -x 'one two '
host1$ docker logs --tail 1 L | grep -x two
host1$ docker ps -a --filter name=L --format '{{.Status}}' | grep -E '^Exited \(4\) '
host1$ docker start -a L | tr '\n' ' ' | grep -x 'one two '
host1$ docker rm L
# exec: a TTY under a pseudo-terminal, stdin without one, exit codes.
# (script's stdin is /dev/null: what it forwards at EOF may echo as ^@ before the output)
host1$ script -qc 'docker exec -it A tty' /dev/null | grep -oE '^(\^@)?/dev/pts/[0-9]+' | grep -qE '/dev/pts/[0-9]+$'
host1$ docker exec A tty | grep -x 'not a tty'
host1$ script -qc 'stty rows 33 cols 77; docker run -it --rm --net net1 busybox stty size' /dev/null | grep -qE '^(\^@)?33 77'
host1$ echo 'echo from-stdin' | docker exec -i A sh | grep -x from-stdin
host1$ docker exec A sh -c 'exit 5'; test $? -eq 5
# stop leaves the network (no interface, no endpoint, no address); start joins it again.
host1$ docker run --net net1 --name S -tid busybox
host1$ docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' S > s-ip
host1$ docker stop -t 1 S | grep -x S
host1$ docker inspect -f '{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}' S | grep -x 'exited false 137 0'
host1$ calicoctl ipam show --ip $(cat s-ip) | grep -x "IP $(cat s-ip) is not currently assigned in block"
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix --keys-only /calico/v1/host/host1/workload/ | grep -c endpoint | grep -x 1
host1$ docker exec S true 2>&1 | grep -xE 'Error response from daemon: container [0-9a-f]{64} is not running'
host1$ docker start S | grep -x S
host1$ docker inspect -f '{{.Name}} {{.State.Status}}' S | grep -x '/S running'
within 30s host2$ docker exec E ping -c 1 -W 1 S | grep -q 'ttl=62'
host1$ docker restart -t 1 S | grep -x S
within 30s host2$ docker exec E ping -c 1 -W 1 S | grep -q 'ttl=62'
host1$ docker top S | awk 'NR > 1 {print $NF}' | grep -x sh
host1$ docker kill S | grep -x S
host1$ docker kill S 2>&1 | grep -xE 'Error response from daemon: cannot kill container: S: container [0-9a-f]{64} is not running'
# Removing leaves no process, no directory, no mount.
host1$ docker inspect -f '{{.Id}}' S > s-id
host1$ docker rm S | grep -x S
host1$ test ! -e /run/docker/state/containers/$(cat s-id)
host1$ ! grep -q "$(cat s-id)" /proc/mounts
host1$ docker run --net net1 --name R -tid busybox && docker inspect -f '{{.State.Pid}}' R > r-pid
host1$ docker rm -f R && ! test -e /proc/$(cat r-pid)
"""


def test_the_life_cycle_the_docker_cli_uses(cluster):
    replay(cluster, LIFE_CYCLE)


CALICO_REFUSALS = r"""
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix --keys-only /docker/network/v1.0/network/ | grep -c . > networks-before
host1$ docker network create -d calico --ipam-driver calico-ipam --opt foo=bar x 2>&1 | grep -x 'Error response from daemon: NetworkDriver.CreateNetwork: Arbitrary options are not supported'
host1$ docker network create -d calico --ipam-driver calico-ipam --subnet 192.168.0.0/16 --ip-range 192.168.1.0/24 y 2>&1 | grep -x "Error response from daemon: IpamDriver.RequestPool: Calico IPAM does not support sub pool configuration on 'docker create network'. Calico IP Pools should be configured first and IP assignment is from those pre-configured pools."
host1$ docker network create -d calico --ipam-driver calico-ipam --ipv6 --subnet fd00:77::/64 z 2>&1 | grep -x 'Error response from daemon: IpamDriver.RequestPool: The requested subnet must match the CIDR of a configured Calico IP Pool.'
host1$ docker network create -d calico --ipam-driver calico-ipam --subnet 10.77.0.0/16 w 2>&1 | grep -x 'Error response from daemon: IpamDriver.RequestPool: The requested subnet must match the CIDR of a configured Calico IP Pool.'
host1$ docker network create -d calico v 2>&1 | grep -x 'Error response from daemon: NetworkDriver.CreateNetwork: Non-Calico IPAM driver is used'
host1$ docker network create -d calico --ipam-driver calico-ipam --subnet 192.168.0.0/16 --gateway 192.168.0.1 g 2>&1 | grep -x 'Error response from daemon: NetworkDriver.CreateNetwork: Non-Calico IPAM driver is used'
host1$ calicoctl ipam show --ip 192.168.0.1 | grep -x 'IP 192.168.0.1 is not currently assigned in block'
host1! docker network create -d calico --ipam-driver calico-ipam --opt foo=bar x
host1$ docker network ls --filter type=custom --format '{{.Name}}' | tr '\n' ' ' | grep -x 'net1 '
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix --keys-only /docker/network/v1.0/network/ | grep -c . | cmp - networks-before
# A network on a pool that is then deleted.
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.66.0.0/16}}' | calicoctl create -f -
host1$ docker network create -d calico --ipam-driver calico-ipam --subnet 10.66.0.0/16 gone
host1$ calicoctl delete ipPool 10.66.0.0/16
host1$ docker run --net gone --name G -tid busybox 2>&1 | grep -F 'IpamDriver.RequestAddress: The network references a Calico pool which has been deleted. Please re-instate the Calico pool before using the network.'
host1! docker run --net gone --name G2 -tid busybox
host1$ docker run --net gone --name G3 -tid busybox; test $? -eq 125
host1$ docker network rm gone
# Bad input: Docker's messages and exit codes, nothing half-made.
host1$ ip -o link | grep -c cali > links-before
host1$ docker run --net net1 --name A -tid busybox; test $? -eq 125
host1$ docker run --net net1 --name A -tid busybox 2>&1 | grep -F 'Conflict. The container name "/A" is already in use by container'
host1$ docker run --net nosuchnet busybox true; test $? -eq 125
host1$ docker run --net nosuchnet busybox true 2>&1 | grep -x 'docker: Error response from daemon: network nosuchnet not found'
host1$ docker run --net net1 nosuchimage true; test $? -eq 125
host1$ docker run --net net1 busybox nosuchcommand; test $? -eq 127
host1$ docker run --net net1 busybox nosuchcommand 2>&1 | grep -F 'exec: "nosuchcommand": executable file not found in $PATH'
host1$ docker run --net net1 busybox /no/such 2>&1 | grep -F 'exec: "/no/such": no such file or directory'
host1$ docker run --net net1 busybox /etc/passwd; test $? -eq 126
host1$ docker exec nosuch true 2>&1 | grep -x 'Error response from daemon: No such container: nosuch'
host1$ docker logs nosuch 2>&1 | grep -x 'Error response from daemon: No such container: nosuch'
host1$ ip -o link | grep -c cali | cmp - links-before
host1$ docker ps -aq --filter status=created | xargs -r docker rm
host1$ ls /run/docker/state/containers | wc -l | grep -x 1
"""


def test_calicos_refusals_and_bad_input_reach_the_terminal(cluster):
    replay(cluster, CALICO_REFUSALS)
