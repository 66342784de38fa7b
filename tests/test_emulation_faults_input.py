"""The fault model's pure parts, without root: percentages, rates, the eBPF program's thresholds
and keys, and the outage arithmetic of the probe stream."""

import os
import struct

import pytest

from calisim.emulation.faults import FaultError, Faults, parse_percent, parse_rate, threshold
from calisim.probes import longest_outage


@pytest.mark.parametrize("value, expected", [(0, 0.0), ("50", 50.0), (100, 100.0), ("12.5", 12.5)])
def test_percentages_between_0_and_100_are_accepted(value, expected):
    assert parse_percent(value, "loss") == expected


@pytest.mark.parametrize("value", [-1, 100.1, "101", "half", None, "5%"])
def test_other_percentages_are_refused_with_one_line(value):
    with pytest.raises(FaultError, match=r"^loss must be a percentage between 0 and 100, not ") as refused:
        parse_percent(value, "loss")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("value, expected", [("10mbit", "10mbit"), ("1.5Gbit", "1.5gbit"), (" 500kbit ", "500kbit"),
                                             ("64kbps", "64kbps")])
def test_rates_in_tc_units(value, expected):
    assert parse_rate(value) == expected


@pytest.mark.parametrize("value", ["10", "fast", "10 mbit", "-5mbit", "0kbit", "10mbit/s", ""])
def test_malformed_rates_are_refused(value):
    with pytest.raises(FaultError, match=r"^malformed rate "):
        parse_rate(value)


def test_thresholds_span_the_random_numbers():
    assert threshold(0) == 0 and threshold(100) == 0xFFFFFFFF
    assert abs(threshold(50) - 0x7FFFFFFF) <= 1


def test_blocked_peer_keys_match_the_c_struct():
    """struct peer { __u32 addr; __u16 port; __u8 mac[6]; }: 12 bytes, address in network order."""
    key = Faults._peer_key("192.168.3.229", 2379)
    assert len(key) == 12 and key[:4] == bytes([192, 168, 3, 229]) and struct.unpack("=H", key[4:6]) == (2379,)
    assert Faults._peer_key(mac="02:00:00:00:00:01") == bytes(6) + bytes([2, 0, 0, 0, 0, 1])


def test_the_longest_outage_runs_from_the_first_lost_probe_to_the_next_answered_one():
    sent = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert longest_outage(sent, {0, 1, 2, 3, 4, 5, 6}, 0.7) == (0.0, None, None)
    assert longest_outage(sent, {0, 3, 4, 5, 6}, 0.7) == (200.0, 0.1, 0.3)
    assert longest_outage(sent, {0, 2, 6}, 0.7) == (300.0, 0.3, 0.6)  # the longer of two
    assert longest_outage(sent, {0, 1}, 0.7) == (500.0, 0.2, None)  # still out when the stream ended


def test_a_frozen_daemon_is_stopped_by_its_sigterm_not_the_kill_after_the_timeout():
    """`fault stop HOST etcd` then Cluster.stop: a daemon that handles SIGTERM (etcd does) acts on
    it only once it runs again; SIGKILL after the timeout would be the only way out otherwise."""
    import signal
    import subprocess
    import sys

    from calisim.process.pids import stop as _terminate

    daemon = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                               "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
                               "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert daemon.stdout.readline() == "ready\n"
    os.kill(daemon.pid, signal.SIGSTOP)
    _terminate([daemon.pid], timeout=30)
    assert daemon.wait(5) == 3  # its own handler ran: not -SIGKILL
