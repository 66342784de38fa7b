"""The pure helpers of benchmarks/large.py (no root: nothing is built): which kind of process is
which, the stages' own seconds, and the hottest functions of a py-spy profile."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # large.py imports its neighbours (bgp, bringup, report) by name
spec = importlib.util.spec_from_file_location("benchmark_large", BENCHMARKS / "large.py")
large = importlib.util.module_from_spec(spec)
spec.loader.exec_module(large)  # not as __main__: it defines its functions and enters no sandbox


def test_processes_are_told_apart_by_name_and_command_line():
    python = "/work/.venv/bin/python -m"
    assert large.kind_of("bird", "bird -R -s /var/run/calico/bird.ctl", 1, 2) == "BIRD"
    assert large.kind_of("python", f"{python} calisim.node.zygote /run/z.sock ....", 1, 2) == "zygote"
    assert large.kind_of("python", f"{python} calisim.node --name host7 --backend bird", 1, 2) == "calico-node"
    assert large.kind_of("python", f"{python} calisim.docker", 1, 2) == "dockerd"
    assert large.kind_of("bash", "bash --norc -is mininet:host3", 1, 2) == "host shells"
    assert large.kind_of("python", "python benchmarks/large.py", 2, 2) == "benchmark"
    assert large.kind_of("etcd", "etcd --name etcd1", 1, 2) == "etcd"
    assert large.kind_of("sleep", "sleep 5", 1, 2) == "other"


def test_each_stage_lasts_from_the_end_of_the_one_before():
    stages = large.Stages()
    stages.ends = dict(zip(large.STAGES, (2.0, 5.5, 6.0, 7.0, 27.0, 30.25)))
    assert stages.durations() == dict(zip(large.STAGES, (2.0, 3.5, 0.5, 1.0, 20.0, 3.25)))


def test_the_hottest_functions_count_each_sample_once_per_function_whatever_its_depth():
    root = str(BENCHMARKS.parent)
    collapsed = "\n".join([
        f'process 9:"python -m calisim.node";main ({root}/calisim/node/agent.py:120);load (mirror.py:10);'
        "decode (json.py:5);decode (json.py:7) 30",
        f'process 9:"python -m calisim.node";main ({root}/calisim/node/agent.py:120);render (confd.py:3) 10',
        "garbage line without a count",
    ])
    assert large.hottest(collapsed, top=3) == [("main (calisim/node/agent.py)", 1.0), ("decode (json.py)", 0.75),
                                               ("load (mirror.py)", 0.75)]
    assert large.hottest("") == []
