"""`calisim inspect`'s text, from the state a lab's control socket answers."""

import argparse
import time
from types import SimpleNamespace

from calisim.cli import labs
from calisim.emulation import lab


def test_inspect_says_why_a_hosts_dockerd_is_not_running(monkeypatch, capsys):
    host = {"name": "host2", "role": "calico", "interfaces": {"host2-eth0": ["192.168.3.228/24"]}, "bgp": [],
            "calico_node": False, "established": 0, "blocks": [], "workloads": [], "dockerd": False,
            "dockerd_error": "unable to configure the Docker daemon with file /etc/docker/daemon.json: "
                             "unexpected end of JSON input"}
    state = {"hosts": [host, {**host, "name": "host1", "dockerd": True, "dockerd_error": ""}],
             "segments": [{"name": "s1", "joins": ["host1", "host2"]}]}
    record = SimpleNamespace(name="two_host", topology="two_host", started=time.time(), run_dir="/tmp/run",
                             client=lambda: SimpleNamespace(call=lambda op: state))
    monkeypatch.setattr(lab, "Registry", lambda: SimpleNamespace(find=lambda name: record))
    assert labs.lab_inspect(argparse.Namespace(name=None, json=False)) == 0
    shown = capsys.readouterr().out
    assert ("dockerd not running:\n  host2: unable to configure the Docker daemon with file "
            "/etc/docker/daemon.json: unexpected end of JSON input") in shown
    assert "host1: " not in shown
