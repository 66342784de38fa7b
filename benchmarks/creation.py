"""How benchmarks/workloads.py's --hosts run creates its workloads: through each host's own dockerd,
one at a time on each host (as one user per host would), at most --parallel at once over the
cluster, the hosts taken in turn; each `docker run -tid --net net1 busybox` either as the real
docker CLI in the host's shell or as the Python docker SDK does it (`containers.run`: create,
inspect, start on the host's docker.sock), which is what a user scripting thousands of containers
uses, without a CLI process started for each.

A hundred runs at once (one thread a host, as before) only queued a hundred shells, CLIs and
dockerd threads for the machine's two cores: every run then took ~10 s, and the machine's load
stood at the number of hosts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

Run = Callable[[str], None]  # creates the named workload on one host, raising if it could not
IMAGE, NETWORK = "busybox", "net1"


def cli_run(cluster, host: str, must: Callable) -> Run:
    """`docker run` in the host's shell, the real CLI."""
    return lambda name: must(cluster.run(host, f"docker run --net {NETWORK} --name {name} -tid {IMAGE}"))


def sdk_run(cluster, host: str) -> Run:
    """The docker SDK's `containers.run` on the host's dockerd (one client a host, kept)."""
    import docker

    socket = cluster.host_socket(host, cluster.host(host).state_dir / "docker" / "docker.sock")
    client = docker.DockerClient(base_url=f"unix://{socket}", timeout=120)

    def run(name: str) -> None:
        client.containers.run(IMAGE, detach=True, tty=True, stdin_open=True, network=NETWORK, name=name)
    return run


def create_all(runs: dict[str, Run], plan: dict[str, list[str]], parallel: int,
               started: float) -> dict[str, list[float]]:
    """Every host's names created with its run: never two at once on a host, at most parallel at
    once in all, the hosts in turn; the seconds since started at which each returned, by host."""
    finished: dict[str, list[float]] = {host: [] for host in plan}
    turns = deque(host for host, names in plan.items() if names)
    left = sum(len(names) for names in plan.values())
    ready = threading.Condition()
    failures: list[BaseException] = []

    def work() -> None:
        nonlocal left
        while True:
            with ready:
                ready.wait_for(lambda: turns or left == 0 or failures)
                if left == 0 or failures:
                    return
                host = turns.popleft()
            try:
                runs[host](plan[host][len(finished[host])])
            except BaseException as error:
                with ready:
                    failures.append(error)
                    ready.notify_all()
                raise
            with ready:
                finished[host].append(round(time.monotonic() - started, 3))
                left -= 1
                if len(finished[host]) < len(plan[host]):
                    turns.append(host)
                ready.notify_all()

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for worker in [pool.submit(work) for _ in range(parallel)]:
            worker.result()
    return finished
