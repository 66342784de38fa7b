"""What the page draws, without a lab: the form's verbs are `calisim fault`'s, a fault in force
is listed with the command that undoes it, and elements carry dot's layout and the sessions' states."""

import topologies
from calisim.cli.fault import command_parser
from calisim.emulation import state
from calisim.web import view


def live_two_host(established: bool = True, faults: list | None = None) -> dict:
    """An inspect document of two_host as the lab answers it (both nodes running)."""
    topo = topologies.load("two_host")
    hosts = []
    for host, peer in (("host1", "192.168.3.228"), ("host2", "192.168.3.229")):
        described = next(h for h in state.describe_hosts(topo) if h["name"] == host)
        session = {"peer": peer, "type": "node-to-node mesh", "state": "Established" if established else "Active",
                   "since": "10:00:00"}
        hosts.append({**described, "calico_node": True, "bird": True, "dockerd": True, "bgp": [session],
                      "established": int(established), "blocks": [], "workloads": []})
    hosts[1]["workloads"] = [{"name": "w2", "state": "running", "addresses": ["10.10.0.2"]}]
    return {"name": "duo", "topology": "two_host", "run_dir": "/tmp/x", "hosts": hosts,
            "segments": state.segments(topo), "faults": faults or []}


def test_the_form_offers_the_verbs_of_calisim_fault_with_their_arguments():
    verbs = {verb["verb"]: verb for verb in view.fault_verbs(command_parser())}
    assert {"link", "loss", "rate", "kill", "start", "partition", "heal", "crash", "boot"} <= set(verbs)
    assert [a["name"] for a in verbs["link"]["arguments"]] == ["A", "B", "STATE"]
    assert verbs["heal"]["arguments"] == [{"name": "HOST", "option": None, "optional": True, "flag": False,
                                                  "choices": None}]
    assert {"name": "etcd", "option": "--from", "optional": True, "flag": False,
            "choices": ["etcd"]} in verbs["partition"]["arguments"]
    # positionals first, in the form's order; `--leader` (no value) last, as a checkbox
    assert [(a["name"], a["flag"]) for a in verbs["kill"]["arguments"]] == [("HOST", False), ("DAEMON", False),
                                                                          ("leader", True)]


def test_each_fault_in_force_is_listed_with_the_command_that_undoes_it():
    cases = [({"fault": "link-down", "link": ["host2", "s1"]}, "link-down host2 s1", ["link", "host2", "s1", "up"]),
             ({"fault": "impair", "link": ["host2", "s1"], "loss": 50.0}, "impair host2 s1: loss 50.0",
              ["clear", "host2", "s1"]),
             ({"fault": "partition", "host": "host2", "from": "etcd"}, "partition host2: from etcd",
              ["heal", "host2"]),
             ({"fault": "daemon-stopped", "host": "host1", "daemon": "bird"}, "daemon-stopped bird host1",
              ["cont", "host1", "bird"]),
             ({"fault": "daemon-down", "host": "host1", "daemon": "etcd"}, "daemon-down etcd host1",
              ["start", "host1", "etcd"]),
             ({"fault": "crashed", "host": "host2"}, "crashed host2", ["boot", "host2"])]
    for fault, text, heal in cases:
        assert view.describe_fault(fault) == {"text": text, "heal": heal}


def test_elements_are_placed_as_graph_lays_them_out_and_sessions_coloured_by_state():
    topo = topologies.load("two_host")
    elements = {e["data"]["id"]: e["data"] for e in view.elements(topo, live_two_host())}
    assert {"host1", "host2", "s1", "link:host1:s1", "link:host2:s1", "bgp:host1:host2"} == set(elements)
    assert elements["s1"]["y"] < elements["host1"]["y"] == elements["host2"]["y"]  # the segment above its hosts
    assert elements["host1"]["x"] < elements["host2"]["x"] and elements["host1"]["h"] > elements["s1"]["h"]
    assert elements["s1"]["label"] == "s1 192.168.3.0/24 fd00:3::/64"
    # a link leaves the segment's bottom and meets the top of the host below it
    assert (elements["link:host1:s1"]["source_endpoint"], elements["link:host1:s1"]["target_endpoint"]) == \
        ("0% 50%", "0% -50%")
    assert elements["bgp:host1:host2"]["state"] == "established"
    assert [row["text"] for row in elements["host2"]["rows"]][-1] == "w2 10.10.0.2"
    down = view.elements(topo, live_two_host(established=False, faults=[{"fault": "link-down",
                                                                        "link": ["host2", "s1"]}]))
    by_id = {e["data"]["id"]: e["data"] for e in down}
    assert by_id["bgp:host1:host2"]["state"] == "down" and by_id["link:host2:s1"]["state"] == "down"
    assert by_id["link:host1:s1"]["state"] == "up"


def test_a_snapshot_counts_sessions_and_offers_the_workloads_with_an_address():
    snapshot = view.snapshot(topologies.load("two_host"), live_two_host(established=False))
    assert snapshot["summary"] == {"hosts": 2, "calico_nodes": 2, "calico_hosts": 2, "sessions": 1, "established": 0,
                                   "every_session_drawn": True}
    assert snapshot["workloads"] == [{"host": "host2", "name": "w2", "address": "10.10.0.2", "addresses": ["10.10.0.2"]}]
