"""A chaos run's report: outages read from the samples, the figures, the tables and the PNG."""

import io
import re

from rich.console import Console

from calisim.chaos import report
from calisim.chaos.engine import ChaosResult, ChaosSpec, Injected, Violation
from calisim.chaos.schedule import FaultEvent


def result_with(violations=()):
    result = ChaosResult(ChaosSpec(7, 20.0, ["link", "bird"]), started=1000.0)
    result.faults = [Injected(FaultEvent(5.0, "link", "host2", 3.0), 5.1, 8.1, "done", recovered=1.5),
                     Injected(FaultEvent(9.0, "etcd", "etcd", 1.0), 9.0, 10.0, "done (etcd2 killed)", recovered=0.2),
                     Injected(FaultEvent(12.0, "bird", "host1", 0.0), 12.0, 12.0, "refused: bird is not running")]
    result.samples = {"a->b": [(t / 2, not 10 <= t < 17) for t in range(40)], "b->a": [(t / 2, True) for t in range(40)]}
    result.churn = [{"at": 6.0, "action": "run", "host": "host1", "name": "chaos-c1", "ok": True, "fault": "link host2"}]
    result.violations = list(violations)
    return result


def test_outages_run_from_the_first_lost_sample_to_the_next_answered_one():
    samples = [(0.0, True), (0.5, False), (1.0, False), (1.5, True), (2.0, False)]
    assert report.outages(samples) == [(0.5, 1.5), (2.0, 2.0)]
    assert report.outages([(0.0, True)]) == []


def test_the_summary_counts_what_happened():
    figures = report.summary(result_with())
    assert figures["faults_injected"] == 2 and figures["faults_refused"] == 1
    assert figures["longest_outage_s"] == 3.5 and figures["longest_recovery_s"] == 1.5
    assert figures["workloads_created"] == 1 and figures["passed"] is True
    failed = report.summary(result_with([Violation(9.0, "recovery", "a -> b unreachable", "link host2")]))
    assert failed["violations"] == 1 and failed["passed"] is False


def test_the_tables_name_each_fault_pair_and_violation(tmp_path):
    out = io.StringIO()
    report.print_tables(Console(file=out, width=200), result_with([Violation(9.0, "consistency", "10.30.0.1 allocated "
                                                                          "2 times", "link host2")]))
    text = out.getvalue()
    assert re.search(r"│ 1 +│ 5\.1s +│ link +│ host2 +│ 3\.0s +│ 1\.5s +│ done", text) and "refused: bird is not running" in text
    assert "a->b" in text and "3.5s" in text
    assert "10.30.0.1 allocated 2 times" in text and "violations: 1" in text


def test_the_timeline_is_a_png(tmp_path):
    written = report.write_png(result_with([Violation(9.0, "recovery", "x", "link host2")]), tmp_path / "t.png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written.stat().st_size > 10_000
    document = report.document(result_with())
    assert document["outages"]["a->b"] == [(5.0, 8.5)] and document["faults"][0]["recovered_s"] == 1.5
