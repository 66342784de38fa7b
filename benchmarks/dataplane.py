"""Throughput and latency between two workloads on two hosts, per dataplane mode, in one run:
plain routing (a pool without IPIP: the physical limit here) and IPIP with each backend this
machine has (kernel ipip where the module exists, else the userspace backend).

    python benchmarks/dataplane.py [--seconds 5] [--json PATH]

Each mode: iperf3 (one TCP stream) from a workload on host1 to one on host2, and a 20-echo
ICMP probe (scapy, from inside the workload).  Printed as absolute numbers and as ratios to
plain routing.  VXLAN and the eBPF backend are not implemented yet.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from calisim import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from calisim import ipip  # noqa: E402
from calisim.cluster import Cluster, ClusterError, wait_until  # noqa: E402
from calisim.probes import probe_from  # noqa: E402
from calisim.seed import inspect  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "dataplane.json"
MODES = {"plain routing": ("10.20.0.0/16", False), "IPIP": ("10.10.0.0/16", True)}


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def measure_mode(cluster: Cluster, label: str, cidr: str, seconds: int) -> dict:
    network = label.replace(" ", "-").lower()
    must(cluster.run("host1", f"docker network create --driver calico --ipam-driver calico-ipam --subnet {cidr} {network}"))
    must(cluster.run("host1", f"docker run --net {network} --name {network}-1 -d busybox"))
    must(cluster.run("host2", f"docker run --net {network} --name {network}-2 -d busybox"))
    client = inspect(cluster, "host1", f"{network}-1")["State"]["Pid"]
    target = inspect(cluster, "host2", f"{network}-2")
    server_pid = target["State"]["Pid"]
    address = next(iter(target["NetworkSettings"]["Networks"].values()))["IPAddress"]
    wait_until(lambda: probe_from(client, "icmp", address, count=1).received, 60, what=f"{label} to carry traffic")
    rtt = probe_from(client, "icmp", address, count=20)
    server = subprocess.Popen(["nsenter", "-t", str(server_pid), "-n", "--", "timeout", str(seconds + 30),
                               "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report = wait_until(lambda: _iperf(client, address, seconds), 20, interval=0.5, what="iperf3")
    finally:
        server.kill()
        server.wait()
    return {"mode": label, "gbit_s": round(report["end"]["sum_received"]["bits_per_second"] / 1e9, 3),
            "rtt_avg_ms": rtt.rtt_avg_ms, "rtt_min_ms": rtt.rtt_min_ms, "rtt_max_ms": rtt.rtt_max_ms,
            "ttl": rtt.ttl, "received": f"{rtt.received}/{rtt.sent}"}


def _iperf(client_pid: int, address: str, seconds: int) -> dict | None:
    done = subprocess.run(["nsenter", "-t", str(client_pid), "-n", "--", "iperf3", "-c", address, "-t", str(seconds),
                           "-J"], capture_output=True, text=True, timeout=seconds + 30)
    report = json.loads(done.stdout or "{}")
    return report if done.returncode == 0 and "sum_received" in report.get("end", {}) else None  # not listening yet?


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console(width=150)
    backend = ipip.choose_backend()
    with Cluster(topologies.load("two_host"), ipip_backend=backend) as cluster:
        for host in cluster.hosts:
            must(cluster.run(host, "calicoctl node run"))
        cluster.wait_for_mesh(30)
        pools = [{"apiVersion": "v1", "kind": "ipPool", "metadata": {"cidr": cidr},
                  "spec": {"ipip": {"enabled": tunnelled}}} for cidr, tunnelled in MODES.values()]
        must(cluster.run("host1", f"echo '{json.dumps(pools)}' | calicoctl create -f -"))
        rows = []
        for label, (cidr, tunnelled) in MODES.items():
            name = f"IPIP ({backend} backend)" if tunnelled else label
            with console.status(f"measuring {name}"):
                rows.append(dict(measure_mode(cluster, label, cidr, args.seconds), mode=name))
    plain = rows[0]
    table = Table(title=f"two workloads on two hosts, iperf3 {args.seconds} s one stream, 20 ICMP echoes")
    for column in ("mode", "Gbit/s", "ratio", "RTT avg ms", "RTT ratio", "TTL", "received"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["mode"], str(row["gbit_s"]), f"{row['gbit_s'] / plain['gbit_s']:.2f}", str(row["rtt_avg_ms"]),
                      f"{row['rtt_avg_ms'] / plain['rtt_avg_ms']:.2f}", str(row["ttl"]), row["received"])
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    console.print(f"written to {args.json}")
    if any(row["ttl"] != 62 for row in rows):
        sys.exit("a mode did not deliver with the expected ttl 62")


if __name__ == "__main__":
    main()
