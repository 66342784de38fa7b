"""The eBPF impair program (calisim/emulation/bpf/impair.bpf.c, built by `make setup`) on a
link's end: it drops, corrupts and duplicates packets where the kernel has no netem, and drops
the traffic of partitioned and crashed hosts.  Its config comes from the faults in force."""

from __future__ import annotations

import shutil
import struct
import subprocess
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
        """Load a fresh copy of the program for intf with its config, or take it off if idle."""
        impairment, drop_all, blocked = self._end_config(intf)
        node, name = intf.node, intf.name
        pins = self.pin_root / f"{intf.node.name}-{name}"
        idle = not (impairment.loss or impairment.corrupt or impairment.duplicate or drop_all or blocked)
        if idle:
            for direction in ("ingress", "egress"):
                servers.in_node(node, "tc", "filter", "del", "dev", name, direction, "pref", str(FILTER_PREF),
                                check=False)
            if pins.exists():
                shutil.rmtree(pins)
            return
        if servers.on_other_server(node):  # its program and maps are pinned in this machine's bpffs
            raise servers.not_yet(node, f"an eBPF impairment of {name}")
        if not BPF_OBJECT.exists():
            raise FaultError(f"{BPF_OBJECT} is missing: run `make setup` to build it")
        self._mount_pin_root()
        if pins.exists():
            shutil.rmtree(pins)
        pins.mkdir()
        _bpftool("prog", "loadall", str(BPF_OBJECT), str(pins / "progs"), "pinmaps", str(pins / "maps"))
        value = struct.pack("=4I", threshold(impairment.loss), threshold(impairment.corrupt),
                            threshold(impairment.duplicate), int(drop_all))
        _bpftool("map", "update", "pinned", str(pins / "maps" / "config"), "key", *_hex(bytes(4)),
                 "value", *_hex(value))
        for key in blocked:
            _bpftool("map", "update", "pinned", str(pins / "maps" / "blocked"), "key", *_hex(key), "value", "1")
        servers.in_node(node, "tc", "qdisc", "add", "dev", name, "clsact", check=False)  # EEXIST when attached before
        for direction in ("ingress", "egress"):
            servers.in_node(node, "tc", "filter", "replace", "dev", name, direction, "pref", str(FILTER_PREF),
                            "handle", "1", "bpf", "direct-action", "pinned",
                            str(pins / "progs" / f"impair_{direction}"))

    def _mount_pin_root(self) -> None:
        from ...felix.ipip import is_bpffs

        self.pin_root.mkdir(exist_ok=True)
        if not is_bpffs(self.pin_root):
            subprocess.run(["mount", "-t", "bpf", "bpf", str(self.pin_root)], check=True, capture_output=True)


def _bpftool(*argv: str) -> None:
    done = subprocess.run(["bpftool", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise FaultError(f"bpftool {argv[0]} {argv[1]}: {done.stderr.strip()[-300:]}")


def _hex(data: bytes) -> list[str]:
    return ["hex", *(f"{byte:02x}" for byte in data)]
