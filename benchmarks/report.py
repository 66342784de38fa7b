"""What the benchmarks' reports share: where they are written (output_path), the command line of
those that compare designs, one look for a plot's axes, and the table, JSON and PNG written for a
list of runs."""

import argparse
import json
import os
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table


def output_path(value: str) -> Path:
    """argparse's type for --json and --png (give the default as a string so that it goes through
    here too): the file's folder is created as the command line is read, so a fresh clone's
    missing benchmarks/results/, or a folder that cannot be created, fails at once and not after
    the whole run."""
    path = Path(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def designs_parser(doc: str, designs: list[str], results: Path) -> argparse.ArgumentParser:
    """--hosts (25, 50 and 100 unless given), --designs (all unless given), --json and --png (results
    with .json and .png): the command line of a benchmark that runs several designs at several sizes."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[25, 50, 100], help="host counts, one run each")
    parser.add_argument("--designs", nargs="+", choices=designs, default=designs, help="the designs to run (all)")
    parser.add_argument("--json", type=output_path, default=str(results.with_suffix(".json")), help="the runs as JSON")
    parser.add_argument("--png", type=output_path, default=str(results.with_suffix(".png")), help="their plot")
    return parser


def label_axes(axis, xlabel: str, ylabel: str | None, title: str, **legend) -> None:
    """Labels, a title, a light grid and the legend (font size 8 unless given) of one plot."""
    axis.set_xlabel(xlabel)
    if ylabel is not None:
        axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(True, alpha=0.3)
    axis.legend(**{"fontsize": 8, **legend})


def write_runs(console: Console, title: str, columns: tuple[str, ...], rows: list[dict], json_path: Path,
               png_path: Path, plot: Callable[[list[dict], Path], None],
               heading: Callable[[str], str] = lambda column: column.replace("_", " ")) -> None:
    """The runs as a table on the console, as JSON (with the machine's core count) and as a PNG."""
    table = Table(title=title)
    for column in columns:
        table.add_column(heading(column), justify="right")
    for row in rows:
        table.add_row(*(str(row[column]) for column in columns))
    console.print(table)
    json_path.write_text(json.dumps({"machine_cores": len(os.sched_getaffinity(0)), "runs": rows}, indent=2))
    plot(rows, png_path)
    console.print(f"written to {json_path} and {png_path}")
