"""The bundled scenarios: every one parses and names only hosts its topology has (no root); and
IPIP cross-subnet (`spec.ipip.mode: cross-subnet`): the bundled `cross-subnet` scenario on
`routed --hosts-per-subnet 2` shows that only the traffic crossing the router is encapsulated
(protocol 4 seen there and nowhere else), then measures both kinds of pair; and the bundled
`route-reflectors` scenario, dual stack."""

import ipaddress
import json
import subprocess

import pytest

from tests.conftest import PYTHON


def test_every_bundled_scenario_parses_and_names_hosts_its_topology_has():
    from calisim.cli import build_parser
    from calisim.scenarios import transcript
    from calisim.scenarios.bundled import SCENARIOS

    assert {"two-host", "route-reflectors", "fabric-as-per-rack", "fabric-as-per-host", "fabric-downward-default",
            "cross-subnet"} <= set(SCENARIOS)
    help_text = build_parser().format_help()
    for name, scenario in SCENARIOS.items():
        assert name in help_text
        topo = scenario.load_topology()
        steps = transcript.parse(scenario.text())
        transcript.check_hosts(steps, topo.hosts(sort=True))
        if scenario.measure_from is not None:  # the step its outcome is measured from exists, before the last
            assert scenario.measure_from in [step.command for step in steps[:-1]], name


@pytest.mark.emulation
def test_cross_subnet_encapsulates_only_across_the_router(untouched, runs):
    done = subprocess.run([PYTHON, "-m", "calisim", "cross-subnet", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert all(step["passed"] for step in document["steps"])
    assert document["summary"]["mismatches"] == []
    assert document["summary"]["sessions"] == {f"host{i}": 6 for i in range(1, 5)}  # the IPv4 and IPv6 meshes


@pytest.mark.emulation
def test_route_reflectors_reflect_over_ipv4_and_ipv6(untouched, runs):
    """The bundled `route-reflectors`: every node a client of both reflectors over IPv4 and over IPv6
    (4 sessions), workloads reaching each other with TTL 62 over both (next hops passed through)."""
    done = subprocess.run([PYTHON, "-m", "calisim", "route-reflectors", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert all(step["passed"] for step in document["steps"])
    summary = document["summary"]
    assert summary["mismatches"] == [] and summary["sessions"] == {f"host{i}": 4 for i in range(1, 5)}
    versions = [ipaddress.ip_address(pair["destination_ip"]).version for pair in summary["pairs"]]
    assert versions == [4, 4, 4, 6, 6, 6] and {pair["probe"]["ttl"] for pair in summary["pairs"]} == {62}
