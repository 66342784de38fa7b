"""chaos's engine: without a lab, what it injects for each kind, how it heals, when it calls a
finding or a slow recovery a violation; on a live lab (emulation), a 2-minute run with a fixed
seed: the schedule the seed draws, every invariant held, its report and timeline written, the lab
left as it was found."""

import contextlib
import json
import threading
import time

import pytest

from calisim.chaos import engine, schedule
from calisim.chaos.engine import Chaos, ChaosSpec, Workload
from calisim.chaos.schedule import FaultEvent
from calisim.emulation.cluster import CommandResult
from calisim.emulation.lab import LabError

from tests.chaos.conftest import block, store
from tests.conftest import calisim


class FakeLab:
    """Stands in for LabTarget: records faults, answers pings as told, serves ledgers in turn."""

    hosts = ["host1", "host2"]
    uplinks = {"host1": "s1", "host2": "s1"}

    def __init__(self, stores=(), pings_answer=True):
        self.faults, self.stores, self.pings_answer = [], list(stores), pings_answer

    def fault(self, argv):
        if argv[:1] == ["kill"] and argv[-1] == "calico-node" and argv[1] == "host2":
            raise LabError("calico-node is not running in host2")
        self.faults.append(argv)
        return "fault: done"

    def kill_etcd(self):
        self.faults.append(["kill", "--leader", "etcd"])
        return "etcd2"

    def run(self, host, command, timeout=60.0):
        rc = 0 if self.pings_answer or "ping" not in command else 1
        return CommandResult(host, command, rc, "", "", 0.0)

    def inspect(self):
        return {"hosts": [{"name": h, "bgp": [{"state": "Established"}], "established": 1, "workloads": []}
                          for h in self.hosts]}

    @contextlib.contextmanager
    def datastore(self):
        yield self.stores.pop(0) if len(self.stores) > 1 else self.stores[0]


def chaos_on(lab, **spec):
    chaos = Chaos(lab, ChaosSpec(**{"seed": 1, "duration": 30.0, "kinds": list(schedule.KINDS), **spec}))
    chaos.anchors = [Workload("host1", "chaos-host1", 11, "10.30.0.1"), Workload("host2", "chaos-host2", 12,
                                                                                 "10.30.0.65")]
    return chaos


def test_each_kind_is_injected_and_healed_with_calisim_fault_verbs():
    lab = FakeLab()
    chaos = chaos_on(lab)
    for kind in ("link", "loss", "partition", "etcd", "bird"):
        chaos.inject(FaultEvent(0.0, kind, "host2", 0.1 if kind != "bird" else 0.0))
    assert lab.faults == [["link", "host2", "s1", "down"], ["link", "host2", "s1", "up"],
                          ["loss", "host2", "s1", "30"], ["clear", "host2", "s1"],
                          ["partition", "host2"], ["heal", "host2"],
                          ["kill", "--leader", "etcd"], ["start", "etcd2", "etcd"],
                          ["kill", "host2", "bird"]]
    assert [f.outcome for f in chaos.result.faults] == ["done"] * 3 + ["done (etcd2 killed)", "done"]
    assert all(f.recovered is not None for f in chaos.result.faults) and chaos.result.passed


def test_a_refused_fault_is_reported_not_a_violation():
    chaos = chaos_on(FakeLab())
    chaos.inject(FaultEvent(0.0, "calico-node", "host2", 0.0))
    assert chaos.result.faults[0].outcome == "refused: calico-node is not running in host2"
    assert chaos.result.passed


def test_pairs_still_unreachable_after_the_bound_are_a_violation_naming_the_fault():
    chaos = chaos_on(FakeLab(pings_answer=False), recovery=0.2)
    chaos.inject(FaultEvent(0.0, "partition", "host1", 0.1))
    assert chaos.result.faults[0].recovered is None
    [violation] = chaos.result.violations
    assert violation.invariant == "recovery" and "partition host1 healed" in violation.detail
    assert "chaos-host1 -> chaos-host2 unreachable" in violation.detail and violation.fault == "partition host1"


def test_a_finding_seen_twice_in_a_row_is_a_violation_once_and_a_passing_one_is_not(monkeypatch):
    monkeypatch.setattr(engine, "CHECK_SECONDS", 0.01)
    healthy = store(block("10.30.0.0/26", "host1", ["w1"]), affinities=[("host1", "10.30.0.0/26")])
    orphan = store(block("10.30.0.0/26", "host1", ["w1"]))  # the affinity key missing
    lab = FakeLab([healthy, orphan, healthy, orphan, orphan, orphan, healthy])
    chaos = chaos_on(lab)
    thread = threading.Thread(target=chaos.watch)
    thread.start()
    deadline = time.monotonic() + 10
    while len(lab.stores) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    chaos.done.set()
    thread.join()
    assert [v.detail for v in chaos.result.violations] == [
        "block 10.30.0.0/26 is affine to host1 but host1 has no affinity key for it"]


def test_a_watcher_that_fails_is_a_violation_and_a_removal_with_nothing_left_is_skipped():
    lab = FakeLab()
    lab.run = lambda host, command, timeout=60.0: (_ for _ in ()).throw(LabError("the lab at x is gone"))
    chaos = chaos_on(lab)
    chaos.guarded(chaos.stream, *chaos.anchors)
    [violation] = chaos.result.violations
    assert (violation.invariant, violation.detail) == ("watched", "stream chaos-host1 chaos-host2 stopped: "
                                                                  "the lab at x is gone")
    chaos.change(1, schedule.ChurnEvent(1.0, "rm", "host1"))
    assert chaos.result.churn == [] and len(chaos.result.violations) == 1


# -- on a live lab -----------------------------------------------------------------------------
SEED, DURATION = 42, 120  # a schedule with every kind, and no docker rm near its etcd outage (README: the leak)


@pytest.mark.emulation
def test_two_minutes_of_chaos_with_a_fixed_seed_hold_every_invariant(labs, tmp_path):
    png = tmp_path / "timeline.png"
    done = calisim("chaos", "--topology", "two_host", "--seed", str(SEED), "--duration", str(DURATION),
                   "--png", str(png), "--json", timeout=DURATION + 300)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    drawn = schedule.faults(SEED, DURATION, list(schedule.KINDS), ["host1", "host2"], 10, 6)
    assert [(f["kind"], f["host"], f["seconds"]) for f in report["faults"]] == [
        (f.kind, f.host, f.seconds) for f in drawn]  # the seed's schedule, as drawn without a lab
    assert report["summary"]["faults_injected"] >= 4 and report["summary"]["violations"] == 0
    assert report["summary"]["workloads_created"] >= 10 and report["summary"]["workloads_removed"] >= 2
    assert all(f["recovered_s"] is not None for f in report["faults"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "passed: True" in done.stderr  # the tables and figures, on standard error under --json
    assert calisim("ls").stdout.count("\n") == 1  # the run's own lab is down again (only the header)
