"""Processes by PID: alive or not, which run in a namespace or below a process, and stopping
them with a deadline.  Read from /proc, so they work for any process, a child or not."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

STOP_TIMEOUT = 10.0
PIDFD_BATCH = 256  # pidfds open at once while waiting (far below the usual 1024 descriptors a process)


def alive(pid: int) -> bool:
    """True while pid runs; a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = STOP_TIMEOUT, interval: float = 0.02) -> bool:
    """Wait until pid is gone; False if it still runs after timeout."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def stop(pids: list[int], timeout: float = STOP_TIMEOUT, interval: float = 0.05,
         wait_killed: bool = False) -> list[int]:
    """SIGTERM, wait up to timeout for the processes to go, SIGKILL what is left (returned; with
    wait_killed, waited for up to timeout again).  SIGCONT after the TERM: a process a fault froze
    (SIGSTOP) acts on it only once it runs again.  Every process is signalled before any is
    waited for: many stop in the time of the slowest."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    left = wait_all_gone(pids, time.monotonic() + timeout)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if wait_killed:
        for pid in left:
            wait_gone(pid, timeout, interval)
    return left


def wait_all_gone(pids: list[int], deadline: float) -> list[int]:
    """Those of pids still running at deadline (monotonic).  Woken by each exit through a pidfd
    rather than by polling /proc: a stop that polled every 50 ms lost 25 ms on average a stage,
    and a run's stop has five stages one after another.  PIDFD_BATCH at a time (they were all
    signalled already: the batches wait, together, as long as the slowest process)."""
    left = []
    for first in range(0, len(pids), PIDFD_BATCH):
        left += _wait_batch_gone(pids[first:first + PIDFD_BATCH], deadline)
    return left


def _wait_batch_gone(pids: list[int], deadline: float) -> list[int]:
    poller, watched, unwatched = select.poll(), {}, []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone already
        except OSError:  # out of descriptors: polled instead
            unwatched.append(pid)
            continue
        watched[fd] = pid
        poller.register(fd, select.POLLIN)
    try:
        while watched and time.monotonic() < deadline:
            for fd, _ in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                poller.unregister(fd)
                os.close(fd)
                del watched[fd]
    finally:
        for fd in watched:
            os.close(fd)
    unwatched = [pid for pid in unwatched if not wait_gone(pid, max(0.0, deadline - time.monotonic()))]
    return [pid for pid in watched.values() if alive(pid)] + unwatched


def children(pid: int) -> list[int]:
    """pid's direct children (none once it is gone)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_child(process: subprocess.Popen, timeout: float) -> int | None:
    """The first child of process (e.g. unshare's forked one: a new namespace's PID 1, as this
    namespace numbers it); None if process exits or timeout passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(process.pid)
        if found:
            return found[0]
        if process.poll() is not None:
            return None
        time.sleep(0.01)
    return None


def in_namespace(inode: int, kind: str = "net") -> list[int]:
    """The processes whose namespace of this kind (net, pid, mnt...) has this inode."""
    return in_namespaces({inode}, kind)


def in_namespaces(inodes: set[int], kind: str = "net") -> list[int]:
    """The processes whose namespace of this kind is one of these (one pass over /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / kind).st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def with_environment(variable: str) -> list[int]:
    """The processes (but this one) whose environment holds variable exactly ("NAME=value")."""
    mark = variable.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def descendants(roots: set[int]) -> set[int]:
    """roots and every process below them (containers are children of their host's dockerd)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def kill_net_namespace_of(pid: int) -> int:
    """A crash of the host whose shell is pid: SIGKILL at once to every process in its network
    namespace and below them (containers), but pid itself and this process; back once they are
    gone. How many there were."""
    victims = descendants(set(in_namespace(os.stat(f"/proc/{pid}/ns/net").st_ino))) - {pid, os.getpid()}
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for victim in victims:
        wait_gone(victim)
    return len(victims)


def from_file(path: Path) -> int | None:
    """The PID a pid file names, if that process is alive."""
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None
