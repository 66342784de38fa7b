"""CPU time of a run by kind of process, between two moments (what a phase of a benchmark cost,
and who paid): read from /proc/PID/stat of every process visible here (a benchmark's sandbox has
its own PID namespace, so that is the run and nothing else).

A process counts its own time under its kind, and what it reaped (children that exited) under
"KIND (its commands)": the benchmark's are the commands it ran in the hosts (nsenter,
bash and the docker CLI), dockerd's the helpers it ran, calico-node's `bird -p` and the like.  A
container's shim (cinit's first process) and its PID 1 are "containers" while they run.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KINDS = ("benchmark", "dockerd", "calico-node", "BIRD", "etcd", "zygote", "containers", "host shells", "other")
REAPED = " (its commands)"  # appended to a kind: the time of its children that exited


def kind_of(comm: str, cmdline: str, parent_comm: str, own: bool) -> str:
    """A process's kind, from its name, command line and its parent's name (calico-node holds the
    libnetwork plugins, IPAM, Felix and confd; a container's PID 1 is cinit's child)."""
    if own:
        return "benchmark"
    if comm in ("bird", "etcd"):
        return {"bird": "BIRD", "etcd": "etcd"}[comm]
    for module, kind in (("calisim.node.zygote", "zygote"), ("calisim.node", "calico-node"),
                         ("calisim.docker", "dockerd")):
        if module in cmdline:
            return kind
    if "cinit" in (comm, parent_comm):
        return "containers"
    if comm in ("bash", "mnexec", "sh"):
        return "host shells"
    return "other"


def read_processes() -> dict[int, tuple[str, str, int, int, int]]:
    """pid -> (comm, command line, parent pid, own ticks, reaped children's ticks)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (stat[stat.index("(") + 1:stat.rindex(")")], cmdline, int(fields[1]),
                                  int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    return found


def cpu_by_kind() -> Counter:
    """CPU seconds so far by KINDS of every process visible here (own, and reaped children's)."""
    processes = read_processes()
    own_pid = os.getpid()
    seconds: Counter = Counter()
    for pid, (comm, cmdline, parent, own, reaped) in processes.items():
        kind = kind_of(comm, cmdline, processes.get(parent, ("",))[0], pid == own_pid)
        seconds[kind] += own / CLOCK_TICKS
        seconds[kind + REAPED] += reaped / CLOCK_TICKS
    return seconds


def per_item_ms(before: Counter, after: Counter, items: int) -> dict[str, float]:
    """CPU milliseconds each item (a container) cost between two cpu_by_kind readings, by kind,
    and the total; a kind whose processes exited meanwhile unreaped by one seen here is lost."""
    spent = {kind: max(0.0, after[kind] - before[kind]) for kind in after}
    result = {kind: round(1000 * value / items, 1) for kind, value in spent.items() if value > 0}
    return {**result, "total": round(1000 * sum(spent.values()) / items, 1)}
