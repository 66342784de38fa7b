"""The same Calico cluster on 1 and on 3 simulated servers, in one run: what spreading a lab over
servers costs and where its control channel (one multiplexed ssh connection a server) is loaded.

    python benchmarks/servers.py [--hosts 12 30] [--servers 1 3] [--json PATH] [--png PATH]

Each run is calisim's `flat` topology of Calico hosts (a dockerd in each), as
`Cluster(topologies.load("flat", N), servers=...)` builds it: on 1 server every host is on this
machine (`servers=None`, the baseline); on 3 (`servers="sim:3"`) the hosts are placed in blocks over
three simulated servers (the first is this machine, with etcd), each other server reached over its
one multiplexed ssh connection.  Timed, stage by stage: the servers' start, the network's build,
etcd with the node zygotes, the dockerds, `calicoctl node run` on every host, every BGP session
Established, one workload a host (`docker run` on the Calico network: each host gets a block), every
host's kernel with every other host's block route, and the stop.  Measured once routes are
everywhere: the PSS of each server's processes (found in its own PID namespace; the first server's
are this machine's: the controller, etcd and its hosts) and the ssh connections and sessions each
server's sshd serves; the load average beside each row.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from calisim.emulation import sandbox

if __name__ == "__main__":  # imported (by the unit tests of its pure helpers), it only defines them
    sandbox.enter()

from rich.console import Console  # noqa: E402

import topologies  # noqa: E402
from bringup import pss_kib  # noqa: E402  (benchmarks/ is this script's directory)
from report import label_axes, output_path, write_runs  # noqa: E402
from calisim.emulation import Cluster, ClusterError, wait_until  # noqa: E402
from calisim.process import pids  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "servers"
TIMEOUT = 600.0
NETWORK = "net1"
STAGES = ("servers", "network", "etcd_zygotes", "dockerds", "node_runs", "sessions", "workloads", "routes", "stop")
LABELS = {"servers": "servers started", "network": "network built", "etcd_zygotes": "etcd, node zygotes",
          "dockerds": "dockerds", "node_runs": "calicoctl node run", "sessions": "BGP sessions Established",
          "workloads": "a workload a host", "routes": "routes everywhere", "stop": "stop"}


@dataclass
class StageClock:
    """When each stage of one run ended, in seconds from its start: a stage ends when the method
    that does it returns (wrap) or when the benchmark says so (mark)."""

    began: float = field(default_factory=time.monotonic)
    ends: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str) -> None:
        self.ends[stage] = time.monotonic() - self.began

    def wrap(self, owner: object, method: str, stage: str) -> None:
        """owner.method marks stage each time it returns (the cluster's own start, timed from outside)."""
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            try:
                return original(*args, **kwargs)
            finally:
                self.mark(stage)
        setattr(owner, method, timed)


def durations(ends: dict[str, float], order: tuple[str, ...]) -> dict[str, float]:
    """Each stage's own seconds: its end less the end of the stage before it in order."""
    previous, found = 0.0, {}
    for stage in order:
        found[stage] = round(ends[stage] - previous, 2)
        previous = ends[stage]
    return found


def remote_blocks(routes: str) -> set[str]:
    """The destinations of BIRD's routes in `ip -4 route` text that lead somewhere (a host's own
    block is a blackhole or unreachable route: not one learnt from another host)."""
    found = set()
    for line in routes.splitlines():
        words = line.split()
        if "proto" in words and words[words.index("proto") + 1] == "bird" and words[0] not in ("blackhole",
                                                                                                "unreachable"):
            found.add(words[0])
    return found


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def timed_cluster(hosts: int, servers: int, clock: StageClock) -> Cluster:
    cluster = Cluster(topologies.load("flat", hosts), servers=None if servers == 1 else f"sim:{servers}")
    for method, stage in (("_start_servers", "servers"), ("_build_network", "network"),
                          ("_await_server_zygotes", "etcd_zygotes"), ("_start_dockerds", "dockerds")):
        clock.wrap(cluster, method, stage)
    return cluster


def start_workloads(cluster: Cluster) -> None:
    """One busybox on the Calico network on every host (its block's route is what BGP carries)."""
    must(cluster.run(cluster.hosts[0], f"docker network create --driver calico --ipam-driver calico-ipam {NETWORK}"))
    for result in cluster.run_everywhere(f"docker run --net {NETWORK} -tid busybox"):
        must(result)


def routes_everywhere(cluster: Cluster) -> bool:
    """Every host's kernel has a BIRD route to every other host's block (one block a host)."""
    return all(len(remote_blocks(result.stdout)) >= len(cluster.hosts) - 1
               for result in cluster.run_everywhere("ip -4 route"))


def memory_by_server(cluster: Cluster) -> dict[str, float]:
    """MiB of PSS of each server's processes, found in its own PID namespace; what no other server
    holds is the first server's (this machine: the controller, etcd, the hosts placed here)."""
    here = {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()} - {os.getpid()}
    by_server: dict[str, set[int]] = {}
    if cluster.on_servers is not None:
        for server in cluster.on_servers.sim.servers[1:]:
            by_server[server.name] = set(server.processes())
            here -= by_server[server.name]
    first = cluster.on_servers.sim.servers[0].name if cluster.on_servers is not None else "localhost"
    return {name: round(sum(pss_of(pid) for pid in found) / 1024, 1)
            for name, found in {first: here, **by_server}.items()}


def pss_of(pid: int) -> int:
    try:
        return pss_kib(Path(f"/proc/{pid}"))
    except (OSError, ValueError):
        return 0  # gone meanwhile


def ssh_load(cluster: Cluster) -> dict[str, tuple[int, int]]:
    """Each server's ssh connections (one `sshd: root@...` process each) and the sessions on them
    (each a child of its connection's process: a remote shell, a daemon, a forwarded socket's command)."""
    if cluster.on_servers is None:
        return {"localhost": (0, 0)}
    found = {}
    for server in cluster.on_servers.sim.servers:
        connections = [pid for pid in server.processes() if command_line(pid).startswith(b"sshd: root@")]
        found[server.name] = (len(connections), sum(len(pids.children(pid)) for pid in connections))
    return found


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def measure(hosts: int, servers: int) -> dict:
    load = os.getloadavg()
    clock = StageClock()
    with timed_cluster(hosts, servers, clock) as cluster:
        cluster.start_nodes()
        clock.mark("node_runs")
        cluster.wait_for_mesh(timeout=TIMEOUT)
        clock.mark("sessions")
        start_workloads(cluster)
        clock.mark("workloads")
        wait_until(lambda: routes_everywhere(cluster), TIMEOUT, interval=0.5,
                   what="every host's kernel to have every other host's block")
        clock.mark("routes")
        memory, ssh = memory_by_server(cluster), ssh_load(cluster)
        placed = [cluster.server_of(host) for host in cluster.hosts]
        stopping = time.monotonic()
    clock.ends["stop"] = clock.ends["routes"] + time.monotonic() - stopping  # the memory reading is no stage
    stages = durations(clock.ends, STAGES)
    return {"hosts": hosts, "servers": servers, "sessions": hosts * (hosts - 1) // 2,
            **{f"{stage}_s": seconds for stage, seconds in stages.items()},
            "start_to_routes_s": round(clock.ends["routes"], 2),
            "hosts_per_server_max": max(placed.count(name) for name in set(placed)),
            "pss_mib_by_server": memory, "pss_mib_first_server": next(iter(memory.values())),
            "pss_mib_other_server_max": max(list(memory.values())[1:], default=None),
            "ssh_by_server": {name: {"connections": c, "sessions": s} for name, (c, s) in ssh.items()},
            "ssh_sessions_per_server_max": max(s for _, s in ssh.values()),
            "load_1min_at_start": round(load[0], 2), "load_average_at_start": [round(value, 2) for value in load],
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()]}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(16, 5))
    labels = [f"{row['hosts']} hosts\non {row['servers']} server{'s' if row['servers'] > 1 else ''}\n"
              f"load {row['load_1min_at_start']}" for row in rows]
    bottom = [0.0] * len(rows)
    for stage in STAGES:
        values = [row[f"{stage}_s"] for row in rows]
        axes[0].bar(labels, values, bottom=bottom, label=LABELS[stage])
        bottom = [b + v for b, v in zip(bottom, values)]
    label_axes(axes[0], "", "seconds", "start to routes everywhere, then stop, by stage", fontsize=7, ncol=2,
               loc="upper left")
    most = max(len(row["pss_mib_by_server"]) for row in rows)
    for index in range(most):  # each row's servers side by side, centred on its tick
        at = [(i, list(row["pss_mib_by_server"].values())) for i, row in enumerate(rows)]
        at = [(i + (index - (len(values) - 1) / 2) * 0.8 / most, values[index]) for i, values in at
              if index < len(values)]
        axes[1].bar([x for x, _ in at], [mib for _, mib in at], 0.8 / most, color=f"C{index}",
                    label="this machine (controller, etcd, its hosts)" if index == 0 else f"server{index + 1}")
    axes[1].set_xticks(range(len(rows)), labels)
    axes[0].set_ylim(top=max(bottom) * 1.6)  # room for the legend above the bars
    axes[1].set_ylim(top=max(max(row["pss_mib_by_server"].values()) for row in rows) * 1.3)
    label_axes(axes[1], "", "MiB (PSS)", "memory of each server's processes", loc="upper left")
    sessions = [row["ssh_sessions_per_server_max"] for row in rows]
    axes[2].bar(labels, sessions, color="tab:green", label="busiest server")
    label_axes(axes[2], "", "sessions", "ssh sessions a server's sshd serves\n(all on one connection a server)")
    figure.suptitle("calisim: one flat Calico cluster (a dockerd and a workload a host) on 1 and on 3 simulated "
                    "servers, in one run", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[12], help="host counts, one run each (12)")
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 3],
                        help="server counts: 1 is this machine alone, N > 1 simulated (1 3)")
    parser.add_argument("--json", type=output_path, default=str(RESULTS.with_suffix(".json")), help="the runs as JSON")
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")), help="their plot")
    args = parser.parse_args()
    console = Console(width=200)
    rows = []
    for hosts in args.hosts:
        for servers in args.servers:
            with console.status(f"{hosts} hosts on {servers} server{'s' if servers > 1 else ''}"):
                rows.append(measure(hosts, servers))
            console.print(rows[-1])
    columns = ("hosts", "servers", *(f"{stage}_s" for stage in STAGES), "start_to_routes_s", "hosts_per_server_max",
               "pss_mib_first_server", "pss_mib_other_server_max", "ssh_sessions_per_server_max",
               "load_1min_at_start")
    write_runs(console, "one flat Calico cluster on 1 and on 3 simulated servers", columns, rows, args.json, args.png,
               plot)


if __name__ == "__main__":
    main()
