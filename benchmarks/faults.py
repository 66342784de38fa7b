"""Outages across faults on the seed's cluster (IPIP pool): a probe stream from a workload on host1
to one on host2 (ICMP every 20 ms) while a fault hits host2, and the time from the fault until
every BGP session (of every host and router) is Established again.  Median of --repeat runs per fault.

* BIRD SIGKILL: no Cease, so host1 keeps host2's routes under graceful restart;
* BIRD SIGKILL on a cluster whose BGP sessions have no graceful restart (Timers(graceful_restart=False)):
  host1 drops host2's routes when the TCP session closes, until re-peering;
* BIRD SIGTERM: an orderly Cease: host1 withdraws host2's block at once, until re-peering;
* calico-node SIGKILL: the agent and its BIRD die (as a killed calico/node container), restarted;
* etcd restart (kill + start): the dataplane should not notice;
* link host2-s1 down for 2 s, then up;
* host2 crashed, on a cluster with a 9 s hold time (Calico's is BIRD's 240 s): host1 withdraws
  host2's block when its hold timer runs out (measured), then host2 boots, `calicoctl node run`,
  and the target is re-created at its old address (released first, as Calico's system tests do);
* on the fabric (two racks, two spines; the stream from host1 in rack 1 to host3 in rack 2): the
  link tor1-spine1 down for 3 s, then up: the traffic reroutes through spine2.

    python benchmarks/faults.py [--repeat 5] [--only TEXT] [--json PATH]   (also writes a PNG beside the JSON)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from calisim.emulation import Cluster, ClusterError, wait_until  # noqa: E402
from calisim.node.bird import BirdError, Timers  # noqa: E402
from calisim.probes import StreamProbe  # noqa: E402
from calisim.scenarios.seed import inspect  # noqa: E402
from report import output_path  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "faults.json"
NETWORK = "docker network create --driver calico --ipam-driver calico-ipam net1"
SETUP = ("echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}' "
         "| calicoctl create -f - && " + NETWORK)
INTERVAL_MS = 20
LEAD_SECONDS = 1.5  # the stream runs this long before the fault


def link_flap(cluster: Cluster) -> None:
    cluster.faults.link("host2", "s1", "down")
    time.sleep(2)
    cluster.faults.link("host2", "s1", "up")


def tor_spine_flap(cluster: Cluster) -> None:
    cluster.faults.link("tor1", "spine1", "down")
    time.sleep(3)
    cluster.faults.link("tor1", "spine1", "up")


def etcd_restart(cluster: Cluster) -> None:
    cluster.faults.kill("host1", "etcd")
    cluster.faults.start("host1", "etcd")


HOLD_TIME = 9


def crash_and_recreate(cluster: Cluster) -> dict:
    """Crash host2, time host1's withdrawal, then bring host2 and the target back at its address."""
    target = inspect(cluster, "host2", "target")
    address = next(iter(target["NetworkSettings"]["Networks"].values()))["IPAddress"]
    crashed = time.monotonic()
    cluster.faults.crash("host2")
    while cluster.bgp_established("host1"):
        if time.monotonic() - crashed > HOLD_TIME * 4:
            raise ClusterError(f"host1 still peered with the crashed host2 after {HOLD_TIME * 4} s")
        time.sleep(0.05)
    withdrawn = time.monotonic() - crashed
    cluster.faults.boot("host2")
    must(cluster.run("host2", "calicoctl node run"))
    must(cluster.run("host1", f"calicoctl ipam release --ip={address}"))
    must(cluster.run("host2", f"docker run --net net1 --name target --ip {address} -tid busybox"))
    return {"withdrawn_s": round(withdrawn, 3)}


@dataclass(frozen=True)
class Bench:
    """A cluster the faults are measured on: its topology, BGP settings, and the stream's ends."""

    topology: tuple = ("two_host",)
    timers: Timers = Timers()
    target_host: str = "host2"  # the source runs on host1
    setup: str = SETUP  # on host1, once every node runs


BENCHES = {"Calico's": Bench(), "no graceful restart": Bench(timers=Timers(graceful_restart=False)),
           f"hold time {HOLD_TIME} s": Bench(timers=Timers(hold=HOLD_TIME)),
           "fabric": Bench(("fabric",), target_host="host3", setup=NETWORK)}
FAULTS = {  # name -> (cluster settings, inject, seconds of stream)
    "BIRD SIGKILL (graceful restart)": ("Calico's", lambda c: c.faults.kill("host2", "bird"), 6),
    "BIRD SIGKILL, no graceful restart": ("no graceful restart", lambda c: c.faults.kill("host2", "bird"), 8),
    "BIRD SIGTERM (Cease)": ("Calico's", lambda c: c.faults.term("host2", "bird"), 8),
    "calico-node SIGKILL": ("Calico's", lambda c: c.faults.kill("host2", "calico-node"), 12),
    "etcd restart": ("Calico's", etcd_restart, 5),
    "link host2-s1 down 2 s": ("Calico's", link_flap, 8),
    f"host2 crash (hold {HOLD_TIME} s), boot, node run, target back":
        (f"hold time {HOLD_TIME} s", crash_and_recreate, 45),
    "fabric: link tor1-spine1 down 3 s": ("fabric", tor_spine_flap, 8),
}


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def every_session_established(cluster: Cluster) -> bool:
    """Every BGP session of every Calico host and BGP router Established (a BIRD not up: False)."""
    for name in cluster.hosts + cluster.topo.bgp_routers():
        try:
            sessions = [p for p in cluster.bird(name).protocols() if p.proto == "BGP"]
        except BirdError:
            return False
        if not sessions or not all(p.info.startswith("Established") for p in sessions):
            return False
    return True


def established_again(cluster: Cluster, since: float, timeout: float = 120) -> float:
    """Seconds from since until every BGP session is Established again (after the fault)."""
    time.sleep(0.2)  # let a dying session be seen as down first
    while not every_session_established(cluster):
        if time.monotonic() - since > timeout:
            raise ClusterError(f"BGP not Established {timeout:.0f}s after the fault")
        time.sleep(0.05)
    return time.monotonic() - since


def one_run(cluster: Cluster, source_pid: int, address: str, inject, seconds: float) -> dict:
    probe = StreamProbe(source_pid, address, INTERVAL_MS, seconds)
    time.sleep(LEAD_SECONDS)
    injected = time.monotonic()
    measured = inject(cluster) or {}
    bgp = established_again(cluster, injected)
    result = probe.result()
    return {"outage_ms": result.longest_outage_ms, "lost": result.sent - result.received, "sent": result.sent,
            "recovered": result.outage_ended is not None or result.received == result.sent,
            "established_s": round(bgp, 3), **measured}


def measure(bench: Bench, faults: dict, repeat: int, console: Console) -> dict:
    """Every fault of faults on one fresh cluster of bench."""
    results = {}
    with Cluster(topologies.load(*bench.topology), bgp_timers=bench.timers) as cluster:
        cluster.start_nodes()
        wait_until(lambda: every_session_established(cluster), 120, what="every BGP session Established")
        must(cluster.run("host1", bench.setup))
        must(cluster.run("host1", "docker run --net net1 --name source -tid busybox"))
        must(cluster.run(bench.target_host, "docker run --net net1 --name target -tid busybox"))
        source = inspect(cluster, "host1", "source")["State"]["Pid"]
        networks = inspect(cluster, bench.target_host, "target")["NetworkSettings"]["Networks"]
        address = next(iter(networks.values()))["IPAddress"]
        for name, (inject, seconds) in faults.items():
            with console.status(f"{name}: {repeat} runs"):
                runs = [one_run(cluster, source, address, inject, seconds) for _ in range(repeat)]
            results[name] = {"runs": runs, "median_outage_ms": statistics.median(r["outage_ms"] for r in runs),
                             "median_lost": statistics.median(r["lost"] for r in runs),
                             "median_established_s": statistics.median(r["established_s"] for r in runs)}
            if all("withdrawn_s" in r for r in runs):
                results[name]["median_withdrawn_s"] = statistics.median(r["withdrawn_s"] for r in runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--only", default="", help="measure only the faults whose name contains this text")
    args = parser.parse_args()
    console = Console(width=150)
    results = {}
    for label, bench in BENCHES.items():
        chosen = {name: (inject, seconds) for name, (wanted, inject, seconds) in FAULTS.items()
                  if wanted == label and args.only in name}
        if chosen:
            results.update(measure(bench, chosen, args.repeat, console))
    # the table's order: each kill beside its variant
    results = {name: results[name] for name in FAULTS if name in results}
    table = Table(title=f"probe stream host1 -> host2 (fabric: host3) every {INTERVAL_MS} ms across a fault, "
                        f"median of {args.repeat}")
    for column in ("fault", "longest outage (ms)", "probes lost", "BGP Established again (s)",
                   "host1 withdrew after (s)"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    for name, result in results.items():
        withdrawn = result.get("median_withdrawn_s")
        table.add_row(name, f"{result['median_outage_ms']:.0f}", f"{result['median_lost']:.0f}",
                      f"{result['median_established_s']:.2f}", "-" if withdrawn is None else f"{withdrawn:.2f}")
    console.print(table)
    args.json.write_text(json.dumps({"interval_ms": INTERVAL_MS, "repeat": args.repeat, "faults": results}, indent=2))
    plot(results, args.json.with_suffix(".png"))
    console.print(f"written to {args.json} and {args.json.with_suffix('.png')}")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    for axis, key, label, fmt in ((axes[0], "median_outage_ms", "longest outage of the stream, ms (median)", "%.0f"),
                                  (axes[1], "median_established_s", "fault -> BGP Established again, s (median)",
                                   "%.1f")):
        bars = axis.barh(names, [results[n][key] for n in names])
        axis.bar_label(bars, fmt=fmt, padding=2)  # a zero outage is a label, not a missing bar
        axis.set_xlabel(label)
        axis.invert_yaxis()  # the table's order, top to bottom
        axis.margins(x=0.15)
    axes[1].set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
