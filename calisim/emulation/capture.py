"""Packet capture in a lab (`calisim capture`): which network namespace a NODE[:IFACE] names, and
the tcpdump that captures there.

A target is a host, router or reflector (``host1``, ``tor1``, ``rr1``), or a container on a
Calico host (``host1/workload-A``), and optionally one of its interfaces (``:cali0``; ``any``
when left out).  The lab answers ``locate`` (the namespace's process in the lab and its
interfaces); the caller then runs tcpdump in that network namespace only, reaching it through
the lab's own ``/proc`` (``/proc/LAB_PID/root/proc/PID/ns/net``): tcpdump stays in the caller's
mount and PID namespaces, so it writes to the caller's files and ends with the caller's Ctrl-C,
and nothing is added to the machine's network namespace.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass

from .cluster import ClusterError

ANY = "any"  # tcpdump's pseudo-interface: every interface of the namespace
TARGET = re.compile(r"^(?P<node>[A-Za-z0-9_.-]+)(?:/(?P<container>[A-Za-z0-9][A-Za-z0-9_.-]*))?"
                    r"(?::(?P<interface>[A-Za-z0-9_.@-]{1,15}))?$")


@dataclass(frozen=True)
class Target:
    node: str
    container: str | None = None
    interface: str = ANY

    @classmethod
    def parse(cls, text: str) -> "Target":
        match = TARGET.match(text)
        if not match:
            raise ValueError(f"capture: {text!r} is not NODE[:IFACE] or HOST/CONTAINER[:IFACE] "
                             f"(e.g. host1:tunl0, host1/workload-A:cali0)")
        return cls(match["node"], match["container"], match["interface"] or ANY)

    @property
    def where(self) -> str:
        return f"{self.node}/{self.container}" if self.container else self.node


def locate(cluster, node: str, container: str | None = None) -> dict:
    """The lab's side: the PID (in the lab) of a process in the target's network namespace and
    the interfaces there; ClusterError, one line, for a node or container that is not there."""
    pid = cluster.host(node).pid
    if container:
        pid = container_pid(cluster, node, container)
    listed = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", "ip", "-j", "link", "show"],
                            capture_output=True, text=True, timeout=20)
    if listed.returncode != 0:
        raise ClusterError(f"cannot list the interfaces of {node}{'/' + container if container else ''}: "
                           f"{listed.stderr.strip()}")
    return {"pid": pid, "interfaces": [link["ifname"] for link in json.loads(listed.stdout)]}


def container_pid(cluster, host: str, container: str) -> int:
    """The PID of a running container, as its host's docker CLI reports it."""
    if host not in cluster.hosts:
        raise ClusterError(f"{host} is not a Calico host: it runs no containers")
    shown = cluster.run(host, f"docker inspect --format '{{{{.State.Pid}}}}' {shlex.quote(container)}", timeout=30)
    if shown.rc != 0:
        said = (shown.stderr or shown.stdout).strip().splitlines() or ["docker inspect failed"]
        raise ClusterError(f"{host} has no container {container!r} ({said[-1]})")
    pid = int(shown.stdout.strip() or 0)
    if pid <= 0:
        raise ClusterError(f"container {container!r} on {host} is not running")
    return pid


def tcpdump_argv(lab_pid: int, pid: int, interface: str, text: bool = False) -> list[str]:
    """tcpdump in the network namespace of pid (a PID in the lab whose PID 1 is lab_pid), writing
    pcap to standard output packet by packet (-U, and --immediate-mode for a live Wireshark), or
    with text, its one-line summaries; a filter expression goes after it."""
    output = ["-n", "-l"] if text else ["-U", "-w", "-"]
    return ["nsenter", f"--net=/proc/{lab_pid}/root/proc/{pid}/ns/net", "--",
            "tcpdump", "-i", interface, "--immediate-mode", *output]
