"""The eBPF impair program's config as the faults write it: drop thresholds spanning the random
numbers, and blocked peers' keys laid out as the C struct (no root needed)."""

import struct

from calisim.emulation.faults import Faults, threshold


def test_thresholds_span_the_random_numbers():
    assert threshold(0) == 0 and threshold(100) == 0xFFFFFFFF
    assert abs(threshold(50) - 0x7FFFFFFF) <= 1


def test_blocked_peer_keys_match_the_c_struct():
    """struct peer { __u32 addr; __u16 port; __u8 mac[6]; }: 12 bytes, address in network order."""
    key = Faults._peer_key("192.168.3.229", 2379)
    assert len(key) == 12 and key[:4] == bytes([192, 168, 3, 229]) and struct.unpack("=H", key[4:6]) == (2379,)
    assert Faults._peer_key(mac="02:00:00:00:00:01") == bytes(6) + bytes([2, 0, 0, 0, 0, 1])

