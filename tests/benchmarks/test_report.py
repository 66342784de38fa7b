"""Where the benchmarks write: every --json and --png goes through report.output_path, which
creates the file's folder as the command line is read (a fresh clone has no benchmarks/results/:
a benchmark must not run for minutes and then fail to write its PNG)."""

import ast
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
spec = importlib.util.spec_from_file_location("benchmark_report", BENCHMARKS / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def test_output_path_creates_the_folders_it_writes_into(tmp_path):
    path = report.output_path(str(tmp_path / "fresh-clone" / "results" / "bringup.png"))
    assert path == tmp_path / "fresh-clone" / "results" / "bringup.png"
    assert path.parent.is_dir() and not path.exists()


def output_arguments(script: Path) -> list[ast.Call]:
    calls = [node for node in ast.walk(ast.parse(script.read_text())) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", "") == "add_argument" and node.args
             and getattr(node.args[0], "value", None) in ("--json", "--png")]
    return calls


@pytest.mark.parametrize("script", sorted(p for p in BENCHMARKS.glob("*.py")
                                           if p.name != "report.py" and "__main__" in p.read_text()),
                         ids=lambda p: p.name)  # a benchmark runs as a script; cpu.py is a helper
def test_every_output_of_every_benchmark_goes_through_output_path(script):
    # a benchmark comparing designs takes its command line, --json and --png included, from report's designs_parser
    arguments = output_arguments(BENCHMARKS / "report.py" if "designs_parser(" in script.read_text() else script)
    assert arguments, f"{script.name} has no --json"
    for call in arguments:
        given = {keyword.arg: keyword.value for keyword in call.keywords}
        assert getattr(given.get("type"), "id", None) == "output_path", ast.unparse(call)
        default = given.get("default")
        # a string default goes through type= too; None is resolved by the script through output_path
        assert (isinstance(default, ast.Call) and getattr(default.func, "id", None) == "str"
                or getattr(default, "value", "") is None), ast.unparse(call)


def test_designs_parser_defaults_to_every_design_at_25_50_100_and_writes_beside_results(tmp_path):
    parser = report.designs_parser("Title.\n\nMore.", ["a", "b"], tmp_path / "results" / "peers")
    args = parser.parse_args([])
    assert (args.hosts, args.designs) == ([25, 50, 100], ["a", "b"])
    assert (args.json, args.png) == (tmp_path / "results" / "peers.json", tmp_path / "results" / "peers.png")
    assert parser.description == "Title."
    with pytest.raises(SystemExit):
        parser.parse_args(["--designs", "c"])
