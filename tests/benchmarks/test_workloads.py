"""The pure helpers of benchmarks/workloads.py's --hosts run (no root: nothing is built): how the
workloads are spread, who pings whom, and the figures computed from the creation times."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "workloads.py"
spec = importlib.util.spec_from_file_location("benchmark_workloads", SCRIPT)
workloads = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = workloads  # its dataclasses look their module up there
spec.loader.exec_module(workloads)  # not as __main__: it defines its functions and enters no sandbox


def test_workloads_are_spread_evenly_the_first_hosts_taking_the_remainder():
    assert workloads.spread(1000, 10) == [100] * 10
    assert workloads.spread(7, 3) == [3, 2, 2]
    assert workloads.spread(2, 3) == [1, 1, 0]


def test_each_hosts_workloads_are_pinged_from_the_first_workload_of_the_next_host():
    placed = {host: [workloads.Placed(host, f"{host}-w{n}", f"10.0.{i}.{n}", 100 * i + n) for n in range(2)]
              for i, host in enumerate(["host1", "host2", "host3"], start=1)}
    probers = workloads.probers_for(placed)
    assert {host: prober.name for host, prober in probers.items()} == {
        "host1": "host2-w0", "host2": "host3-w0", "host3": "host1-w0"}


def test_run_times_come_from_when_each_run_returned_and_merge_in_return_order():
    assert workloads.durations([1.0, 2.5, 2.75]) == [1.0, 1.5, 0.25]
    finished = {"host1": [1.0, 3.0], "host2": [2.0, 2.5, 4.0]}
    assert workloads.merged_runs(finished) == [(1.0, 1.0), (2.0, 2.0), (2.5, 0.5), (3.0, 2.0), (4.0, 1.5)]
    assert workloads.cluster_steps(finished, 2) == [{"workloads": 2, "seconds": 2.0}, {"workloads": 4, "seconds": 3.0},
                                                    {"workloads": 5, "seconds": 4.0}]


def test_the_slowdown_compares_the_median_run_of_the_last_tenth_with_the_first():
    steady = {"host1": [float(n) for n in range(1, 21)]}  # every run 1 s
    assert workloads.last_tenth_over_first(steady) == 1.0
    slowing = {"host1": [sum(range(1, n + 1)) * 1.0 for n in range(1, 21)]}  # the n-th run takes n s
    assert workloads.last_tenth_over_first(slowing) == round(19.5 / 1.5, 2)
    assert workloads.last_tenth_over_first({"host1": [1.0, 2.0]}) is None  # under ten runs: no tenth


def test_a_host_counts_as_all_reachable_only_when_none_is_waiting():
    prober = workloads.Placed("host2", "h2w0", "10.0.2.1", 1)
    waiting = workloads.Reach("host1", prober, ["10.0.1.2"], {"10.0.1.1": 1.5}, [1.5, 2.5, 3.5])
    assert waiting.summary()["all_reachable_s"] is None
    assert waiting.summary()["expected"] == 2 and waiting.summary()["unreachable"] == ["10.0.1.2"]
    done = workloads.Reach("host1", prober, [], {"10.0.1.1": 1.5, "10.0.1.2": 2.25}, [1.5, 2.25])
    assert done.summary() == {"host": "host1", "prober": "host2/h2w0", "round_ends_s": [1.5, 2.25], "reachable": 2,
                              "expected": 2,
                              "all_reachable_s": 2.25, "unreachable": []}
