"""A leaf-spine IP fabric (Calico's "IP fabrics" designs; README "Beyond the mesh") with real BIRD
routers that are not Calico nodes.

Rack k is segment ``rack<k>`` = 172.20.k.0/24 with top-of-rack router ``tor<k>`` at .1 and hosts
at .11, .12, ... named host1.. rack after rack (rack 1 holds host1..hostH); every ToR links to
every spine ``spine1..spineS`` point to point (172.21.s.2(k-1)/31 on the ToR, the next address
on the spine).  Dual stack: rack k is also fd00:172:20:k::/64 (ToR ::1, hosts ::11, ::12, ...,
the hosts' IPv6 default route via the ToR), and the ToR-spine link fd00:172:21:s:k::/80 (ToR ::1,
spine ::2); every BGP session of the fabric exists twice, over IPv4 for IPv4 routes and over IPv6
for IPv6 routes (as Calico's bird and bird6), the IPv6 one named with ``_v6`` on the routers.  The
routers' BIRD configs are rendered here from bird_configs/ and run by the cluster.  Models:

* ``as-per-rack``: rack k is AS 65000+k; its ToR reflects its hosts' routes (iBGP, `rr client`,
  rack routes keep the host as next hop) and peers eBGP with the spines (AS 65100).
* ``as-per-host``: host i is AS 4200000000+i (4-byte), ToR k AS 65000+k peers eBGP with each host;
  traffic inside a rack goes through the ToR.
* ``downward-default``: every host AS 64512, every ToR AS 65000, spines AS 65100; everything is
  advertised up, only a default route comes down (spines originate it).

The Calico side is configured as Calico's docs say (``--start-nodes`` does it): `calicoctl node run
--as <AS> --ip6 <its IPv6 address>` on every host, the node-to-node mesh off, and a node-specific
bgpPeer per host to each of its ToR's addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from calisim.emulation.topology import CalicoTopo

from . import Option

MODELS = ("as-per-rack", "as-per-host", "downward-default")
LINK6_PREFIX = 80  # a ToR-spine link is fd00:172:21:<spine>:<rack>::/80 (the /64 is the spine's)
FAMILY_NAMES = {4: ("", "0.0.0.0/0"), 6: ("_v6", "::/0")}  # a Family's session-name suffix and default route
FIRST_HOST = 11
SPINE_AS = 65100
MAX_RACKS = 99  # rack k's AS is 65000+k, below the spines' 65100 (and one /24 per rack)
MAX_HOSTS_PER_RACK = 254 - FIRST_HOST + 1  # .11 .. .254
MAX_SPINES = 254  # one 172.21.s.0/24 of ToR links per spine
OPTIONS = {
    "racks": Option(int, f"racks, 1-{MAX_RACKS} (default 2)"),
    "hosts_per_rack": Option(int, f"Calico hosts in each rack, 1-{MAX_HOSTS_PER_RACK} (default 2)"),
    "spines": Option(int, f"spine routers, 1-{MAX_SPINES} (default 2)"),
    "model": Option(str, "the fabric's BGP design (default as-per-rack)", metavar="MODEL", choices=MODELS),
}


@dataclass(frozen=True)
class Speaker:
    """One BGP neighbour as a template names it."""

    name: str
    ip: str
    as_number: int


@dataclass(frozen=True)
class Family:
    """One IP version's half of a fabric router's config: its BGP sessions and what they carry."""

    version: int
    suffix: str  # of its BGP sessions' names: "" over IPv4, "_v6" over IPv6
    default: str  # the default route (all a downward-default fabric sends down)
    down: list[Speaker]  # a ToR's hosts, a spine's ToRs
    up: list[Speaker]  # a ToR's spines; none for a spine
    subnet: str = ""  # a ToR's rack subnet, advertised up

    @property
    def channel(self) -> str:
        return f"ipv{self.version}"


def rack_network(rack: int, version: int = 4) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"172.20.{rack}.0/24" if version == 4 else f"fd00:172:20:{rack}::/64")


def tor_ip(rack: int, version: int = 4) -> str:
    return str(rack_network(rack, version)[1])


def host_ip6(ip: str) -> str:
    """A host's IPv6 address from its IPv4 one: 172.20.k.h -> fd00:172:20:k::h."""
    return "fd00:{}:{}:{}::{}".format(*ip.split("."))


def link_ips(rack: int, spine: int, version: int = 4) -> tuple[str, str]:
    """The ToR's and the spine's end of their /31 (IPv4) or /80 (IPv6, LINK6_PREFIX)."""
    if version == 6:
        return f"fd00:172:21:{spine}:{rack}::1", f"fd00:172:21:{spine}:{rack}::2"
    base = ipaddress.ip_address(f"172.21.{spine}.0") + 2 * (rack - 1)
    return str(base), str(base + 1)


class FabricTopo(CalicoTopo):
    name = "fabric"
    etcd_host = "host1"

    def build(self, racks: int = 2, hosts_per_rack: int = 2, spines: int = 2, model: str = "as-per-rack") -> None:
        self.model, self.racks, self.hosts_per_rack, self.spine_count = model, racks, hosts_per_rack, spines
        for rack in range(1, racks + 1):
            segment = self.add_segment(f"rack{rack}")
            self.add_router(f"tor{rack}", {segment: f"{tor_ip(rack)}/24"}, bird_config=self.tor_config(rack))
            self.add_ipv6(f"tor{rack}", segment, f"{tor_ip(rack, 6)}/64")
            for name, ip in self.rack_hosts(rack):
                self.add_calico_host(name, f"{ip}/24", segment, default_route=tor_ip(rack))
                self.add_ipv6(name, segment, f"{host_ip6(ip)}/64", default_route=tor_ip(rack, 6))
        for spine in range(1, spines + 1):
            self.add_router(f"spine{spine}", {}, bird_config=self.spine_config(spine), underlay=True)
            for rack in range(1, racks + 1):
                tor_end, spine_end = link_ips(rack, spine)
                self.add_point_to_point(f"tor{rack}", f"{tor_end}/31", f"spine{spine}", f"{spine_end}/31")
                tor_end6, spine_end6 = link_ips(rack, spine, 6)
                self.add_ipv6(f"tor{rack}", f"spine{spine}", f"{tor_end6}/{LINK6_PREFIX}")
                self.add_ipv6(f"spine{spine}", f"tor{rack}", f"{spine_end6}/{LINK6_PREFIX}")

    # -- the address and AS plan ----------------------------------------------------------------
    def rack_hosts(self, rack: int) -> list[tuple[str, str]]:
        first = (rack - 1) * self.hosts_per_rack + 1
        return [(f"host{first + i}", str(rack_network(rack)[FIRST_HOST + i])) for i in range(self.hosts_per_rack)]

    def host_as(self, host: str) -> int:
        if self.model == "as-per-rack":
            return self.tor_as(self.rack_of(host))
        if self.model == "as-per-host":
            return 4200000000 + int(host.removeprefix("host"))
        return 64512

    def tor_as(self, rack: int) -> int:
        return 65000 if self.model == "downward-default" else 65000 + rack

    def rack_of(self, host: str) -> int:
        return (int(host.removeprefix("host")) - 1) // self.hosts_per_rack + 1

    # -- the routers' configs ---------------------------------------------------------------------
    def tor_family(self, rack: int, version: int) -> Family:
        ip = (lambda ip4: ip4) if version == 4 else host_ip6
        hosts = [Speaker(name, ip(address), self.host_as(name)) for name, address in self.rack_hosts(rack)]
        spines = [Speaker(f"spine{s}", link_ips(rack, s, version)[1], SPINE_AS)
                  for s in range(1, self.spine_count + 1)]
        return Family(version, *FAMILY_NAMES[version], hosts, spines, str(rack_network(rack, version)))

    def spine_family(self, spine: int, version: int) -> Family:
        tors = [Speaker(f"tor{r}", link_ips(r, spine, version)[0], self.tor_as(r)) for r in range(1, self.racks + 1)]
        return Family(version, *FAMILY_NAMES[version], tors, [])

    def tor_config(self, rack: int) -> str:
        from calisim.node import bird  # here: `calisim` reads every topology's options before its sandbox

        return bird.render_template(
            "fabric_tor.cfg.j2", name=f"tor{rack}", model=self.model, router_id=tor_ip(rack),
            local_as=self.tor_as(rack), families=[self.tor_family(rack, version) for version in (4, 6)],
            reflect=self.model == "as-per-rack", default_only=self.model == "downward-default", timers=bird.Timers())

    def spine_config(self, spine: int) -> str:
        from calisim.node import bird

        return bird.render_template(
            "fabric_spine.cfg.j2", name=f"spine{spine}", model=self.model, router_id=link_ips(1, spine)[1],
            local_as=SPINE_AS, families=[self.spine_family(spine, version) for version in (4, 6)],
            default_only=self.model == "downward-default", timers=bird.Timers())

    # -- the Calico side, as Calico's docs configure it --------------------------------------------
    def node_run_command(self, host: str) -> str:
        ip = dict(self.rack_hosts(self.rack_of(host)))[host]
        return f"calicoctl node run --as {self.host_as(host)} --ip6 {host_ip6(ip)}"

    def after_node_run(self) -> list[tuple[str, str]]:
        peers = "\n".join(
            f"- apiVersion: v1\n  kind: bgpPeer\n"
            f"  metadata: {{scope: node, node: {host}, peerIP: '{tor_ip(rack, version)}'}}\n"
            f"  spec: {{asNumber: {self.tor_as(rack)}}}"
            for rack in range(1, self.racks + 1) for host, _ in self.rack_hosts(rack) for version in (4, 6))
        return [("host1", "calicoctl config set nodeToNodeMesh off"),
                ("host1", f"calicoctl create -f - <<'EOF'\n{peers}\nEOF")]


def topology(racks: int | None = None, hosts_per_rack: int | None = None, spines: int | None = None,
             model: str | None = None) -> FabricTopo:
    racks = 2 if racks is None else racks
    hosts_per_rack = 2 if hosts_per_rack is None else hosts_per_rack
    spines = 2 if spines is None else spines
    model = model or "as-per-rack"
    for what, value, most in (("racks", racks, MAX_RACKS), ("hosts per rack", hosts_per_rack, MAX_HOSTS_PER_RACK),
                              ("spines", spines, MAX_SPINES)):
        if not 1 <= value <= most:
            raise ValueError(f"the fabric topology takes 1 to {most} {what}, not {value} "
                             f"(its address plan: racks 172.20.1-{MAX_RACKS}.0/24, hosts .{FIRST_HOST}-.254, "
                             f"ToR-spine links 172.21.1-{MAX_SPINES}.0/24)")
    if model not in MODELS:
        raise ValueError(f"unknown fabric model {model!r} (known: {', '.join(MODELS)})")
    return FabricTopo(racks=racks, hosts_per_rack=hosts_per_rack, spines=spines, model=model)
