"""Docker's bridge networks: the built-in IPAM's choices and the guard (no root needed), then the
default and user-defined bridges and published ports through the real docker CLI (emulation)."""

import os

import pytest

from tests.conftest import live_two_host, replay

import ipaddress

from calisim.docker import bridge
from calisim.docker.bridge import DEFAULT, GATEWAY, Bridge, in_a_host
from calisim.docker.errors import APIError
from calisim.docker.networks import NetworkRequest


def test_the_lowest_free_address_is_taken_and_a_freed_one_reused():
    assert str(GATEWAY) == "172.17.0.1" and DEFAULT.lowest_free(set()) == "172.17.0.2"
    assert DEFAULT.lowest_free({"172.17.0.2", "172.17.0.3"}) == "172.17.0.4"
    assert DEFAULT.lowest_free({"172.17.0.3"}) == "172.17.0.2"


def test_a_user_networks_range_gateway_and_aux_addresses_are_kept_out_of_the_choice():
    subnet = ipaddress.ip_network("10.99.0.0/24")
    user = Bridge("br-x", subnet, ipaddress.ip_address("10.99.0.254"), ipaddress.ip_network("10.99.0.128/25"),
                  frozenset({"10.99.0.128"}))
    assert user.lowest_free(set()) == "10.99.0.129" and user.lowest_free({"10.99.0.129"}) == "10.99.0.130"
    assert user.address_for("10.99.0.5", set(), user_subnet=True) == "10.99.0.5"  # --ip: anywhere in the subnet
    for asked, message in (("10.99.0.254", "Address already in use"), ("10.98.0.1", "does not belong to any")):
        with pytest.raises(APIError, match=message):
            user.address_for(asked, set(), user_subnet=True)
    with pytest.raises(APIError, match="only when connecting to networks with user configured subnets"):
        user.address_for("10.99.0.5", set(), user_subnet=False)
    with pytest.raises(APIError, match="supported on user defined networks only"):
        DEFAULT.address_for("172.17.0.9", set(), user_subnet=False)
    full = Bridge("br-y", ipaddress.ip_network("10.0.0.0/30"), ipaddress.ip_address("10.0.0.1"),
                  ipaddress.ip_network("10.0.0.0/30"))
    with pytest.raises(APIError, match="no available IPv4 addresses"):
        full.lowest_free({"10.0.0.2"})


def test_a_subnet_is_the_one_asked_or_the_first_free_of_dockers_pools(monkeypatch):
    monkeypatch.setattr(bridge, "routed_subnets", lambda: [ipaddress.ip_network("172.19.5.0/24")])
    docker0 = [ipaddress.ip_network("172.17.0.0/16")]
    assert str(bridge.choose_subnet(NetworkRequest("n", "bridge", "default"), docker0)) == "172.18.0.0/16"
    assert str(bridge.choose_subnet(NetworkRequest("n", "bridge", "default"),
                                    [*docker0, ipaddress.ip_network("172.18.0.0/16")])) == "172.20.0.0/16"
    with pytest.raises(APIError, match="Pool overlaps with other one on this address space"):
        bridge.choose_subnet(NetworkRequest("n", "bridge", "default", subnet="172.17.3.0/24"), docker0)
    for request, message in ((NetworkRequest("n", "bridge", "default", gateway="10.0.0.1"), "corresponding subnet"),
                             (NetworkRequest("n", "bridge", "default", "10.0.0.0/24", "10.1.0.0/25"),
                              "no matching subnet for range 10.1.0.0/25"),
                             (NetworkRequest("n", "bridge", "default", "10.0.0.0/24", gateway="10.1.0.1"),
                              "no matching subnet for gateway 10.1.0.1"),
                             (NetworkRequest("n", "bridge", "default", "10.0.0.0/24", aux_addresses={"a": "10.2.0.1"}),
                              "no matching subnet for aux-address 10.2.0.1"),
                             (NetworkRequest("n", "bridge", "calico-ipam"), "built-in IPAM"),
                             (NetworkRequest("n", "bridge", "default", ipv6=True), "IPv4 only")):
        with pytest.raises(APIError, match=message):
            bridge.check_request(request)


def test_docker0_is_made_only_in_an_emulated_hosts_namespace(monkeypatch):
    here = str(os.stat("/proc/self/ns/net").st_ino)
    monkeypatch.delenv("CALISIM_SANDBOX", raising=False)
    assert not in_a_host()  # the machine's own namespace, or anyone's outside calisim
    monkeypatch.setenv("CALISIM_SANDBOX", here)
    assert not in_a_host()  # the sandbox's own namespace is no host
    monkeypatch.setenv("CALISIM_SANDBOX", "1")
    assert in_a_host()


# -- through the real docker CLI, on one cluster for the module (emulation) ---------------------
SETUP = """
host1$ calicoctl node run
host2$ calicoctl node run
host1$ docker network create --driver calico --ipam-driver calico-ipam cal
"""


@pytest.fixture(scope="module")
def cluster():  # emulation tests only (marked one by one: the tests above need no root)
    yield from live_two_host(SETUP)


USER_BRIDGES = r"""
host1$ docker run --net cal --name W -tid busybox
# Without -d, Docker's bridge driver and its built-in IPAM: the next free /16 after docker0's.
host1$ docker network create br1
host1$ docker network inspect br1 --format '{{.Driver}} {{.Scope}} {{.IPAM.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}' | grep -x 'bridge local default 172.18.0.0/16 172.18.0.1'
host1$ ip -4 -o addr show dev "br-$(docker network inspect -f '{{.Id}}' br1 | cut -c1-12)" | grep -q ' 172.18.0.1/16 '
host2$ docker network ls --format '{{.Name}}' | grep -c br1 | grep -x 0
host1$ docker network ls --filter type=custom --format '{{.Name}}' | sort | tr '\n' ' ' | grep -x 'br1 cal '
host1$ docker network create --subnet 10.99.0.0/24 --ip-range 10.99.0.128/25 --gateway 10.99.0.254 --aux-address keep=10.99.0.128 br2
host1$ docker network inspect br2 --format '{{range .IPAM.Config}}{{.Subnet}} {{.IPRange}} {{.Gateway}}{{end}}' | grep -x '10.99.0.0/24 10.99.0.128/25 10.99.0.254'
host1$ iptables -S DOCKER-ISOLATION | grep -c DROP | grep -x 6
host1$ docker run --net br1 --name a -tid busybox
host1$ docker run --net br1 --name b --network-alias web -tid busybox
host1$ docker run --net br2 --name c -tid busybox
host1$ docker run --net br2 --ip 10.99.0.200 --name d -tid busybox
host1$ docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.Gateway}} {{.MacAddress}}{{end}}' b | grep -x '172.18.0.3 172.18.0.1 02:42:ac:12:00:03'
host1$ docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.Gateway}}{{end}}' c | grep -x '10.99.0.129 10.99.0.254'
host1$ docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' d | grep -x '10.99.0.200'
# Docker's embedded DNS on a user-defined bridge: names and aliases of the network, nothing else.
host1$ docker exec a cat /etc/resolv.conf | grep -x 'nameserver 127.0.0.11'
host1$ docker exec a ping -c1 -W2 b | grep -q '172.18.0.3'
host1$ docker exec a nslookup web | grep -q '172.18.0.3'
host1$ docker rename b bee
host1$ docker exec a nslookup bee | grep -q '172.18.0.3'
host1! docker exec a nslookup b
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix --keys-only /docker/ | grep -c endpoint | grep -x 1
host1$ docker rename bee b
host1! docker exec a nslookup c
host1! docker exec a nslookup W
# A second bridge network: the next interface, eth1, and the name on that network too.
host1$ docker network connect br1 d
host1$ docker exec d ip -4 -o addr show eth1 | grep -q ' 172.18.0.4/16 '
host1$ docker exec a nslookup d | grep -q '172.18.0.4'
host1$ docker network inspect br1 -f '{{len .Containers}}' | grep -x 3
# Isolated: from another bridge, and from Calico's workloads (no endpoint: Calico's policy drops it); out through NAT.
host1! docker exec a ping -c1 -W1 10.99.0.129
host1! docker exec a ping -c1 -W1 "$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' W)"
host1$ docker exec a ping -c1 -W2 192.168.3.228
# Docker's refusals, in its words; nothing made.
host1$ docker network create br1 2>&1 | grep -x 'Error response from daemon: network with name br1 already exists'
host1$ docker network create -d calico --ipam-driver calico-ipam br1 2>&1 | grep -x 'Error response from daemon: network with name br1 already exists'
host1$ docker network create --subnet 10.99.0.0/16 br3 2>&1 | grep -x 'Error response from daemon: Pool overlaps with other one on this address space'
host1$ docker run --net br2 --ip 10.99.0.200 --name e -tid busybox 2>&1 | grep -q 'Address already in use'
host1$ docker run --net br1 --ip 172.18.0.9 --name f -tid busybox 2>&1 | grep -q 'User specified IP address is supported only when connecting to networks with user configured subnets'
host1$ docker run --ip 172.17.0.9 --name g -tid busybox 2>&1 | grep -q 'User specified IP address is supported on user defined networks only'
host1$ docker rm e f g
host1$ docker network rm br1 2>&1 | grep -q 'has active endpoints'
# Ten started at once: ten addresses.
host1$ for i in 1 2 3 4 5 6 7 8 9 10; do docker run --net br1 --name "p$i" -tid busybox > /dev/null & done; wait
host1$ docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' p1 p2 p3 p4 p5 p6 p7 p8 p9 p10 | sort -u | grep -c '^172\.18\.' | grep -x 10
host1$ docker rm -f p1 p2 p3 p4 p5 p6 p7 p8 p9 p10
host1$ docker rm -f a b c d
host1$ docker network rm br1 br2
host1$ ip -o link | grep -c ' br-' | grep -x 0
host1$ iptables -S DOCKER-ISOLATION | grep -c DROP | grep -x 0
"""


@pytest.mark.emulation
def test_user_defined_bridge_networks(cluster):
    replay(cluster, USER_BRIDGES)


FETCH = "python -c \"import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())\""
PORTS = r"""
host1$ docker network create br1
host1$ docker run --net br1 -p 8080:80 -p 8001:81/udp --name web1 -d busybox httpd -f -p 80 -h /etc
host1$ docker run -p 127.0.0.1::80 -P --expose 90 --name web2 -d busybox httpd -f -p 80 -h /etc
# From another host, to host1's address: DNAT in host1's namespace, to the container's port.
within 10s host2$ FETCH http://192.168.3.229:8080/hostname | grep -Ex '[0-9a-f]{12}'
# From host1 itself (its own address: DNAT in OUTPUT; loopback: the proxy), and from a container on host2.
host1$ FETCH http://192.168.3.229:8080/hostname | grep -x "$(docker inspect -f '{{.Config.Hostname}}' web1)"
host1$ FETCH http://127.0.0.1:8080/hostname | grep -x "$(docker inspect -f '{{.Config.Hostname}}' web1)"
host2$ docker run --rm busybox wget -qO- http://192.168.3.229:8080/hostname | grep -Ex '[0-9a-f]{12}'
# docker port, docker ps and inspect, as Docker shows them.
host1$ docker port web1 | tr '\n' ' ' | grep -x '80/tcp -> 0.0.0.0:8080 81/udp -> 0.0.0.0:8001 '
host1$ docker port web1 80 | grep -x '0.0.0.0:8080'
host1$ docker ps -f name=web1 --format '{{.Ports}}' | grep -x '0.0.0.0:8080->80/tcp, 0.0.0.0:8001->81/udp'
# UDP too: a listener in web1's namespace gets what is sent to host1's address, port 8001 (DNAT in OUTPUT).
host1$ nsenter -t "$(docker inspect -f '{{.State.Pid}}' web1)" -n timeout 20 python -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 81)); print(s.recvfrom(99)[0].decode(), flush=True)" > udp-got 2>&1 < /dev/null &
within 10s host1$ python -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'over-udp', ('192.168.3.229', 8001))" && grep -x over-udp udp-got
host1$ docker port web2 80 | grep -Ex '127\.0\.0\.1:[0-9]+'
host1$ docker port web2 90 | grep -Ex '0\.0\.0\.0:[0-9]+'
host1$ test "$(docker port web2 90 | cut -d: -f2)" -ge "$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)"
host1$ FETCH "http://$(docker port web2 80)/hostname" | grep -x "$(docker inspect -f '{{.Config.Hostname}}' web2)"
# A restart publishes the same ports again.
host1$ docker restart web1
host1$ docker port web1 80 | grep -x '0.0.0.0:8080'
within 10s host1$ FETCH http://192.168.3.229:8080/hostname | grep -x "$(docker inspect -f '{{.Config.Hostname}}' web1)"
host1$ docker port web1 81 2>&1 | grep -x 'Error: No public port .81. published for web1'
# A port taken: Docker's refusal at start, the container stays created, nothing held.
host1$ ip -o link | grep -c veth > veths-before
host1$ docker run --net br1 -p 8080:80 --name web3 -d busybox httpd -f -p 80 2>&1 | grep -q 'failed programming external connectivity on endpoint web3 (.*): Bind for 0.0.0.0:8080 failed: port is already allocated'
host1$ docker inspect -f '{{.State.Status}}' web3 | grep -x created
host1$ docker ps -a -f name=web3 --format '[{{.Ports}}]' | grep -x '\[\]'
host1$ docker rm web3
host1$ ip -o link | grep -c veth | cmp - veths-before
# A port another process holds (BIRD's 179): the proxy's bind fails, as Docker reports it.
host1$ docker run --net br1 -p 179:80 --name web5 -d busybox httpd -f -p 80 2>&1 | grep -q 'Error starting userland proxy: listen tcp 0.0.0.0:179: bind: address already in use'
host1$ docker rm web5
host1$ docker network inspect br1 -f '{{len .Containers}}' | grep -x 1
# On a Calico network -p is accepted and does nothing, as libnetwork-plugin v1.0.
host1$ docker run --net cal -p 8082:80 --name webc -d busybox httpd -f -p 80 -h /etc
host1$ docker port webc | grep -c . | grep -x 0
host1$ iptables -t nat -S DOCKER | grep -c 8082 | grep -x 0
# Calico's FAQ's way instead: DNAT by hand, and a profile rule that lets the port in.
host1$ iptables -t nat -N expose-ports && iptables -t nat -A OUTPUT -j expose-ports && iptables -t nat -A PREROUTING -j expose-ports
host1$ iptables -t nat -A expose-ports -p tcp --destination 192.168.3.229 --dport 8082 -j DNAT --to "$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' webc):80"
host1$ printf '%s\n' '- {apiVersion: v1, kind: profile, metadata: {name: cal, tags: [cal]}, spec: {ingress: [{action: allow, source: {tag: cal}}, {action: allow, protocol: tcp, destination: {ports: [80]}}], egress: [{action: allow}]}}' | calicoctl apply -f -
within 10s host2$ FETCH http://192.168.3.229:8082/hostname | grep -Ex '[0-9a-f]{12}'
# Gone with the containers: rules and sockets.
host1$ docker rm -f web1 web2 webc
host1$ iptables -t nat -S DOCKER | grep -c DNAT | grep -x 0
host1$ docker run --net br1 -p 8080:80 --name web4 -d busybox httpd -f -p 80
host1$ docker rm -f web4
host1$ docker network rm br1
"""


@pytest.mark.emulation
def test_published_ports(cluster):
    replay(cluster, PORTS.replace("FETCH", FETCH))


BEFORE_RESTART = r"""
host1$ docker network create --subnet 10.98.0.0/24 kept
host1$ docker run --net kept -p 8085:80 --name k1 -d busybox httpd -f -p 80 -h /etc
host1$ iptables -t nat -S DOCKER | grep -c 8085 | grep -x 1
"""
AFTER_RESTART = r"""
# The network is back (its subnet, bridge and names); the killed dockerd's port rules are flushed,
# as dockerd empties its DOCKER chains at start (its container k1 runs on, unmanaged: its address is avoided).
host1$ docker network inspect kept -f '{{.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}}' | grep -x 'bridge 10.98.0.0/24'
host1$ iptables -t nat -S DOCKER | grep -c DNAT | grep -x 0
# Every bridge's rules once (the new dockerd added only what the host lacked).
host1$ iptables -t nat -S POSTROUTING | grep -c '! -o .* -j MASQUERADE' | grep -x 2
host1$ iptables -S FORWARD | sort | uniq -d | grep -c . | grep -x 0
host1$ iptables -S FORWARD | grep -c -- '-i docker0 -o docker0 -j ACCEPT' | grep -x 1
host1$ docker run --net kept --ip 10.98.0.50 -p 8085:80 --name k2 -d busybox httpd -f -p 80 -h /etc
host1$ docker run --net kept --ip 10.98.0.51 --name k3 -tid busybox
host1$ docker exec k3 wget -qO- http://k2/hostname | grep -x "$(docker inspect -f '{{.Config.Hostname}}' k2)"
host1$ FETCH http://192.168.3.229:8085/hostname | grep -x "$(docker inspect -f '{{.Config.Hostname}}' k2)"
host1$ docker rm -f k2 k3
"""


@pytest.mark.emulation
def test_user_defined_networks_outlive_their_dockerd(cluster):
    """Last in the module: host1's dockerd is killed and started again."""
    replay(cluster, BEFORE_RESTART)
    cluster.faults.kill("host1", "dockerd")
    cluster.faults.start("host1", "dockerd")
    replay(cluster, AFTER_RESTART.replace("FETCH", FETCH))
