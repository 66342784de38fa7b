"""Transcripts: how users (and the acceptance tests) drive a cluster, one step a line.

    # comment
    host1$ calicoctl node run --name 192.168.3.229      expects exit 0
    host1! calicoctl delete ipPool 1.2.3.0/24           expects a non-zero exit
    within 20s host1$ calicoctl node status | grep -q Established   retried until it passes

Each step runs with `bash -c` in a fresh shell on the host.  A step may continue on the next
line after a trailing backslash, and a here-document (``<<EOF`` ... ``EOF``) takes the lines
up to its terminator, so the seed's YAML can be pasted as it is.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Protocol

STEP = re.compile(r"^(?:within\s+(?P<within>\d+(?:\.\d+)?)s\s+)?(?P<host>[A-Za-z0-9][A-Za-z0-9_.-]*)"
                  r"(?P<mark>[$!])(?:\s+(?P<command>.*))?$", re.DOTALL)
HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
RETRY_INTERVAL = 0.1  # seconds between the attempts of a `within` step (each a fresh shell and command)


class TranscriptError(ValueError):
    """The transcript cannot be parsed or names something the topology lacks."""


@dataclass(frozen=True)
class Step:
    line: int
    host: str
    command: str
    expect_success: bool
    within: float | None = None

    @property
    def expect(self) -> str:
        return "success" if self.expect_success else "failure"

    @property
    def prompt(self) -> str:
        within = f"within {self.within:g}s " if self.within is not None else ""
        return f"{within}{self.host}{'$' if self.expect_success else '!'} {self.command}"


@dataclass(frozen=True)
class StepResult:
    step: Step
    rc: int
    stdout: str
    stderr: str
    passed: bool
    seconds: float
    attempts: int = 1

    def as_dict(self) -> dict:
        return {"host": self.step.host, "command": self.step.command, "expect": self.step.expect, "rc": self.rc,
                "stdout": self.stdout, "stderr": self.stderr, "passed": self.passed, "seconds": self.seconds}


def parse(text: str, allow_empty: bool = False) -> list[Step]:
    """The steps of a transcript; one with none is refused unless allow_empty (a cluster opened
    in Mininet's CLI to explore needs no steps first)."""
    steps: list[Step] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and index < len(lines):
            line = line + "\n" + lines[index]  # bash -c reads the backslash-newline as a continuation
            index += 1
        match = STEP.match(line.strip())
        if not match or not (match["command"] or "").strip():
            raise TranscriptError(f"line {number}: expected 'HOST$ COMMAND', 'HOST! COMMAND' or "
                                  f"'within 30s HOST$ COMMAND', not {line.strip()!r}")
        command = match["command"].strip()
        for heredoc in HEREDOC.finditer(command):
            strip_tabs, terminator = heredoc[1] == "-", heredoc[3]
            body = []
            while index < len(lines) and (lines[index].lstrip("\t") if strip_tabs else lines[index]) != terminator:
                body.append(lines[index])
                index += 1
            if index >= len(lines):
                raise TranscriptError(f"line {number}: here-document ends without its terminator {terminator!r}")
            index += 1
            command += "\n" + "\n".join(body + [terminator])
        within = float(match["within"]) if match["within"] else None
        steps.append(Step(number, match["host"], command, match["mark"] == "$", within))
    if not steps and not allow_empty:
        raise TranscriptError("the transcript has no steps (with --cli, an empty one opens a fresh cluster)")
    return steps


def check_hosts(steps: list[Step], hosts: list[str]) -> None:
    for step in steps:
        if step.host not in hosts:
            raise TranscriptError(f"line {step.line}: unknown host {step.host!r} (the topology has {', '.join(hosts)})")


class Runner(Protocol):
    def run(self, host: str, command: str, timeout: float = ...) -> object: ...


def run_step(cluster: Runner, step: Step) -> StepResult:
    """Run a step; a `within` step is retried until it meets its expectation or its time is up."""
    started = time.monotonic()
    deadline = started + (step.within or 0)
    attempts = 0
    while True:
        attempts += 1
        result = cluster.run(step.host, step.command)
        passed = (result.rc == 0) == step.expect_success
        if passed or time.monotonic() >= deadline:
            return StepResult(step, result.rc, result.stdout, result.stderr, passed,
                              round(time.monotonic() - started, 3), attempts)
        time.sleep(min(RETRY_INTERVAL, max(0.0, deadline - time.monotonic())))


def run(cluster: Runner, steps: list[Step], report: Callable[[StepResult], None] = lambda r: None,
        keep_going: bool = False) -> list[StepResult]:
    """Run the steps in order; stop at the first failed one unless keep_going."""
    results = []
    for step in steps:
        result = run_step(cluster, step)
        results.append(result)
        report(result)
        if not result.passed and not keep_going:
            break
    return results
