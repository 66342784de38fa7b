"""The eBPF impair program's config as the faults write it: drop thresholds spanning the random
numbers, blocked peers' keys laid out as the C struct, and the steps loading it spelt as a
script for a node's server (no root needed)."""

import struct
from pathlib import Path

from calisim.emulation.faults import Faults, threshold
from calisim.emulation.faults.base import Impairment
from calisim.emulation.faults.bpf import BPF_OBJECT, _attach, _detach


def test_thresholds_span_the_random_numbers():
    assert threshold(0) == 0 and threshold(100) == 0xFFFFFFFF
    assert abs(threshold(50) - 0x7FFFFFFF) <= 1


def test_blocked_peer_keys_match_the_c_struct():
    """struct peer { __u32 addr; __u16 port; __u8 mac[6]; }: 12 bytes, address in network order."""
    key = Faults._peer_key("192.168.3.229", 2379)
    assert len(key) == 12 and key[:4] == bytes([192, 168, 3, 229]) and struct.unpack("=H", key[4:6]) == (2379,)
    assert Faults._peer_key(mac="02:00:00:00:00:01") == bytes(6) + bytes([2, 0, 0, 0, 0, 1])



def test_steps_on_another_server_enter_the_node_only_for_tc():
    """bpftool loads and pins on the server itself (its bpffs, its mount namespace); tc attaches
    in the node's network namespace there; an existing clsact qdisc is no failure."""
    pins = Path("/run dir/bpf/tor2-tor2-eth1")
    lines = [step.shell(4242) for step in _attach("tor2-eth1", pins, Impairment(loss=100), False, [bytes(12)])]
    assert lines[0] == f"bpftool prog loadall {BPF_OBJECT} '/run dir/bpf/tor2-tor2-eth1/progs' pinmaps " \
                       "'/run dir/bpf/tor2-tor2-eth1/maps'"
    assert lines[1].startswith("bpftool map update pinned '/run dir/bpf/tor2-tor2-eth1/maps/config' key hex 00")
    assert lines[2].startswith("bpftool map update pinned '/run dir/bpf/tor2-tor2-eth1/maps/blocked'")
    assert lines[3] == "nsenter -t 4242 -n -- tc qdisc add dev tor2-eth1 clsact 2>/dev/null || true"
    assert lines[4:] == [f"nsenter -t 4242 -n -- tc filter replace dev tor2-eth1 {direction} pref 10 handle 1 bpf "
                         f"direct-action pinned '/run dir/bpf/tor2-tor2-eth1/progs/impair_{direction}'"
                         for direction in ("ingress", "egress")]
    assert [step.shell(7) for step in _detach("tor2-eth1")] == [
        f"nsenter -t 7 -n -- tc filter del dev tor2-eth1 {direction} pref 10 2>/dev/null || true"
        for direction in ("ingress", "egress")]
