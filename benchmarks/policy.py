"""Policy: how long a `calicoctl apply` takes to be enforced on every host, and how long one
host takes to program its rules for 10, 100 and 1000 local endpoints.

    python benchmarks/policy.py [--hosts 4 100] [--rounds 5] [--endpoints 10 100 1000] [--json PATH] [--png PATH]

Enforcement, for each --hosts count (issue 25's targets: p50 0.10 s at 4 hosts, 0.5 s at 100): a
flat cluster, one `workload` on net2 per host and a client on net1 in host1.
Each round applies net2's profile with (then without) `allow from tag net1` while the client
makes new TCP connections to every net2 workload, in waves every 5 ms or more (calisim.probes.agreement,
from one prober process kept in the client's namespace, started before the apply), until each
workload agrees with the profile; the time from the apply to the last workload's agreeing is the
round's figure (calicoctl, the etcd write, the watch, Felix's pass: rendering, the delta and its nft
transaction).  A wave's outcome counts at its own moment: a connection made when it is made, one
left unanswered (0.1 s) from when its SYN was sent, so the figure is not the probes' timeout.
Beside it, the time to the last host's Felix log line saying it programmed the change.
Programming: the renderer and `nft -f` on a table for N endpoints (as many again on other hosts in
the tag sets), timed in a throwaway namespace: what Felix loads at start and on its resync timer.
Incremental: one endpoint added to that table and removed again, as Felix applies it (the delta
in its kept libnftables context), 5 times each; nft's CPU and wall time, medians.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from calisim.felix import policy, ruleset  # noqa: E402
from calisim.emulation import Cluster, ClusterError  # noqa: E402
from report import label_axes, output_path  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "policy.json"
PROBE_TIMEOUT = 0.1  # a refused connection is silent (dropped): unanswered this long, its SYN met the rule
PROFILE = {"apiVersion": "v1", "kind": "profile", "metadata": {"name": "net2", "tags": ["net2"]},
           "spec": {"egress": [{"action": "allow"}]}}


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def inspect(cluster: Cluster, host: str, name: str) -> tuple[int, str]:
    fields = must(cluster.run(host, "docker inspect -f '{{.State.Pid}} {{range .NetworkSettings.Networks}}"
                                    "{{.IPAddress}}{{end}}' " + name)).split()
    return int(fields[0]), fields[1]


class Prober:
    """calisim.probes' agreement in one long-lived interpreter inside the client's network namespace,
    a round a line: a fresh probe process a round (an interpreter's start, hundreds of ms on a
    loaded machine) made the polling, not the enforcement, most of the 100-host figure."""

    SCRIPT = ("import json, sys\nfrom calisim.probes import agreement\nfor line in sys.stdin:\n"
              "    round = json.loads(line)\n"
              "    print(json.dumps(agreement(round['destinations'], round['expected'], float(sys.argv[1]),"
              " round['deadline'])), flush=True)\n")

    def __init__(self, pid: int, timeout: float):
        self.process = subprocess.Popen(["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-c", self.SCRIPT,
                                         str(timeout)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def begin(self, destinations: list[str], expected: bool, deadline: float = 60.0) -> None:
        """Start a round: connections in waves until each destination agrees with expected."""
        self.process.stdin.write(json.dumps({"destinations": destinations, "expected": expected,
                                             "deadline": deadline}) + "\n")
        self.process.stdin.flush()

    def agreed(self) -> list[float | None]:
        """The round's moments (time.monotonic) from which each destination agreed, None: never."""
        answer = self.process.stdout.readline()
        if not answer:
            raise ClusterError(f"the prober exited with {self.process.wait()}")
        return json.loads(answer)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def enforcement(hosts: int, rounds: int, console: Console) -> list[float]:
    with Cluster(topologies.load("flat", hosts)) as cluster:
        cluster.start_nodes()
        cluster.wait_for_mesh(60)
        for network in ("net1", "net2"):
            must(cluster.run("host1", f"docker network create --driver calico --ipam-driver calico-ipam {network}"))
        must(cluster.run("host1", "docker run --net net1 --name client -tid busybox"))
        client, _ = inspect(cluster, "host1", "client")
        targets = []
        for index, host in enumerate(cluster.hosts):
            must(cluster.run(host, f"docker run --net net2 --name target{index} -d workload"))
            targets.append(inspect(cluster, host, f"target{index}")[1])
        spec_file = cluster.run_dir.path / "net2.json"
        prober = Prober(client, PROBE_TIMEOUT)
        seconds, programmed = [], []
        for round_number in range(rounds * 2):
            opening = round_number % 2 == 0
            ingress = [{"action": "allow", "source": {"tag": "net2"}}]
            if opening:
                ingress.append({"action": "allow", "source": {"tag": "net1"}})
            spec_file.write_text(json.dumps({**PROFILE, "spec": {**PROFILE["spec"], "ingress": ingress}}))
            with console.status(f"round {round_number + 1}: {'allow' if opening else 'deny'} net1 -> net2"):
                started, since = time.monotonic(), time.time()
                prober.begin(targets, opening)
                must(cluster.run("host1", f"calicoctl apply -f {spec_file}"))
                agreed = prober.agreed()
                if None in agreed:
                    raise ClusterError("policy was not enforced on every host within 60 s")
                seconds.append(max(agreed) - started)
                programmed.append(felix_programmed(cluster, since))
        prober.close()
        return seconds, programmed


def felix_programmed(cluster: Cluster, since: float) -> float:
    """Seconds from since (Unix time) to the last host's Felix saying it programmed its policy
    (its log line, written once the kernel took the transaction): enforcement without the
    probes' own cost (a probe round, with a 0.1 s timeout for what is dropped)."""
    done = []
    for host in cluster.hosts:
        lines = (cluster.run_dir.host(host) / "log" / "node.log").read_text().splitlines()
        stamps = [datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                  for line in lines if "policy programmed" in line]
        done.append(min((stamp for stamp in stamps if stamp >= since), default=float("nan")))
    return max(done) - since


def synthetic(endpoints: int, added: int = 0) -> policy.Model:
    """endpoints local endpoints (and added more) over 10 profiles, as many again on another host."""
    local = [policy.Endpoint("me", f"cali{index:011x}", (f"10.{index // 250}.{index % 250}.1",), (f"net{index % 10}",))
             for index in range(endpoints + added)]
    remote = [policy.Endpoint("other", f"cali{index:011x}", (f"10.200.{index // 250}.{index % 250}",),
                              (f"net{index % 10}",))
              for index in range(endpoints)]
    profiles = {f"net{n}": policy.Profile(f"net{n}", (f"net{n}",), ({"action": "allow", "src_tag": f"net{n}"},),
                                          ({"action": "allow"},)) for n in range(10)}
    return policy.Model(tuple(local + remote), profiles, ("10.0.0.0/8",), ("10.0.0.0/8",))


def programming(endpoints: int) -> dict:
    """Render and load a table for this many local endpoints in a throwaway namespace."""
    model = synthetic(endpoints)
    started = time.perf_counter()
    text = policy.render(model, "me")
    rendered = time.perf_counter()
    done = subprocess.run(["unshare", "--net", "nft", "-f", "-"], input=text, capture_output=True, text=True)
    loaded = time.perf_counter()
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return {"endpoints": endpoints, "render_ms": round((rendered - started) * 1000, 1),
            "nft_ms": round((loaded - rendered) * 1000, 1), "rules_kib": round(len(text) / 1024, 1)}


# Run in a throwaway namespace: the table for N endpoints loaded as Felix does at start, then one
# endpoint added and removed again, ROUNDS times, each change timed inside Felix's nft context.
DELTA_CHILD = """
import json, sys, time
from calisim.felix import policy, ruleset
texts = json.load(sys.stdin)
tables = ruleset.Tables(policy.REPLACE)
tables.apply(texts["before"])
run, samples, kind = tables.nft.run, {"add": [], "remove": []}, "add"

def timed(script):
    cpu, wall = time.thread_time(), time.perf_counter()
    run(script)
    samples[kind].append(((time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000))

tables.nft.run = timed
for _ in range(texts["rounds"]):
    for kind, text in (("add", texts["after"]), ("remove", texts["before"])):
        assert tables.apply(text) == "delta"
print(json.dumps(samples))
"""


def incremental(endpoints: int, rounds: int = 5) -> dict:
    """One endpoint added to (and removed from) a table of this many: the pass's Python (render,
    parse, delta) and its nft transaction (CPU of Felix's thread and wall, medians)."""
    before = policy.render(synthetic(endpoints), "me")
    loaded, model = ruleset.parse(before), synthetic(endpoints, 1)
    started = time.perf_counter()  # what Felix's pass computes: the new table, parsed, diffed with the loaded one
    after = policy.render(model, "me")
    script = ruleset.delta(loaded, ruleset.parse(after))
    computed = time.perf_counter()
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", DELTA_CHILD], capture_output=True, text=True,
                          input=json.dumps({"before": before, "after": after, "rounds": rounds}))
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    samples = json.loads(done.stdout)
    row = {"endpoints": endpoints, "python_ms": round((computed - started) * 1000, 1),
           "delta_lines": len(script.splitlines()), "delta_bytes": len(script),
           "table_kib": round(len(after) / 1024, 1)}
    for kind, pairs in samples.items():
        row[f"{kind}_nft_cpu_ms"] = round(statistics.median(cpu for cpu, _ in pairs), 2)
        row[f"{kind}_nft_wall_ms"] = round(statistics.median(wall for _, wall in pairs), 2)
    return row


DELTA_COLUMNS = {"endpoints": "endpoints", "table_kib": "table KiB", "delta_lines": "delta lines",
                 "python_ms": "render+diff ms", "add_nft_cpu_ms": "add: nft CPU ms",
                 "add_nft_wall_ms": "add: nft wall ms", "remove_nft_cpu_ms": "remove: nft CPU ms",
                 "remove_nft_wall_ms": "remove: nft wall ms"}


def incremental_table(rows: list[dict]) -> Table:
    table = Table(title="one endpoint added / removed: Felix's delta (render + diff in Python, nft in its context)")
    for column in DELTA_COLUMNS.values():
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(row[key]) for key in DELTA_COLUMNS))
    return table


def plot(rows: list[dict], deltas: list[dict], enforced: list[dict], png: Path) -> None:
    """Left: nft per change against endpoints, the whole table (start, resync) beside one
    endpoint's delta; right: each round's enforcement, by the probes and by Felix's log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    counts = [row["endpoints"] for row in rows]
    left.plot(counts, [row["nft_ms"] for row in rows], "o-", label="whole table, nft -f (wall)")
    left.plot(counts, [row["add_nft_wall_ms"] for row in deltas], "s-", label="one endpoint added: delta (wall)")
    left.plot(counts, [row["add_nft_cpu_ms"] for row in deltas], "^-", label="one endpoint added: delta (CPU)")
    left.axhline(5, color="grey", linestyle=":", label="target: 5 ms")
    left.set_xscale("log")
    left.set_yscale("log")
    label_axes(left, "endpoints (as many again on another host)", "ms of nft", "nft per change")
    for row in enforced:
        rounds = range(1, len(row["enforcement_seconds"]) + 1)
        hosts = f"{row['hosts']} hosts"
        right.plot(rounds, row["enforcement_seconds"], "o-", label=f"{hosts}: new connections agree")
        right.plot(rounds, row["programmed_seconds"], "s--", label=f"{hosts}: the last host's Felix programmed it")
    right.axhline(0.1, color="grey", linestyle=":", label="target p50: 0.10 s at 4 hosts")
    right.axhline(0.5, color="black", linestyle=":", label="target p50: 0.5 s at 100 hosts")
    label_axes(right, "round (allow, deny, ...)", "s after calicoctl apply began", "policy apply -> enforced")
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def enforcement_table(enforced: list[dict]) -> Table:
    table = Table(title="calicoctl apply -> enforced on every host (probes agree / the last host's Felix log)")
    for column in ("hosts", "rounds", "probes p50 s", "probes max s", "Felix p50 s", "Felix max s", "load (1 min)"):
        table.add_column(column, justify="right")
    for row in enforced:
        seconds, programmed = row["enforcement_seconds"], row["programmed_seconds"]
        table.add_row(str(row["hosts"]), str(len(seconds)), f"{statistics.median(seconds):.3f}", f"{max(seconds):.3f}",
                      f"{statistics.median(programmed):.3f}", f"{max(programmed):.3f}", str(row["load_average_1min"]))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[4, 100], help="cluster sizes, one row each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--endpoints", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")))
    args = parser.parse_args()
    console = Console(width=150)
    rows = [programming(n) for n in args.endpoints]
    deltas = [incremental(n) for n in args.endpoints]
    enforced = []
    for hosts in args.hosts:
        load = round(os.getloadavg()[0], 2)  # at the start: the machine is shared
        seconds, programmed = enforcement(hosts, args.rounds, console)
        enforced.append({"hosts": hosts, "load_average_1min": load,
                         "enforcement_seconds": [round(s, 3) for s in seconds],
                         "programmed_seconds": [round(s, 3) for s in programmed]})
    table = Table(title="rule programming on one host (render + one nft transaction, private namespace)")
    for column in ("endpoints", "render ms", "nft -f ms", "ruleset KiB", "per endpoint ms"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["endpoints"]), str(row["render_ms"]), str(row["nft_ms"]), str(row["rules_kib"]),
                      f"{(row['render_ms'] + row['nft_ms']) / row['endpoints']:.2f}")
    console.print(table)
    console.print(incremental_table(deltas))
    console.print(enforcement_table(enforced))
    args.json.write_text(json.dumps({"programming": rows, "incremental": deltas, "enforcement": enforced}, indent=2))
    plot(rows, deltas, enforced, args.png)
    console.print(f"written to {args.json} and {args.png}")


if __name__ == "__main__":
    main()
