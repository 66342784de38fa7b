"""Progress of long work (`up`, `run`): hosts built, dockerds up, nodes started, hosts with every
BGP session up, one rich bar a stage on standard error, and only when it is a terminal: logs,
pipes, tests and `--json` readers get none of it."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn


class StageBars:
    """A cluster's (or a lab's) progress callback, as bars; a context manager around the work."""

    def __init__(self, console: Console, heading: str):
        self.console = console
        self.heading = heading
        self.shown = console.is_terminal
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[seconds]:6.1f} s"), console=console, transient=False)
        self.stages: dict[str, TaskID] = {}
        self.began = time.monotonic()  # a stage's time runs from the end of the one before it

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.shown:
            return
        if stage not in self.stages:
            self.stages[stage] = self.bars.add_task(stage, total=total, began=self.began, seconds=0.0)
        task = self.stages[stage]
        now = time.monotonic()
        self.bars.update(task, completed=done, total=total, seconds=now - self.bars.tasks[task].fields["began"])
        if done >= total:
            self.began = now

    def __enter__(self) -> "StageBars":
        self.began = time.monotonic()
        if self.shown:
            self.console.print(self.heading, highlight=False)
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            self.bars.stop()
            self.shown = False  # a fault restarting a dockerd later reports to nobody
