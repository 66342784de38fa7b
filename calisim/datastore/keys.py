"""Calico v1's etcd key layout (as libcalico v1.0 writes it) and Docker's cluster-store keys, in one place.

Every component finds the others' state through these paths, so they are the contract
between calicoctl, the node agent, IPAM, the plugins and dockerd.  What the values hold is
decoded in resources/, never by the readers.
"""

from __future__ import annotations

import ipaddress

READY = "/calico/v1/Ready"
FELIX_CONFIG = "/calico/v1/config/"
HOSTS = "/calico/v1/host/"
POOLS_V4 = "/calico/v1/ipam/v4/pool/"
POOLS_V6 = "/calico/v1/ipam/v6/pool/"
IPAM_CONFIG = "/calico/ipam/v2/config"
BGP_GLOBAL = "/calico/bgp/v1/global/"
GLOBAL_AS = BGP_GLOBAL + "as_num"
NODE_MESH = BGP_GLOBAL + "node_mesh"
GLOBAL_PEERS_V4 = BGP_GLOBAL + "peer_v4/"
GLOBAL_PEERS_V6 = BGP_GLOBAL + "peer_v6/"
BGP_HOSTS = "/calico/bgp/v1/host/"
ROUTE_REFLECTORS_V4 = "/calico/bgp/v1/rr_v4/"  # calico/routereflector's registrations: {"ip", "cluster_id"}
ROUTE_REFLECTORS_V6 = "/calico/bgp/v1/rr_v6/"  # the same for a reflector's IPv6 address (its IP6)
PROFILES = "/calico/v1/policy/profile/"
POLICIES = "/calico/v1/policy/tier/default/policy/"
BLOCKS = "/calico/ipam/v2/assignment/ipv4/block/"
BLOCKS_V6 = "/calico/ipam/v2/assignment/ipv6/block/"
HANDLES = "/calico/ipam/v2/handle/"
IPAM_HOSTS = "/calico/ipam/v2/host/"
DOCKER_STORE = "/docker/network/v1.0/"  # Docker's cluster store (dockerd --cluster-store: the same etcd)
DOCKER_NETWORKS = DOCKER_STORE + "network/"
DOCKER_ENDPOINTS = DOCKER_STORE + "endpoint/"

DEFAULT_AS = 64512


def cidr_to_key(cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | str) -> str:
    """10.10.0.0/16 -> 10.10.0.0-16, as Calico names pools and blocks."""
    return str(cidr).replace("/", "-")


def key_to_cidr(name: str) -> str:
    return name.rsplit("-", 1)[0] + "/" + name.rsplit("-", 1)[1]


def pool(cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return (POOLS_V4 if cidr.version == 4 else POOLS_V6) + cidr_to_key(cidr)


def host(name: str) -> str:
    return f"{HOSTS}{name}/"


def host_metadata(name: str) -> str:
    return f"{HOSTS}{name}/metadata"


def host_bird_ip(name: str) -> str:
    return f"{HOSTS}{name}/bird_ip"


def host_config(name: str, param: str) -> str:
    return f"{HOSTS}{name}/config/{param}"


def host_endpoint(node: str, name: str) -> str:
    """A host endpoint (calicoctl's hostEndpoint), as Felix reads it."""
    return f"{HOSTS}{node}/endpoint/{name}"


def split_host_key(key: str) -> list[str]:
    """/calico/v1/host/<node>/<rest...> -> [<node>, <rest parts>...]."""
    return key[len(HOSTS):].split("/")


def bgp_host(name: str) -> str:
    return f"{BGP_HOSTS}{name}/"


def bgp_host_ip_v4(name: str) -> str:
    return f"{BGP_HOSTS}{name}/ip_addr_v4"


def bgp_host_network_v4(name: str) -> str:
    return f"{BGP_HOSTS}{name}/network_v4"


def bgp_host_ip_v6(name: str) -> str:
    return f"{BGP_HOSTS}{name}/ip_addr_v6"


def bgp_host_network_v6(name: str) -> str:
    return f"{BGP_HOSTS}{name}/network_v6"


def bgp_host_as(name: str) -> str:
    return f"{BGP_HOSTS}{name}/as_num"


def bgp_host_peers_v4(name: str) -> str:
    return f"{BGP_HOSTS}{name}/peer_v4/"


def bgp_host_peers_v6(name: str) -> str:
    return f"{BGP_HOSTS}{name}/peer_v6/"


def workloads(host: str) -> str:
    """Every workload endpoint of a host is under this prefix."""
    return f"{HOSTS}{host}/workload/"


def workload_endpoint(host: str, orchestrator: str, workload: str, endpoint: str) -> str:
    return f"{HOSTS}{host}/workload/{orchestrator}/{workload}/endpoint/{endpoint}"


def route_reflectors(version: int) -> str:
    return ROUTE_REFLECTORS_V4 if version == 4 else ROUTE_REFLECTORS_V6


def route_reflector(ip: str) -> str:
    """rr_v4/<ip> or rr_v6/<ip>, by the address's version."""
    return route_reflectors(ipaddress.ip_address(ip).version) + ip


def ipam_host(name: str) -> str:
    return f"{IPAM_HOSTS}{name}/"


def host_affinity_blocks(name: str, version: int = 4) -> str:
    return f"{IPAM_HOSTS}{name}/ipv{version}/block/"


def blocks_prefix(version: int) -> str:
    return BLOCKS if version == 4 else BLOCKS_V6


def block(cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return blocks_prefix(cidr.version) + cidr_to_key(cidr)


def affinity(host: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return host_affinity_blocks(host, cidr.version) + cidr_to_key(cidr)


def handle(name: str) -> str:
    return HANDLES + name


def docker_network(network_id: str) -> str:
    return DOCKER_NETWORKS + network_id


def docker_endpoints(network_id: str) -> str:
    return f"{DOCKER_ENDPOINTS}{network_id}/"


def last_segment(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


def host_of(key: str, prefix: str = HOSTS) -> str:
    """/calico/v1/host/<name>/... -> <name>."""
    return key[len(prefix):].split("/", 1)[0]
