"""Progress bars of `up` and `run`: one bar a stage, with its count and the seconds it took, on a
terminal; nothing at all elsewhere (logs, pipes, tests and --json readers stay clean)."""

import io
import re

from rich.console import Console

from calisim.cli.progress import StageBars


def report(console: Console) -> str:
    with StageBars(console, "starting lab big: flat, 3 hosts") as bars:
        bars("hosts built", 3, 3)
        bars("nodes started", 1, 3)
        bars("nodes started", 3, 3)
        bars("hosts with every BGP session up", 2, 3)
    bars("dockerds up", 1, 1)  # after the work (a fault restarting a dockerd): shown nowhere
    return console.file.getvalue()


def test_on_a_terminal_each_stage_is_a_bar_with_its_count():
    shown = report(Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None))
    last = shown.split("starting lab big: flat, 3 hosts\n", 1)[1].rsplit("hosts built", 1)[1]
    assert "3/3" in last and "nodes started" in last and "hosts with every BGP session up" in last
    assert "2/3" in last and "dockerds up" not in shown
    assert re.search(r"nodes started\s+━+\s+3/3\s+\d+\.\d s", last), last  # with the seconds the stage took


def test_elsewhere_nothing_is_written():
    assert report(Console(file=io.StringIO(), force_terminal=False)) == ""
