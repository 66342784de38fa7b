"""IPv4 beside IPv6 on one dual-stack cluster: what a workload measures over each, in the same run.

    python benchmarks/dualstack.py [--repeats 3] [--json PATH] [--png PATH]

two_host with both nodes run with `--ip6` (the IPv4 mesh and bird6's IPv6 one), calico-node's
default pools (192.168.0.0/16 and fd80:24e2:f998:72d6::/64, neither encapsulated: the hosts share
a segment) and an `--ipv6` network; a busybox on host1 probes from inside.  Each repeat:

* the ICMP probe's RTT (20 echoes, kernel timestamps) to a workload on host2 over each version;
* `docker run` on host2 until host1's workload pings the new one over each version (one address
  from each pool: IPAM, Felix's /32 and /128 routes, BIRD's two sessions carrying the blocks);
* two probe streams at once (10 ms apart, one a version) across `fault term host2 bird` (an
  orderly Cease: the peers withdraw at once; calico-node starts BIRD again): each one's longest
  outage.

A table of the repeats, the JSON and a PNG (each measure's runs, IPv4 beside IPv6).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402  (imports after the re-exec into the sandbox)

import topologies  # noqa: E402
from calisim.emulation import Cluster, wait_until  # noqa: E402
from calisim.probes import StreamProbe, probe_from  # noqa: E402
from calisim.scenarios.seed import inspect  # noqa: E402
from report import label_axes, output_path, write_runs  # noqa: E402  (benchmarks/ is this script's directory)
from workloads import must, pings  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "dualstack.json"
SETUP = ("host1$ calicoctl node run --ip6 fd00:3::229", "host2$ calicoctl node run --ip6 fd00:3::228",
         "host1$ docker network create --ipv6 --driver calico --ipam-driver calico-ipam net1",
         "host1$ docker run --net net1 --name source -tid busybox",
         "host2$ docker run --net net1 --name remote -tid busybox")
MEASURES = {"rtt_avg_ms": "ICMP probe RTT, avg of 20", "reachable_s": "docker run on host2 -> host1 pings it",
            "bird_term_outage_ms": "a stream's outage across term host2 bird"}
COLUMNS = ("repeat", *(f"{measure}_v{version}" for measure in MEASURES for version in (4, 6)))


def addresses(cluster: Cluster, host: str, name: str) -> dict[int, str]:
    network = next(iter(inspect(cluster, host, name)["NetworkSettings"]["Networks"].values()))
    return {4: network["IPAddress"], 6: network["GlobalIPv6Address"]}


def time_to_reachable(cluster: Cluster, source: int, name: str, timeout: float = 60.0) -> dict[int, float]:
    """Seconds from `docker run` on host2 until source pings the new workload over each version."""
    started = time.monotonic()
    must(cluster.run("host2", f"docker run --net net1 --name {name} -tid busybox"))
    waiting, reached = addresses(cluster, "host2", name), {}
    while waiting:
        for version, address in list(waiting.items()):
            if pings(source, address):
                reached[version] = round(time.monotonic() - started, 3)
                del waiting[version]
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{name} {waiting} not reachable after {timeout:.0f}s")
    return reached


def outage_across_bird_term(cluster: Cluster, source: int, remote: dict[int, str]) -> dict[int, float]:
    """Each version's longest outage of a stream across `term host2 bird`."""
    streams = {version: StreamProbe(source, address, interval_ms=10, seconds=8) for version, address in remote.items()}
    time.sleep(2)  # the streams under way before the fault
    cluster.faults.term("host2", "bird")
    outages = {version: stream.result().longest_outage_ms for version, stream in streams.items()}
    both_meshes_up(cluster)
    return outages


def both_meshes_up(cluster: Cluster) -> None:
    """Every host's IPv4 and IPv6 session Established (wait_for_mesh counts the IPv4 mesh's)."""
    wait_until(lambda: all(cluster.bgp_established(host) == 2 for host in cluster.hosts), 60, interval=0.2,
               what="both sessions of every host Established")


def repeat(cluster: Cluster, source: int, remote: dict[int, str], number: int) -> dict:
    row: dict = {"repeat": number}
    for version, address in remote.items():
        row[f"rtt_avg_ms_v{version}"] = probe_from(source, "icmp", address, count=20).rtt_avg_ms
    for version, seconds in time_to_reachable(cluster, source, f"new{number}").items():
        row[f"reachable_s_v{version}"] = seconds
    for version, outage in outage_across_bird_term(cluster, source, remote).items():
        row[f"bird_term_outage_ms_v{version}"] = outage
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(MEASURES), figsize=(12, 3.8))
    for axis, measure in zip(axes, MEASURES):
        for offset, version in ((-0.2, 4), (0.2, 6)):
            axis.bar([row["repeat"] + offset for row in rows], [row[f"{measure}_v{version}"] for row in rows],
                     width=0.4, label=f"IPv{version}")
        axis.set_xticks([row["repeat"] for row in rows])
        axis.set_ylim(top=max(row[f"{measure}_v{version}"] for row in rows for version in (4, 6)) * 1.3)
        label_axes(axis, "repeat", measure.rsplit("_", 1)[1], MEASURES[measure], loc="upper center", ncol=2)
    figure.suptitle("two_host, dual stack: IPv4 beside IPv6 in one run", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")))
    args = parser.parse_args()
    console = Console()
    with Cluster(topologies.load("two_host")) as cluster:
        for step in SETUP:
            host, command = step.split("$ ", 1)
            must(cluster.run(host, command))
        both_meshes_up(cluster)
        source = inspect(cluster, "host1", "source")["State"]["Pid"]
        remote = addresses(cluster, "host2", "remote")
        for address in remote.values():
            wait_until(lambda address=address: pings(source, address), 60, interval=0.2, what=f"source -> {address}")
        with console.status(f"{args.repeats} repeats"):
            rows = [repeat(cluster, source, remote, number) for number in range(1, args.repeats + 1)]
    write_runs(console, "two_host dual stack: IPv4 beside IPv6", COLUMNS, rows, args.json, args.png, plot,
               heading=lambda column: column.replace("bird_term_outage", "outage").replace("_", " "))


if __name__ == "__main__":
    main()
