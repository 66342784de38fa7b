"""A dockerd killed and started again with N running containers on a Calico network (host1 of
the seed's cluster), both ways dockerd 1.13 can come back:

* with `"live-restore": true`: the seconds from the start to dockerd answering with every
  container adopted (checked: each still running with the PID it had);
* without it: the seconds to dockerd answering (each container stopped, `--stop-timeout 1`, in
  parallel) and then to every container running again by its `--restart always` policy (new PIDs,
  new endpoints through Calico's plugins).

    python benchmarks/dockerd_restart.py [--containers 10 50] [--json PATH] [--png PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from calisim.emulation import sandbox

if __name__ == "__main__":
    sandbox.enter()

import topologies  # noqa: E402
from calisim.emulation import Cluster, ClusterError, wait_until  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "dockerd_restart.json"
COLUMNS = ("containers", "live_restore_back_s", "stopping_back_s", "policy_all_running_s", "load_average_1min")


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def running_pids(cluster: Cluster) -> dict[str, str]:
    """name -> PID of host1's running containers, as its dockerd reports them."""
    shown = must(cluster.run("host1", "docker ps -q | xargs -r docker inspect -f '{{.Name}} {{.State.Pid}}'"))
    return dict(line.lstrip("/").split() for line in shown.splitlines())


def restarted(cluster: Cluster) -> float:
    """Kill host1's dockerd, start it again: the seconds until it answers."""
    cluster.faults.kill("host1", "dockerd")
    began = time.monotonic()
    cluster.faults.start("host1", "dockerd")
    return round(time.monotonic() - began, 3)


def measure(cluster: Cluster, count: int) -> dict:
    for index in range(count):
        must(cluster.run("host1", f"docker run --net net1 --name c{index} --restart always --stop-timeout 1 "
                                  "-tid busybox"))
    before = running_pids(cluster)
    must(cluster.run("host1", """echo '{"live-restore": true}' > /etc/docker/daemon.json"""))
    live = restarted(cluster)
    if running_pids(cluster) != before:
        raise ClusterError("live-restore: a container was not adopted with the PID it had")
    must(cluster.run("host1", "echo '{}' > /etc/docker/daemon.json"))
    stopping = restarted(cluster)
    began = time.monotonic()
    wait_until(lambda: len(running_pids(cluster)) == count, 120, interval=0.2, what=f"{count} containers running")
    again = round(stopping + time.monotonic() - began, 3)
    if set(running_pids(cluster).values()) & set(before.values()):
        raise ClusterError("without live-restore: a container kept its PID")
    must(cluster.run("host1", "docker rm -f $(docker ps -aq)"))
    return {"containers": count, "live_restore_back_s": live, "stopping_back_s": stopping,
            "policy_all_running_s": again, "load_average_1min": round(os.getloadavg()[0], 2)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from report import label_axes

    figure, axis = plt.subplots(figsize=(6, 4))
    counts = [row["containers"] for row in rows]
    for column, label in (("live_restore_back_s", "live-restore: dockerd back, all adopted"),
                          ("stopping_back_s", "without: dockerd back (containers stopped)"),
                          ("policy_all_running_s", "without: all running again (--restart always)")):
        axis.plot(counts, [row[column] for row in rows], marker="o", label=label)
    label_axes(axis, "running containers on host1", "seconds after the start", "dockerd killed and started again")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    from rich.console import Console

    from report import output_path, write_runs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--json", type=output_path, default=str(RESULTS))
    parser.add_argument("--png", type=output_path, default=str(RESULTS.with_suffix(".png")))
    args = parser.parse_args()
    with Cluster(topologies.load("two_host")) as cluster:
        for host in cluster.hosts:
            must(cluster.run(host, "calicoctl node run"))
        cluster.wait_for_mesh(30)
        must(cluster.run("host1", "docker network create --driver calico --ipam-driver calico-ipam net1"))
        rows = [measure(cluster, count) for count in args.containers]
    write_runs(Console(width=150), "dockerd killed and started again, host1's containers on a Calico network",
               COLUMNS, rows, args.json, args.png, plot)


if __name__ == "__main__":
    main()
