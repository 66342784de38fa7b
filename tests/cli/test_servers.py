"""`--servers` and `--place` on run, the bundled scenarios, up and graph (no root needed): bad
input is one line on standard error, exit 2, nothing registered and no run directory made; good
input becomes the Cluster's two parameters and a placement of every node."""

import argparse
import tempfile
from pathlib import Path

import pytest

import topologies
from calisim.cli.servers import ServerChoice, check_server_options
from calisim.servers.placement import PlacementError


@pytest.fixture
def short_runs(monkeypatch):
    """A run-directory base short enough for `up`'s socket paths (pytest's tmp_path is not)."""
    with tempfile.TemporaryDirectory(prefix="srv", dir="/tmp") as base:
        monkeypatch.setenv("CALISIM_RUNS", f"{base}/runs")
        yield Path(base)
        assert not (Path(base) / "runs").exists()


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "steps.txt"
    path.write_text("host1$ true\n")
    return str(path)


@pytest.mark.parametrize("options, message", [
    (["--servers", "sim:0"], "--servers sim:0: the number of simulated servers must be between 1 and 99"),
    (["--servers", "sim:100"], "--servers sim:100: the number of simulated servers must be between 1 and 99"),
    (["--servers", "a,b,a"], "--servers a,b,a: a named twice (each server once)"),
    (["--servers", "sim:3", "--place", "host9=server2"], "--place host9=server2: no node host9 in this topology"),
    (["--servers", "sim:3", "--place", "host2=server4"], "--place host2=server4: no server server4 in --servers"),
    (["--servers", "sim:3", "--place", "host2"], "--place host2: expected NODE=SERVER"),
    (["--place", "host2=server2"], "--place host2=server2: --place needs --servers"),
    (["--servers", "localhost,nosuchserver.invalid"], "--servers: nosuchserver.invalid: cannot resolve its address"),
])
@pytest.mark.parametrize("command", [["run", "SCRIPT", "--topology", "two_host"], ["two-host"], ["up", "two_host"]])
def test_bad_servers_or_place_are_refused_before_anything_starts(nowhere, short_runs, refused,
                                                                 script, command, options, message):
    line = refused(*[script if word == "SCRIPT" else word for word in command], *options)
    assert line.startswith(f"calisim: {message}"), line


def test_every_bundled_scenario_takes_the_options(nowhere, refused):
    for scenario in ("route-reflectors", "fabric-as-per-rack", "cross-subnet"):
        assert "--servers sim:0" in refused(scenario, "--servers", "sim:0")


def test_a_lab_run_refuses_them_it_was_placed_by_up(nowhere, refused):
    assert "--servers and --place belong to a fresh cluster" in refused("run", "/dev/null", "--lab", "x",
                                                                        "--servers", "sim:2")


def test_good_options_become_the_clusters_parameters_and_a_placement():
    topo = topologies.load("flat", hosts=4)
    args = argparse.Namespace(servers=" sim:2 ", place=["host1=server2"])
    choice = check_server_options(args, topo)
    assert (choice.servers, choice.place) == ("sim:2", {"host1": "server2"})
    assert choice.placement == {"host1": "server2", "host2": "server1", "host3": "server2", "host4": "server2"}
    assert check_server_options(argparse.Namespace(servers=None, place=[]), topo) == ServerChoice()


def test_real_servers_are_each_checked_but_the_first_which_is_this_machine():
    checked = []
    args = argparse.Namespace(servers="here,b,c", place=[])
    check_server_options(args, topologies.load("two_host"), lambda name, python: checked.append(name))
    assert checked == ["b", "c"]

    def unreachable(name, python):
        raise PlacementError(f"--servers: {name}: unreachable over ssh as root with keys (Connection refused)")

    with pytest.raises(PlacementError, match="^--servers: b: unreachable"):
        check_server_options(args, topologies.load("two_host"), unreachable)
