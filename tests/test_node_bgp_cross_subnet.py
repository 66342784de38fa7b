"""IPIP cross-subnet (`spec.ipip.mode: cross-subnet`): the bundled `cross-subnet` scenario on
`routed --hosts-per-subnet 2` shows that only the traffic crossing the router is encapsulated
(protocol 4 seen there and nowhere else), then measures both kinds of pair."""

import json
import subprocess

import pytest

from .conftest import PYTHON

pytestmark = pytest.mark.emulation


def test_cross_subnet_encapsulates_only_across_the_router(untouched, runs):
    done = subprocess.run([PYTHON, "-m", "calisim", "cross-subnet", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert all(step["passed"] for step in document["steps"])
    assert document["summary"]["mismatches"] == []
    assert document["summary"]["sessions"] == {f"host{i}": 3 for i in range(1, 5)}
