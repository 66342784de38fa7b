"""The same BGP mesh on 1 and on 3 simulated servers, in one run: what spreading a lab over
servers costs and where its control channel (one multiplexed ssh connection a server) is loaded.

    python benchmarks/servers.py [--hosts 12 30] [--servers 1 3] [--json PATH] [--png PATH]

The hosts are Mininet's cluster edition's remote hosts (each its own ssh session, all on the
controller's one connection to its server), placed as `--servers sim:N` places a flat topology's
Calico hosts (calisim.servers.placement: blocks of consecutive hosts), on one segment: a bridge on
every server, the servers' bridges joined by VXLAN over the 1500-byte underlay.  Each host runs
BIRD 2 in a full iBGP mesh and announces one /24; calico-node is not run (plain remote hosts with
BIRD meshes: the remote Calico host is being built beside this).  Measured, per count of servers:
the servers' start, the hosts' build (their ssh sessions), the segment, BIRD's start, the time until
every session is Established and until every host's kernel has every host's /24 (read with
`ip route` in each host), the PSS of every process on each server (sshd, the remote shells, BIRDs,
its PID 1) and the ssh connections and sessions each server's sshd serves; the load average beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from mininet.net import Mininet  # noqa: E402
from rich.console import Console  # noqa: E402

import topologies  # noqa: E402
from report import output_path, write_runs  # noqa: E402  (benchmarks/ is this script's directory)
from calisim.emulation import wait_until  # noqa: E402
from calisim.emulation.rundir import RunDir  # noqa: E402
from calisim.process import pids  # noqa: E402
from calisim.servers.cluster import remote_host_class  # noqa: E402
from calisim.servers.links import VXLAN_OVERHEAD, VXLAN_PORT  # noqa: E402
from calisim.servers.placement import parse_servers, place  # noqa: E402
from calisim.servers.sim import UNDERLAY_MTU, SimServers  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "servers"
SEGMENT = "seg0"
VNI = 4242
MTU = UNDERLAY_MTU - VXLAN_OVERHEAD  # the same on 1 server as on 3: only the placement differs
ASN = 64512
TIMEOUT = 600.0

BIRD_CONFIG = """\
router id {address};
protocol device {{ }}
protocol kernel {{ ipv4 {{ export all; }}; }}
protocol static {{ ipv4; route {prefix} blackhole; }}
{peers}
"""
PEER = """protocol bgp {name} {{ local as {asn}; neighbor {address} as {asn}; direct;
  ipv4 {{ import all; export all; gateway direct; }}; }}"""


def prefix_of(index: int) -> str:
    return f"10.{100 + index // 250}.{index % 250}.0/24"


def bird_config(hosts: list[str], host: str, addresses: dict[str, str]) -> str:
    """A full iBGP mesh to every other host (addresses are the hosts' ADDRESS/PREFIX)."""
    ip = {name: address.split("/")[0] for name, address in addresses.items()}
    peers = "\n".join(PEER.format(name=f"peer_{other}", asn=ASN, address=ip[other]) for other in hosts if other != host)
    return BIRD_CONFIG.format(address=ip[host], prefix=prefix_of(hosts.index(host)), peers=peers)


def on_server(sim: SimServers, server, command: str, text: str | None = None) -> str:
    """A command run on server over its ssh connection (text on its standard input)."""
    done = subprocess.run(sim.ssh_command(server) + [command], input=text, capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{server.name}: {command}: {done.stderr.strip()}")
    return done.stdout


def make_segment(sim: SimServers, used: list) -> None:
    """A bridge on every server used, joined to the others' by one VXLAN device flooding to each."""
    for server in used:
        commands = [f"ip link add {SEGMENT} type bridge", f"ip link set {SEGMENT} mtu {MTU} up"]
        if len(used) > 1:
            commands += [f"ip link add vx0 type vxlan id {VNI} local {server.address.ip} dstport {VXLAN_PORT} "
                         f"dev eth0", f"ip link set vx0 mtu {MTU} master {SEGMENT} up"]
            commands += [f"bridge fdb append 00:00:00:00:00:00 dev vx0 dst {other.address.ip}"
                         for other in used if other is not server]
        on_server(sim, server, " && ".join(commands))


def attach(sim: SimServers, server, nodes: list, addresses: dict[str, str]) -> None:
    """Each host's eth0: a veth from the server's bridge into the host's namespace (one ssh
    command a server: a round trip each would be most of the time)."""
    on_server(sim, server, " && ".join(f"ip link add {node.name}-eth0 mtu {MTU} type veth peer name {node.name}-br "
                                       f"mtu {MTU} && ip link set {node.name}-eth0 netns {node.pid} && "
                                       f"ip link set {node.name}-br master {SEGMENT} up" for node in nodes))
    for node in nodes:
        node.cmd(f"ip addr add {addresses[node.name]} dev {node.name}-eth0 && ip link set {node.name}-eth0 up && "
                 "ip link set lo up")


def write_configs(sim: SimServers, server, configs: dict[str, str]) -> None:
    """The BIRD configs of a server's hosts, written there in one ssh command (a here-document each)."""
    script = "\n".join(f"mkdir -p {sim.run_dir}/hosts/{name} && cat > {sim.run_dir}/hosts/{name}/bird.conf "
                       f"<<'END_OF_CONFIG'\n{config}END_OF_CONFIG" for name, config in configs.items())
    on_server(sim, server, "sh -e", script + "\n")


def start_bird(sim: SimServers, node) -> None:
    """BIRD in the host's namespace, its files in the host's directory on its server."""
    directory = sim.run_dir / "hosts" / node.name
    said = node.cmd(f"bird -c {directory}/bird.conf -s {directory}/bird.ctl -P {directory}/bird.pid").strip()
    if said:
        raise RuntimeError(f"{node.name}: BIRD did not start: {said}")


def established(node) -> int:
    return node.cmd(f"birdc -s {node.params['directory']}/bird.ctl show protocols").count("Established")


def bird_routes(node) -> int:
    return len(node.cmd("ip -4 route show proto bird").splitlines())


def server_pss_mib(server) -> float:
    """Every process of the server (its PID 1, sshd and sessions, remote shells, BIRDs), PSS."""
    total = 0
    for pid in server.processes():
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return round(total / 1024, 1)


def ssh_load(server) -> tuple[int, int]:
    """The ssh connections the server's sshd serves (one `sshd: root@...` process each) and the
    sessions on them (each a child of its connection's process: a remote shell, a command)."""
    connections = []
    for pid in server.processes():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd: root@"):
                connections.append(pid)
        except OSError:
            continue
    return len(connections), sum(len(pids.children(pid)) for pid in connections)


def measure(hosts: int, servers: int) -> dict:
    load = os.getloadavg()[0]
    topo = topologies.load("flat", hosts=hosts)
    names = topo.calico_hosts()
    addresses = {name: topo.nodeInfo(name)["ip"] for name in names}
    placement = place(topo, parse_servers(f"sim:{servers}"))
    began = time.monotonic()
    sim = SimServers(RunDir.create(f"servers-{hosts}-on-{servers}").path, servers)
    sim.start()
    net = None
    try:
        servers_up = time.monotonic()
        by_name = {server.name: server for server in sim.servers}
        Mininet.inited = True  # never raise the sandbox's own sysctls
        net = Mininet(controller=None, build=False)
        for name in names:
            server = by_name[placement[name]]
            net.addHost(name, cls=remote_host_class(sim.ssh_options()), server=server.name,
                        serverIP=str(server.address.ip), user="root", directory=str(sim.run_dir / "hosts" / name))
        net.build()
        built = time.monotonic()
        used = sorted(set(placement.values()))
        make_segment(sim, [by_name[server] for server in used])
        for server in used:
            attach(sim, by_name[server], [net[name] for name in names if placement[name] == server], addresses)
        segment = time.monotonic()
        for server in used:
            write_configs(sim, by_name[server], {name: bird_config(names, name, addresses) for name in names
                                                 if placement[name] == server})
        for name in names:
            start_bird(sim, net[name])
        birds = time.monotonic()
        wait_until(lambda: all(established(net[name]) == hosts - 1 for name in names), TIMEOUT,
                   interval=0.2, what="every BGP session Established")
        sessions = time.monotonic()
        wait_until(lambda: all(bird_routes(net[name]) == hosts for name in names), TIMEOUT,
                   interval=0.2, what="every host's kernel to have every host's /24")
        routes = time.monotonic()
        memory = [server_pss_mib(server) for server in sim.servers]
        ssh = [ssh_load(server) for server in sim.servers]
        for name in names:
            net[name].cmd(f"kill $(cat {net[name].params['directory']}/bird.pid)")
    finally:
        if net is not None:
            net.stop()
        left = sim.stop()
    if left:
        raise RuntimeError(f"processes left on {', '.join(left)}")
    return {"hosts": hosts, "servers": servers, "sessions": hosts * (hosts - 1) // 2,
            "servers_start_s": round(servers_up - began, 2), "hosts_build_s": round(built - servers_up, 2),
            "segment_s": round(segment - built, 2), "bird_start_s": round(birds - segment, 2),
            "sessions_established_s": round(sessions - birds, 2), "routes_everywhere_s": round(routes - birds, 2),
            "start_to_routes_s": round(routes - began, 2),
            "server_pss_mib_max": max(memory), "server_pss_mib_mean": round(statistics.mean(memory), 1),
            "ssh_connections_per_server_max": max(c for c, _ in ssh),
            "ssh_sessions_per_server_max": max(s for _, s in ssh), "hosts_per_server_max": max(
                list(placement.values()).count(server.name) for server in sim.servers),
            "load_average_1min_at_start": round(load, 2)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from report import label_axes

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    stages = (("hosts_build_s", "hosts built (ssh sessions)"), ("segment_s", "segment"),
              ("bird_start_s", "BIRDs started"), ("routes_everywhere_s", "until routes everywhere"))
    labels = [f"{row['hosts']} hosts\non {row['servers']} server{'s' if row['servers'] > 1 else ''}" for row in rows]
    bottom = [row["servers_start_s"] for row in rows]
    axes[0].bar(labels, bottom, label="servers started")
    for key, label in stages:
        values = [row[key] for row in rows]
        axes[0].bar(labels, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    label_axes(axes[0], "", "seconds", "start to routes everywhere, by stage")
    axes[1].bar(labels, [row["server_pss_mib_max"] for row in rows], color="tab:purple", label="busiest server")
    label_axes(axes[1], "", "MiB (PSS)", "memory of a server's processes")
    axes[2].bar(labels, [row["ssh_sessions_per_server_max"] for row in rows], color="tab:green",
                label="busiest server")
    label_axes(axes[2], "", "sessions", "ssh sessions a server's sshd serves\n(all on one connection a server)")
    figure.suptitle("calisim: one BIRD full mesh on 1 and on 3 simulated servers (plain remote hosts; "
                    f"one run, load average {rows[0]['load_average_1min_at_start']} at its start)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[12], help="host counts, one run each")
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 3], help="server counts (simulated)")
    parser.add_argument("--json", type=output_path, default=str(RESULTS.with_suffix(".json")), help="the runs as JSON")
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")), help="their plot")
    args = parser.parse_args()
    console = Console(width=160)
    rows = []
    for hosts in args.hosts:
        for servers in args.servers:
            with console.status(f"{hosts} hosts on {servers} simulated servers"):
                rows.append(measure(hosts, servers))
            console.print(rows[-1])
    columns = ("hosts", "servers", "sessions", "servers_start_s", "hosts_build_s", "segment_s", "bird_start_s",
               "sessions_established_s", "routes_everywhere_s", "start_to_routes_s", "server_pss_mib_max",
               "ssh_connections_per_server_max", "ssh_sessions_per_server_max", "hosts_per_server_max",
               "load_average_1min_at_start")
    write_runs(console, "one BIRD full mesh on 1 and on 3 simulated servers", columns, rows, args.json, args.png, plot)


if __name__ == "__main__":
    main()
