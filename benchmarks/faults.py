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
  link tor1-spine1 down for 3 s, then up: the traffic reroutes through spine2;
* on a 3-member etcd cluster (`--etcd-members 3`), the pause a datastore client sees (a client given
  every member, writing a key every 20 ms: the longest wait for an answer) and how long a
  `calicoctl get nodes` started at the fault takes: a member (not the leader) killed; the leader
  killed (a new one elected after 1-2 s of missed heartbeats; a write in flight then waits for
  etcd's request timeout, 5 s + two election timeouts, before it fails); etcd1 frozen (SIGSTOP:
  the connection stays open, the request in flight times out after 10 s and the client connects
  anew); quorum back (the two followers killed, then one started again: from its start to the
  client's next answer).
* a chaos soak (`calisim chaos --topology two_host`, every fault kind, a fixed seed, --soak
  seconds, 600 by default): faults injected, invariant violations, the longest outage of any
  pair and the longest recovery after a heal; its timeline is faults-soak.png beside the JSON.

    python benchmarks/faults.py [--repeat 5] [--only TEXT] [--json PATH] [--soak 600] [--soak-seed 26]
    (also writes a PNG beside the JSON; --only soak: the soak alone, --soak 0: no soak)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from calisim.datastore import Datastore, DatastoreError, Synchronous  # noqa: E402
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


class WriteProbe:
    """A datastore client given every etcd member (their unix sockets), writing one key every
    INTERVAL_MS in a thread of its own: when each write was answered."""

    KEY = "/calisim/benchmark/probe"  # outside /calico/: no agent wakes for it

    def __init__(self, cluster: Cluster):
        self.endpoints = cluster.etcd_unix_endpoints
        self.answered: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()
        wait_until(lambda: self.answered, 10, what="the write probe's first answer")

    def _write(self) -> None:
        with Synchronous(Datastore(self.endpoints)) as ds:
            while not self.stopping.is_set():
                try:
                    ds.put(self.KEY, time.time())
                    self.answered.append(time.monotonic())
                except DatastoreError:
                    pass
                time.sleep(INTERVAL_MS / 1000)

    def answered_after(self, moment: float, timeout: float = 60) -> float:
        """Seconds from moment to the first write answered after it."""
        wait_until(lambda: self.answered[-1] > moment, timeout, interval=0.01, what="a write answered")
        return next(t for t in self.answered if t > moment) - moment

    def longest_wait(self, since: float) -> float:
        """The longest time without an answer from since until the last answer (seconds)."""
        times = [since] + [t for t in self.answered if t > since]
        return max(later - earlier for earlier, later in zip(times, times[1:]))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def etcd_member_kill(cluster: Cluster, leader: bool) -> dict:
    """Kill the leading member, or another; the pause a client sees; the member started again."""
    probe = WriteProbe(cluster)
    killed = time.monotonic()
    if leader:
        member = cluster.faults.signal_leader("kill")
    else:
        member = next(m for m in cluster.topo.etcd_members() if m != cluster.etcd_leader())
        cluster.faults.kill(member, "etcd")
    must(cluster.run("host1", "calicoctl get nodes"))
    calicoctl = time.monotonic() - killed
    probe.answered_after(time.monotonic() + 1)  # a second of answers after calicoctl's
    probe.stop()
    cluster.faults.start(member, "etcd")
    return {"client_pause_s": round(probe.longest_wait(killed), 3), "calicoctl_s": round(calicoctl, 3),
            "bgp_untouched": True}


def etcd_member_frozen(cluster: Cluster) -> dict:
    """SIGSTOP to etcd1, the member a client given every member connects to first: its TCP
    connection stays open, so the client's request times out (10 s) before it connects anew."""
    probe = WriteProbe(cluster)
    stopped = time.monotonic()
    cluster.faults.stop("etcd1", "etcd")
    must(cluster.run("host1", "calicoctl get nodes"))
    calicoctl = time.monotonic() - stopped
    probe.answered_after(time.monotonic() + 1)
    probe.stop()
    cluster.faults.cont("etcd1", "etcd")
    return {"client_pause_s": round(probe.longest_wait(stopped), 3), "calicoctl_s": round(calicoctl, 3),
            "bgp_untouched": True}


def etcd_quorum_back(cluster: Cluster) -> dict:
    """The two followers killed (the leader alone has no quorum), one started: from its start to
    the client's next answer, and to a `calicoctl get nodes` answered."""
    probe = WriteProbe(cluster)
    followers = [m for m in cluster.topo.etcd_members() if m != cluster.etcd_leader()]
    for member in followers:
        cluster.faults.kill(member, "etcd")
    time.sleep(2)
    started = time.monotonic()
    cluster.faults.start(followers[0], "etcd")
    must(cluster.run("host1", "calicoctl get nodes"))
    calicoctl = time.monotonic() - started
    pause = probe.answered_after(started)
    probe.stop()
    cluster.faults.start(followers[1], "etcd")
    return {"client_pause_s": round(pause, 3), "calicoctl_s": round(calicoctl, 3), "bgp_untouched": True}


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
    etcd_members: int = 1
    timers: Timers = Timers()
    target_host: str = "host2"  # the source runs on host1
    setup: str = SETUP  # on host1, once every node runs


BENCHES = {"Calico's": Bench(), "no graceful restart": Bench(timers=Timers(graceful_restart=False)),
           f"hold time {HOLD_TIME} s": Bench(timers=Timers(hold=HOLD_TIME)),
           "fabric": Bench(("fabric",), target_host="host3", setup=NETWORK),
           "etcd cluster": Bench(etcd_members=3)}
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
    "etcd (3 members): a member killed": ("etcd cluster", lambda c: etcd_member_kill(c, leader=False), 5),
    "etcd (3 members): the leader killed": ("etcd cluster", lambda c: etcd_member_kill(c, leader=True), 6),
    "etcd (3 members): etcd1 frozen (SIGSTOP)": ("etcd cluster", etcd_member_frozen, 16),
    "etcd (3 members): quorum back": ("etcd cluster", etcd_quorum_back, 20),
}


OPTIONAL = ("established_s", "withdrawn_s", "client_pause_s", "calicoctl_s")  # figures not every fault has


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
    # a fault that leaves BGP alone (etcd's): its sessions checked, not timed (they never went down)
    untouched = measured.pop("bgp_untouched", False) and every_session_established(cluster)
    bgp = None if untouched else round(established_again(cluster, injected), 3)
    result = probe.result()
    return {"outage_ms": result.longest_outage_ms, "lost": result.sent - result.received, "sent": result.sent,
            "recovered": result.outage_ended is not None or result.received == result.sent,
            "established_s": bgp, **measured}


def measure(bench: Bench, faults: dict, repeat: int, console: Console) -> dict:
    """Every fault of faults on one fresh cluster of bench."""
    results = {}
    with Cluster(topologies.load(*bench.topology, etcd_members=bench.etcd_members), bgp_timers=bench.timers) as cluster:
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
                             "median_lost": statistics.median(r["lost"] for r in runs)}
            for key in OPTIONAL:
                if all(r.get(key) is not None for r in runs):
                    results[name][f"median_{key}"] = statistics.median(r[key] for r in runs)
    return results


SOAK = "chaos soak: every kind on two_host"
SOAK_FIGURES = ("faults_injected", "faults_refused", "workloads_created", "violations", "longest_outage_s",
                "longest_recovery_s")


def soak(seconds: float, seed: int, png: Path) -> dict:
    """`calisim chaos` for seconds on a lab of its own (in a registry of its own: the lab lives in
    this benchmark's sandbox, whose PIDs the machine's registry would take for dead); its summary."""
    with tempfile.TemporaryDirectory(prefix="calisim-soak-") as registry:
        done = subprocess.run([sys.executable, "-m", "calisim", "chaos", "--topology", "two_host", "--seed", str(seed),
                               "--duration", str(seconds), "--png", str(png), "--json"], capture_output=True, text=True,
                              env={**os.environ, "CALISIM_LABS": registry}, timeout=seconds + 900)
    if not done.stdout.strip():
        raise ClusterError(f"calisim chaos failed: {done.stderr.strip()[-2000:]}")
    return {**json.loads(done.stdout)["summary"], "exit_code": done.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--only", default="", help="measure only the faults whose name contains this text")
    parser.add_argument("--soak", type=float, default=600, help="seconds of the chaos soak (0: none)")
    parser.add_argument("--soak-seed", type=int, default=26)
    args = parser.parse_args()
    console = Console(width=150)
    results = {}
    soaked = None
    if args.soak and args.only in SOAK:
        with console.status(f"{SOAK}: {args.soak:.0f} s, seed {args.soak_seed}"):
            soaked = soak(args.soak, args.soak_seed, args.json.with_name(args.json.stem + "-soak.png"))
        console.print(f"{SOAK}, {args.soak:.0f} s, seed {args.soak_seed}: "
                      + ", ".join(f"{key.replace('_', ' ')} {soaked[key]}" for key in SOAK_FIGURES))
    for label, bench in BENCHES.items():
        chosen = {name: (inject, seconds) for name, (wanted, inject, seconds) in FAULTS.items()
                  if wanted == label and args.only in name}
        if chosen:
            results.update(measure(bench, chosen, args.repeat, console))
    # the table's order: each kill beside its variant
    results = {name: results[name] for name in FAULTS if name in results}
    if not results:  # the soak alone
        args.json.write_text(json.dumps({"soak": soaked}, indent=2))
        return
    table = Table(title=f"probe stream host1 -> host2 (fabric: host3) every {INTERVAL_MS} ms across a fault, "
                        f"median of {args.repeat}")
    for column in ("fault", "longest outage (ms)", "probes lost", "BGP Established again (s)",
                   "host1 withdrew after (s)", "etcd client pause (s)", "calicoctl answered after (s)"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    for name, result in results.items():
        optional = [result.get(f"median_{key}") for key in OPTIONAL]
        table.add_row(name, f"{result['median_outage_ms']:.0f}", f"{result['median_lost']:.0f}",
                      *("-" if v is None else f"{v:.2f}" for v in optional))
    console.print(table)
    args.json.write_text(json.dumps({"interval_ms": INTERVAL_MS, "repeat": args.repeat, "faults": results,
                                     "soak": soaked}, indent=2))
    plot(results, args.json.with_suffix(".png"))
    console.print(f"written to {args.json} and {args.json.with_suffix('.png')}")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for axis, key, label, fmt in ((axes[0], "median_outage_ms", "longest outage of the stream, ms (median)", "{:.0f}"),
                                  (axes[1], "median_established_s", "fault -> BGP Established again, s (median)",
                                   "{:.1f}"),
                                  (axes[2], "median_client_pause_s", "etcd client's longest wait, s (median)",
                                   "{:.2f}")):
        values = [results[n].get(key) for n in names]
        bars = axis.barh(names, [0 if v is None else v for v in values])
        # a zero is a label, not a missing bar; a row without the figure says so
        axis.bar_label(bars, labels=["-" if v is None else fmt.format(v) for v in values], padding=2)
        axis.set_xlabel(label)
        axis.invert_yaxis()  # the table's order, top to bottom
        axis.margins(x=0.15)
        axis.set_xlim(left=0)  # all zeros (etcd's faults alone) would otherwise centre the axis on 0
    for axis in axes[1:]:
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=100)

if __name__ == "__main__":
    main()
