"""A chaos run's report: the tables a terminal shows (faults, outages per pair, violations), one
JSON document, and the PNG timeline (faults as bars, each pair's reachability underneath)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .engine import ChaosResult

COLOURS = {"link": "tab:gray", "loss": "tab:orange", "partition": "tab:purple", "bird": "tab:blue",
           "calico-node": "tab:cyan", "etcd": "tab:brown"}
INSTANT_WIDTH = 0.6  # seconds: an instant fault drawn as a thin bar


def outages(samples: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """(began, ended) of each run of unanswered samples: from its first lost sample to the next
    answered one (or the last sample)."""
    found, began = [], None
    for at, answered in samples:
        if not answered and began is None:
            began = at
        elif answered and began is not None:
            found.append((began, at))
            began = None
    if began is not None:
        found.append((began, samples[-1][0]))
    return found


def summary(result: ChaosResult) -> dict:
    """The figures of the run: faults injected, invariant violations, the longest outage."""
    longest = max((end - begin for pair in result.samples.values() for begin, end in outages(pair)), default=0.0)
    return {"seed": result.spec.seed, "duration_s": result.spec.duration,
            "faults_injected": sum(f.outcome.startswith("done") for f in result.faults),
            "faults_refused": sum(not f.outcome.startswith("done") for f in result.faults),
            "workloads_created": sum(c["ok"] for c in result.churn if c["action"] == "run"),
            "workloads_refused": sum(not c["ok"] for c in result.churn if c["action"] == "run"),
            "workloads_removed": sum(c["ok"] for c in result.churn if c["action"] == "rm"),
            "violations": len(result.violations), "longest_outage_s": round(longest, 2),
            "longest_recovery_s": max((f.recovered or 0.0 for f in result.faults), default=0.0),
            "passed": result.passed}


def document(result: ChaosResult) -> dict:
    return {"summary": summary(result), "spec": asdict(result.spec), "started": result.started,
            "faults": [{**asdict(f.event), "began": f.began, "ended": f.ended, "outcome": f.outcome,
                        "recovered_s": f.recovered} for f in result.faults],
            "churn": result.churn, "violations": [asdict(v) for v in result.violations],
            "outages": {pair: outages(samples) for pair, samples in result.samples.items()}}


def print_tables(console: Console, result: ChaosResult) -> None:
    faults = Table("#", "AT", "FAULT", "HOST", "LASTED", "RECOVERED IN", "OUTCOME", title="faults")
    for number, fault in enumerate(result.faults, 1):
        recovered = "-" if fault.recovered is None else f"{fault.recovered:.1f}s"
        faults.add_row(str(number), f"{fault.began:.1f}s", fault.event.kind, fault.event.host,
                       f"{fault.ended - fault.began:.1f}s", recovered, fault.outcome)
    console.print(faults)
    pairs = Table("PAIR", "SAMPLES", "ANSWERED", "OUTAGES", "LONGEST OUTAGE", title="reachability")
    for pair, samples in sorted(result.samples.items()):
        found = outages(samples)
        pairs.add_row(pair, str(len(samples)), str(sum(ok for _, ok in samples)), str(len(found)),
                      f"{max((end - begin for begin, end in found), default=0.0):.1f}s")
    console.print(pairs)
    if result.violations:
        violations = Table("AT", "INVARIANT", "DETAIL", "FAULT IN FORCE", title="invariant violations")
        for violation in result.violations:
            violations.add_row(f"{violation.at:.1f}s", violation.invariant, violation.detail, violation.fault)
        console.print(violations)
    figures = summary(result)
    console.print(", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in figures.items()))


def write_png(result: ChaosResult, path: Path) -> Path:
    """The timeline: one row of fault bars on top, one row a pair underneath (green answered, red lost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pairs = sorted(result.samples)
    figure, axes = plt.subplots(figsize=(12, 2 + 0.4 * len(pairs)))
    labelled = -result.spec.duration
    for fault in result.faults:
        width = max(fault.ended - fault.began, INSTANT_WIDTH)
        refused = not fault.outcome.startswith("done")  # drawn faint and hatched: the lab did not break
        axes.broken_barh([(fault.began, width)], (len(pairs) + 0.1, 0.8), color=COLOURS[fault.event.kind],
                         alpha=0.35 if refused else 1.0, hatch="//" if refused else None)
        if fault.began - labelled > result.spec.duration / 25:  # a long run's labels would overlap
            axes.text(fault.began, len(pairs) + 0.95, fault.event.host, fontsize=7, va="bottom")
            labelled = fault.began
    for row, pair in enumerate(reversed(pairs)):
        samples = result.samples[pair]
        for (at, answered), following in zip(samples, samples[1:] + [(samples[-1][0] + 0.5, True)] if samples else []):
            axes.broken_barh([(at, following[0] - at)], (row + 0.2, 0.6), color="tab:green" if answered else "tab:red")
    for change in result.churn:  # workloads created (^) and removed (v) above the faults
        axes.plot(change["at"], len(pairs) + 1.45, "^" if change["action"] == "run" else "v", markersize=5,
                  color="tab:green" if change["ok"] else "tab:red")
    for violation in result.violations:
        axes.axvline(violation.at, color="black", linestyle=":", linewidth=1)
    axes.set_yticks([row + 0.5 for row in range(len(pairs))] + [len(pairs) + 0.5, len(pairs) + 1.45],
                    labels=list(reversed(pairs)) + ["faults", "workloads"], fontsize=8)
    ends = [fault.ended for fault in result.faults] + [samples[-1][0] for samples in result.samples.values() if samples]
    axes.set_xlim(0, max([result.spec.duration, *ends]))  # slow recoveries push the last faults past --duration
    axes.set_ylim(0, len(pairs) + 1.8)
    axes.set_xlabel("seconds since the start (dotted: an invariant violated)")
    used = sorted({fault.event.kind for fault in result.faults})
    axes.legend(handles=[Patch(color=COLOURS[kind], label=kind) for kind in used]
                + [Patch(color="tab:green", label="answered"), Patch(color="tab:red", label="lost")],
                loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    verdict = "every invariant held" if result.passed else f"{len(result.violations)} invariant violation(s)"
    axes.set_title(f"calisim chaos, seed {result.spec.seed}: {verdict}", loc="left")
    figure.savefig(path, dpi=110, bbox_inches="tight")  # the legend right of the plot
    plt.close(figure)
    return path
