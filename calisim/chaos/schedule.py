"""The chaos schedule: which fault, on which host, when and for how long, and when a workload is
created or removed, all drawn from one seed (``random.Random(seed)``) and nothing else, so the
same seed, duration, kinds and hosts give the same schedule, before anything runs."""

from __future__ import annotations

import random
from dataclasses import dataclass

# kind -> what it does (the `calisim fault` verbs it uses; an instant fault heals itself)
KINDS = {
    "link": "the host's uplink down, then up",
    "loss": "30% loss on the host's uplink, then cleared",
    "partition": "the host cut off in the underlay, then healed",
    "bird": "BIRD SIGKILLed (calico-node starts it again)",
    "calico-node": "calico-node SIGKILLed (started again with its options)",
    "etcd": "etcd killed (with --etcd-members 3|5: the leader), then started again",
}
INSTANT = {"bird", "calico-node"}  # they heal themselves: the schedule only records a moment
WARMUP = 5.0  # seconds of calm before the first fault: every stream has answered once


class ChaosError(ValueError):
    """Bad chaos input: one line for the user, nothing started."""


@dataclass(frozen=True)
class FaultEvent:
    """One fault of the schedule: kind on host from ``at`` for ``seconds`` (0 for an instant one),
    both relative to the start of the run."""

    at: float
    kind: str
    host: str
    seconds: float


@dataclass(frozen=True)
class ChurnEvent:
    """A workload created (``run``) on host, or the oldest churned one removed (``rm``)."""

    at: float
    action: str
    host: str


def parse_kinds(text: str) -> list[str]:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ChaosError(f"--kinds: unknown fault kind {', '.join(map(repr, unknown)) or repr(text)} "
                         f"(known: {', '.join(KINDS)})")
    return list(dict.fromkeys(kinds))


def parse_seed(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ChaosError(f"--seed must be a whole number, not {text!r}") from None


def parse_seconds(text: str, option: str) -> float:
    """A positive number of seconds: `120`, `120s`, `2m`."""
    scale = 60.0 if text.endswith("m") else 1.0
    try:
        value = float(text.removesuffix("m").removesuffix("s")) * scale
    except ValueError:
        raise ChaosError(f"{option} must be a number of seconds (120, 120s, 2m), not {text!r}") from None
    if not value > 0:
        raise ChaosError(f"{option} must be more than 0 seconds, not {text!r}")
    return value


def faults(seed: int, duration: float, kinds: list[str], hosts: list[str], every: float,
           lasting: float) -> list[FaultEvent]:
    """One fault at a time: a gap of every/2..every*3/2 seconds, then kind and host drawn, lasting
    lasting/2..lasting seconds; none starts later than lasting before the end (it must heal in time)."""
    draw = random.Random(f"faults:{seed}")
    events, at = [], WARMUP
    while True:
        at += draw.uniform(every / 2, every * 3 / 2)
        kind, host = draw.choice(kinds), draw.choice(hosts)
        host = "etcd" if kind == "etcd" else host  # whichever member leads when it comes (etcd alone: its host)
        seconds = 0.0 if kind in INSTANT else round(draw.uniform(lasting / 2, lasting), 1)
        if at + seconds > duration - lasting:
            return events
        events.append(FaultEvent(round(at, 1), kind, host, seconds))
        at += seconds


def churn(seed: int, duration: float, hosts: list[str], every: float = 4.0) -> list[ChurnEvent]:
    """Workloads created and removed meanwhile: about one change every seconds, two runs for one rm."""
    draw = random.Random(f"churn:{seed}")
    events, at, alive = [], WARMUP, 0
    while True:
        at += draw.uniform(every / 2, every * 3 / 2)
        if at > duration - every:
            return events
        action = "rm" if alive and draw.random() < 1 / 3 else "run"
        alive += 1 if action == "run" else -1
        events.append(ChurnEvent(round(at, 1), action, draw.choice(hosts)))
