"""The private namespaces every calisim world lives in.

The machine's own network namespace has a real uplink: a packet sent from it to an emulated
address (10.x, 192.168.x) would leave the machine.  So every run goes on in fresh namespaces, as
``unshare --net --mount --pid --fork --mount-proc --kill-child`` makes them: a network namespace
holding only ``lo``, a private mount table, and a PID namespace whose init reaps orphans and, by
exiting, makes the kernel kill anything a crashed run left behind.  A run of the command line
forks into them (``enter_fresh``: its imports and checked input go along); a script re-executes
itself there (``enter``, whose init is this module's ``main``).

``snapshot`` records what a namespace looks like, and a checksum of the machine's /etc, so a
test can prove a run left its caller's namespace and the machine's files untouched.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from ..process.pids import children

SANDBOX_ENV = "CALISIM_SANDBOX"  # = inode of the sandbox's network namespace
FRESH_ENV = "CALISIM_SANDBOX_FRESH"  # set for the sandbox init's direct child only
MACHINE_NETNS_ENV = "CALISIM_MACHINE_NETNS"  # an open descriptor of the machine's network namespace: for the run

EMULATION = "lab"  # the sandbox's own side as a host name (Cluster.run, transcripts' `lab$`): never a host's
UNSHARE = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child"]


class SandboxError(RuntimeError):
    """calisim cannot build its private namespace (or was asked to run outside it)."""


_machine_netns: int | None = None  # this process's descriptor of the machine's network namespace, once taken


def netns_id() -> str:
    return str(os.stat("/proc/self/ns/net").st_ino)


def in_private_namespace() -> bool:
    return os.environ.get(SANDBOX_ENV) == netns_id()


def _run_in_fresh_sandbox(argv: list[str]) -> NoReturn:
    """Run argv in fresh namespaces and exit with its code.

    This process stays behind in the caller's namespace only to wait and to pass SIGTERM/SIGHUP
    on to the sandbox's init (unshare itself blocks them while it waits).  Ctrl-C needs no help:
    the terminal sends it to the whole process group, the run included.
    """
    if os.geteuid() != 0:
        raise SandboxError("calisim needs root to create its private network namespace (run it with sudo)")
    os.environ.pop(SANDBOX_ENV, None)
    os.environ.pop(FRESH_ENV, None)
    command = [*UNSHARE, "--", sys.executable, "-m", "calisim.emulation.sandbox", "--", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    machine = hand_over_machine_netns(os.environ)
    try:
        unshare = subprocess.Popen(command, pass_fds=(machine,))
    except OSError as error:
        raise SandboxError(f"cannot run unshare: {error}") from error
    os.close(machine)

    def forward(signum: int, _frame: object) -> None:
        for pid in children(unshare.pid):
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = unshare.wait()
    os._exit(code if code >= 0 else 128 - code)


def reexecuted() -> bool:
    """This process is a command re-executed in the fresh sandbox made for it (``enter`` has yet
    to return): its command line was checked before, outside, where the machine's network is."""
    return os.environ.get(FRESH_ENV) == netns_id() and in_private_namespace()


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
PR_SET_PDEATHSIG = 1


def _libc_call(name: str, *args: object) -> None:
    """A libc call that returns 0 on success (unshare, mount), OSError otherwise."""
    if getattr(_libc, name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def mount_memory(path: Path) -> Path:
    """A tmpfs mounted on path, in the sandbox's private mount table (once: already mounted, it is
    kept): what is written there lives in memory and goes with the sandbox, no disk's sync waited on."""
    if not in_private_namespace():
        raise SandboxError(f"not mounting {path} outside calisim's sandbox")
    path.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(path):
        _libc_call("mount", b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0700")
    return path


def unmount_memory(path: Path) -> None:
    """Give back the memory of a tmpfs that mount_memory made (nothing if path is no mount)."""
    if os.path.ismount(path):
        _libc_call("umount2", str(path).encode(), 0)


def enter_fresh() -> None:
    """Go on in a sandbox made for this process alone, what ``unshare --net --mount --pid --fork
    --mount-proc --kill-child`` would make, without executing anything: this process moves into
    the fresh network and mount namespaces and forks the PID namespace's init, which forks the
    run, which returns from here with every module and every checked input this process had.
    This process stays behind only to pass SIGTERM/SIGHUP on and to exit with the run's code.
    (Re-executing the command line there started two interpreters more, the init's and the
    run's, and imported the command line again: 0.25 s of the seed demo on a quiet machine.)"""
    if os.geteuid() != 0:
        raise SandboxError("calisim needs root to create its private network namespace (run it with sudo)")
    machine = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _libc_call("unshare", CLONE_NEWNET | CLONE_NEWNS)
        _libc_call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)  # nothing mounted here propagates out
        _bring_up_loopback()
        _libc_call("unshare", CLONE_NEWPID)  # last: the next process forked is the namespace's init
    except (OSError, subprocess.CalledProcessError) as error:
        os.close(machine)
        raise SandboxError(f"cannot make the run's private namespaces: {error}") from None
    os.environ.pop(FRESH_ENV, None)
    os.environ[SANDBOX_ENV] = netns_id()
    sys.stdout.flush()
    sys.stderr.flush()
    init = os.fork()
    if init == 0:
        _become_init_of_run(machine)
        return  # in the run
    os.close(machine)
    _exit_with(init)


def _become_init_of_run(machine: int) -> None:
    """In the PID namespace's first process: its own /proc, then fork the run (which returns) and
    reap until it ends (never returns).  Killed with the process that forked it, as unshare's
    --kill-child has it: the kernel then kills the whole namespace."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        _libc_call("mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    except OSError as error:
        print(f"calisim sandbox: cannot mount /proc: {error}", file=sys.stderr)
        os._exit(1)
    run = os.fork()
    if run == 0:
        global _machine_netns
        _machine_netns = machine  # the run's alone: its children neither inherit it nor see its number
        return
    os.close(machine)
    os._exit(_reap_until(run))


def _exit_with(init: int) -> NoReturn:
    """The process left in the caller's PID namespace: pass termination signals to the init, and
    exit with its code (128 + the signal that ended it, if one did)."""
    def forward(signum: int, _frame: object) -> None:
        os.kill(init, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the run directly (same process group)
    _, status = os.waitpid(init, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def hand_over_machine_netns(environment) -> int:
    """An open descriptor of this process's network namespace (the machine's), named in environment
    for a sandbox about to be made: its command passes it (pass_fds) and then closes it here."""
    machine = os.open("/proc/self/ns/net", os.O_RDONLY)
    environment[MACHINE_NETNS_ENV] = str(machine)
    return machine


def take_machine_netns() -> None:
    """Keep the descriptor of the machine's network namespace the sandbox's init handed over,
    for this process alone (its children neither inherit it nor see its number)."""
    global _machine_netns
    handed = os.environ.pop(MACHINE_NETNS_ENV, None)
    if handed is not None and handed.isdigit():
        _machine_netns = int(handed)
        os.set_inheritable(_machine_netns, False)


def machine_netns() -> str:
    """A path to the network namespace of the machine this sandbox was made on: real servers'
    underlay VXLAN is made from there into the sandbox (its UDP socket on the machine's uplink,
    the device never in the machine's namespace), and the real ssh to them runs there."""
    if _machine_netns is None:
        raise SandboxError("this process holds no handle on the machine's network namespace: real servers need "
                           "a run started by `calisim` or by calisim.emulation.sandbox.enter() from outside a sandbox")
    return f"/proc/{os.getpid()}/fd/{_machine_netns}"


def enter(argv: list[str] | None = None) -> None:
    """Make sure this process runs in some calisim sandbox; a script may call this first thing.

    argv is the whole command to re-execute; by default this interpreter's own command line.
    """
    if os.environ.pop(FRESH_ENV, None) == netns_id() and in_private_namespace():
        take_machine_netns()
    if in_private_namespace():
        return
    _run_in_fresh_sandbox(argv if argv is not None else [sys.executable, *sys.orig_argv[1:]])


def require() -> None:
    if not in_private_namespace():
        raise SandboxError(
            "refusing to build an emulated network outside calisim's private namespace: "
            "run through `calisim ...` or call calisim.emulation.sandbox.enter() first")


def _bring_up_loopback() -> None:
    """iproute2's `ip`, not pyroute2: this is every run's init, and importing pyroute2 here (~0.1-0.2 s)
    delayed the start of the run it execs."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def _run_as_init(argv: list[str]) -> int:
    """PID 1 of the sandbox: start argv, forward termination signals, reap every orphan."""
    os.environ[SANDBOX_ENV] = netns_id()
    machine = os.environ.pop(MACHINE_NETNS_ENV, None)
    _bring_up_loopback()
    child = os.fork()
    if child == 0:
        os.environ[FRESH_ENV] = netns_id()
        if machine is not None:
            os.environ[MACHINE_NETNS_ENV] = machine
        try:
            os.execvp(argv[0], argv)
        except OSError as error:
            print(f"calisim sandbox: cannot run {argv[0]}: {error}", file=sys.stderr)
        os._exit(127)
    if machine is not None and machine.isdigit():
        os.close(int(machine))  # the run's alone
    return _reap_until(child)


def _reap_until(child: int) -> int:
    """As the init: forward termination signals to child and reap every orphan until child exits;
    its exit code (128 + the signal that ended it, if one did)."""
    def forward(signum: int, _frame: object) -> None:
        os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    # Ctrl-C reaches the child directly (same process group); init must survive it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def snapshot() -> dict[str, object]:
    """What a network namespace looks like (links, addresses, routes, rules, qdiscs, netns,
    sysctls) and the machine's /etc."""
    from pyroute2 import IPRoute

    def strip(messages, drop=("IFLA_STATS", "IFLA_STATS64", "IFLA_AF_SPEC", "IFLA_XDP",
                              "IFA_CACHEINFO", "RTA_CACHEINFO", "IFLA_PROTINFO", "TCA_STATS",
                              "TCA_STATS2", "TCA_XSTATS", "IFLA_CARRIER_CHANGES",
                              "IFLA_CARRIER_UP_COUNT", "IFLA_CARRIER_DOWN_COUNT")):
        rows = []
        for msg in messages:
            attrs = sorted((name, repr(value)) for name, value in msg["attrs"] if name not in drop)
            fields = sorted((k, repr(v)) for k, v in msg.items() if k not in ("attrs", "header"))
            rows.append(repr((fields, attrs)))
        return sorted(rows)

    with IPRoute() as ipr:
        state: dict[str, object] = {
            "links": strip(ipr.get_links()),
            "addresses": strip(ipr.get_addr()),
            "routes": strip(ipr.route("dump")),  # every family and table
            "rules": strip(ipr.get_rules(family=2) + ipr.get_rules(family=10)),
            "qdiscs": strip(ipr.get_qdiscs()),
        }
    netns_dir = Path("/run/netns")
    state["netns"] = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.is_dir() else []
    sysctls = {}
    for pattern in ("ipv4/ip_forward", "ipv4/conf/*/forwarding", "ipv4/conf/*/proxy_arp",
                    "ipv4/conf/*/rp_filter", "ipv4/neigh/default/*", "ipv6/conf/*/forwarding"):
        for path in sorted(Path("/proc/sys/net").glob(pattern)):
            try:
                sysctls[str(path)] = path.read_text().strip()
            except OSError:
                continue
    state["sysctls"] = sysctls
    state["etc"] = etc_checksum()
    return state


def etc_checksum(root: Path = Path("/etc")) -> str:
    """A SHA-256 of the machine's /etc (every entry's path, type, mode, and its contents or link
    target): a run's hosts see /etc through views of their own, so it must never change."""
    digest = hashlib.sha256()
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(subdirectories + files):
            path = Path(directory) / name
            try:
                mode = path.lstat().st_mode
                content = (os.readlink(path).encode() if stat.S_ISLNK(mode)
                           else path.read_bytes() if stat.S_ISREG(mode) else b"")
            except OSError:  # unreadable without root, or gone meanwhile: its name still counts
                mode, content = 0, b""
            digest.update(f"{path.relative_to(root)}\0{mode:o}\0".encode() + hashlib.sha256(content).digest())
    return digest.hexdigest()


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] != "--":
        sys.exit("usage: python -m calisim.emulation.sandbox -- COMMAND [ARGS...] "
                 "(run by calisim itself under unshare)")
    if os.getpid() != 1:
        sys.exit("calisim.emulation.sandbox must run as PID 1 of a fresh PID namespace")
    sys.exit(_run_as_init(sys.argv[2:]))


if __name__ == "__main__":
    main()
