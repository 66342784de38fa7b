"""The eBPF impair program (calisim/emulation/bpf/impair.bpf.c, built by `make setup`) on a
link's end: it drops, corrupts and duplicates packets where the kernel has no netem, and drops
the traffic of partitioned and crashed hosts.  Its config comes from the faults in force."""

from __future__ import annotations

import shlex
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import servers
from .base import FaultError, FaultState, Impairment, netem_available

BPF_OBJECT = Path(__file__).parent.parent / "bpf" / "impair.bpf.o"  # built by `make setup`
FILTER_PREF = 10  # before any other tc filter on the device (eBPF IPIP's decap)
ETCD_CLIENT_PORT = 2379


def threshold(percent: float) -> int:
    """A percentage as a bound on bpf_get_prandom_u32() (the program drops when random <= bound)."""
    return 0 if percent <= 0 else min(0xFFFFFFFF, round(percent / 100 * 0xFFFFFFFF))


class BpfImpairments(FaultState):
    """The program on each impaired link end, loaded afresh whenever what it must do changes."""

    def _end_config(self, intf) -> tuple[Impairment, bool, list[bytes]]:
        """What the program on intf must do: the link's impairment (without netem), whether to
        drop everything, and the blocked peers, from the partitions and crashes of its far end."""
        link = intf.link
        far = link.intf1 if link.intf2 is intf else link.intf2
        impairment = Impairment() if netem_available() else \
            self.links.get(self._link_key(link.intf1.node.name, link.intf2.node.name), Impairment())
        host = far.node.name
        drop_all = host in self.crashed
        blocked: list[bytes] = []
        partition = self.partitions.get(host)
        if partition is not None and not drop_all:
            if partition.etcd:
                blocked += [self._peer_key(self.cluster.topo.host_ip(node), ETCD_CLIENT_PORT)
                            for node in self.cluster.topo.etcd_nodes()]
            elif not partition.peers:
                drop_all = True
            for peer in partition.peers:
                for peer_intf in self._node(peer).intfList():
                    if peer_intf.IP():
                        blocked.append(self._peer_key(peer_intf.IP()))
                    if peer_intf.MAC() and peer_intf.name != "lo":
                        blocked.append(self._peer_key(mac=peer_intf.MAC()))
        return impairment, drop_all, blocked

    @staticmethod
    def _peer_key(ip: str | None = None, port: int = 0, mac: str | None = None) -> bytes:
        import socket

        address = socket.inet_aton(ip) if ip else bytes(4)
        hardware = bytes.fromhex(mac.replace(":", "")) if mac else bytes(6)
        return struct.pack("=4sH6s", address, port, hardware)

    def _apply_bpf(self, intf) -> None:
        """Load a fresh copy of the program for intf with its config, or take it off if idle: here,
        or on the server of intf's node (pinned in that server's own run directory)."""
        impairment, drop_all, blocked = self._end_config(intf)
        node = intf.node
        pins = self.pin_root / f"{node.name}-{intf.name}"
        idle = not (impairment.loss or impairment.corrupt or impairment.duplicate or drop_all or blocked)
        steps = _detach(intf.name) if idle else _attach(intf.name, pins, impairment, drop_all, blocked)
        if servers.on_other_server(node):
            self._apply_there(node, pins, steps, idle)
        else:
            self._apply_here(node, pins, steps, idle)

    def _apply_here(self, node, pins: Path, steps: list[Step], idle: bool) -> None:
        if not idle:
            if not BPF_OBJECT.exists():
                raise FaultError(f"{BPF_OBJECT} is missing: run `make setup` to build it")
            self._mount_pin_root()
        if pins.exists():
            shutil.rmtree(pins)
        if not idle:
            pins.mkdir()
        for step in steps:
            if step.in_node:
                servers.in_node(node, *step.argv, check=not step.may_fail)
            else:
                _bpftool(*step.argv[1:])

    def _apply_there(self, node, pins: Path, steps: list[Step], idle: bool) -> None:
        """The same steps as here, in one shell script on node's server, where calisim (and so
        the program's object) is at the same path; the pins in a bpffs mounted on the server's
        run directory (in its mount namespace: a simulated server's own), unmounted by close."""
        root, pinned, program = (shlex.quote(str(path)) for path in (self.pin_root, pins, BPF_OBJECT))
        lines = ["set -e", f"rm -rf {pinned}"]
        if not idle:
            lines += [f"test -e {program} || {{ echo '{BPF_OBJECT} is missing: run `make setup` there' >&2; exit 1; }}",
                      f"mkdir -p {root}", f'[ "$(stat -f -c %T {root})" = bpf_fs ] || mount -t bpf bpf {root}',
                      f"mkdir {pinned}"]
            self.pinned_on.setdefault(node.server, node)
        lines += [step.shell(node.pid) for step in steps]
        servers.run_script_there(node, "\n".join(lines), f"the eBPF impair program on {node.name}")

    def _mount_pin_root(self) -> None:
        from ...felix.ipip import is_bpffs

        self.pin_root.mkdir(exist_ok=True)
        if not is_bpffs(self.pin_root):
            subprocess.run(["mount", "-t", "bpf", "bpf", str(self.pin_root)], check=True, capture_output=True)


@dataclass(frozen=True)
class Step:
    """One command of loading or taking off the program: bpftool's on the node's machine, or tc's
    in the node's network namespace (may_fail: one whose failure is expected, as EEXIST)."""

    argv: tuple[str, ...]
    in_node: bool = False
    may_fail: bool = False

    def shell(self, pid: int) -> str:
        """The command as a line of a shell script on the node's server (nsenter for the node's)."""
        argv = ("nsenter", "-t", str(pid), "-n", "--", *self.argv) if self.in_node else self.argv
        return shlex.join(argv) + (" 2>/dev/null || true" if self.may_fail else "")


def _attach(name: str, pins: Path, impairment: Impairment, drop_all: bool, blocked: list[bytes]) -> list[Step]:
    """The program loaded and pinned under pins, its maps set, attached to both directions of name."""
    config, blocked_map = str(pins / "maps" / "config"), str(pins / "maps" / "blocked")
    value = struct.pack("=4I", threshold(impairment.loss), threshold(impairment.corrupt),
                        threshold(impairment.duplicate), int(drop_all))
    steps = [Step(("bpftool", "prog", "loadall", str(BPF_OBJECT), str(pins / "progs"), "pinmaps", str(pins / "maps"))),
             Step(("bpftool", "map", "update", "pinned", config, "key", *_hex(bytes(4)), "value", *_hex(value)))]
    steps += [Step(("bpftool", "map", "update", "pinned", blocked_map, "key", *_hex(key), "value", "1"))
              for key in blocked]
    steps.append(Step(("tc", "qdisc", "add", "dev", name, "clsact"), in_node=True, may_fail=True))  # EEXIST: there
    return steps + [Step(("tc", "filter", "replace", "dev", name, direction, "pref", str(FILTER_PREF), "handle", "1",
                          "bpf", "direct-action", "pinned", str(pins / "progs" / f"impair_{direction}")), in_node=True)
                    for direction in ("ingress", "egress")]


def _detach(name: str) -> list[Step]:
    return [Step(("tc", "filter", "del", "dev", name, direction, "pref", str(FILTER_PREF)), in_node=True, may_fail=True)
            for direction in ("ingress", "egress")]


def _bpftool(*argv: str) -> None:
    done = subprocess.run(["bpftool", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise FaultError(f"bpftool {argv[0]} {argv[1]}: {done.stderr.strip()[-300:]}")


def _hex(data: bytes) -> list[str]:
    return ["hex", *(f"{byte:02x}" for byte in data)]
