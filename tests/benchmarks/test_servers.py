"""The pure helpers of benchmarks/servers.py (no root: nothing is built): the stages' own seconds,
a stage timed by wrapping the method that does it, and which of a host's routes BGP brought."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # servers.py imports its neighbours (bringup, report) by name
spec = importlib.util.spec_from_file_location("benchmark_servers", BENCHMARKS / "servers.py")
servers = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = servers  # its dataclass looks its module up there
spec.loader.exec_module(servers)  # not as __main__: it defines its functions and enters no sandbox


def test_each_stage_lasts_from_the_end_of_the_one_before():
    ends = {"servers": 1.5, "network": 4.0, "sessions": 4.25}
    assert servers.durations(ends, ("servers", "network", "sessions")) == {"servers": 1.5, "network": 2.5,
                                                                           "sessions": 0.25}


def test_a_wrapped_method_marks_its_stage_when_it_returns_or_raises():
    class Owner:
        def work(self, value):
            if value is None:
                raise ValueError("no value")
            return value * 2

    owner, clock = Owner(), servers.StageClock()
    clock.wrap(owner, "work", "working")
    assert owner.work(21) == 42 and "working" in clock.ends
    del clock.ends["working"]
    try:
        owner.work(None)
    except ValueError:
        pass
    assert clock.ends["working"] >= 0


def test_only_routes_learnt_from_other_hosts_count_as_their_blocks():
    routes = """default via 172.16.255.254 dev host1-eth0
blackhole 192.168.3.0/26 proto bird
192.168.3.1 dev cali0123 scope link
192.168.7.64/26 via 172.16.0.2 dev host1-eth0 proto bird onlink
192.168.9.128/26 via 172.16.0.3 dev tunl0 proto bird onlink
172.16.0.0/16 dev host1-eth0 proto kernel scope link src 172.16.0.1
"""
    assert servers.remote_blocks(routes) == {"192.168.7.64/26", "192.168.9.128/26"}
