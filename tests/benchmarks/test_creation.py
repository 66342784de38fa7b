"""benchmarks/creation.py's driver (no root: the runs are stood in for): every workload created
once, never two at once on a host, never more than --parallel in all, the hosts in turn, and a
failure stops the creation and is raised."""

import importlib.util
import sys
import threading
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "creation.py"
spec = importlib.util.spec_from_file_location("benchmark_creation", SCRIPT)
creation = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = creation
spec.loader.exec_module(creation)


def recording(plan: dict[str, list[str]], fail: str | None = None):
    """Runs that record the order they began in and how many ran at once, overall and by host."""
    lock = threading.Lock()
    began, running, peak = [], {host: 0 for host in plan}, {"all": 0, "host": 0}

    def run_on(host):
        def run(name):
            with lock:
                began.append(name)
                running[host] += 1
                peak["all"] = max(peak["all"], sum(running.values()))
                peak["host"] = max(peak["host"], running[host])
            time.sleep(0.002)
            with lock:
                running[host] -= 1
            if name == fail:
                raise RuntimeError(f"{name} failed")
        return run
    return {host: run_on(host) for host in plan}, began, peak


def test_every_workload_once_one_at_a_time_a_host_parallel_in_all_hosts_in_turn():
    plan = {f"host{h}": [f"h{h}w{n}" for n in range(5 if h < 3 else 2)] for h in range(1, 7)}
    runs, began, peak = recording(plan)
    finished = creation.create_all(runs, plan, 3, time.monotonic())
    assert sorted(began) == sorted(name for names in plan.values() for name in names)
    assert {host: len(times) for host, times in finished.items()} == {host: len(names) for host, names in plan.items()}
    assert all(times == sorted(times) for times in finished.values())
    assert peak == {"all": 3, "host": 1}
    assert began[:6] == [f"h{h}w0" for h in range(1, 7)]  # every host's first before any host's second


def test_a_failed_run_stops_the_creation_and_is_raised():
    plan = {f"host{h}": [f"h{h}w{n}" for n in range(20)] for h in range(1, 4)}
    runs, began, _ = recording(plan, fail="h2w1")
    with pytest.raises(RuntimeError, match="h2w1 failed"):
        creation.create_all(runs, plan, 2, time.monotonic())
    assert len(began) < 60
