"""What the page draws, computed from a lab's topology and its ``inspect`` document.

The layout is `calisim graph`'s own: the Graphviz graph that graph.build makes (routers above
segments above hosts, a crowded segment's hosts split above and below) is laid out by ``dot``
and only its node positions and sizes are kept; the browser (cytoscape.js) draws the boxes, the
links and the BGP sessions at those positions.  A host's box is graph.host_rows, the rows of the
picture's table, so the page and `calisim graph` say the same thing.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from ..emulation import graph, state

POINTS_PER_INCH = 72  # dot's sizes are in inches, its positions in points; the page draws in CSS pixels


def positions(topo, live: dict[str, Any]) -> dict[str, dict[str, float]]:
    """name -> centre (x, y, y growing downwards) and size (w, h) of every host and segment, as dot lays them out."""
    laid_out = json.loads(graph.build(topo, live).pipe(format="json"))
    height = float(laid_out["bb"].split(",")[3])
    found = {}
    for item in laid_out.get("objects", []):
        if item.get("pos"):
            x, y = (float(v) for v in item["pos"].split(","))
            found[item["name"]] = {"x": x, "y": height - y, "w": float(item["width"]) * POINTS_PER_INCH,
                                   "h": float(item["height"]) * POINTS_PER_INCH}
    return found


def link_faults(faults: list[dict[str, Any]]) -> dict[frozenset[str], str]:
    """{a, b} -> "down" or "impaired" for every link fault in force."""
    found: dict[frozenset[str], str] = {}
    for fault in faults:
        if fault["fault"] == "link-down":
            found[frozenset(fault["link"])] = "down"
        elif fault["fault"] == "impair":
            found.setdefault(frozenset(fault["link"]), "impaired")
    return found


def host_faults(faults: list[dict[str, Any]]) -> dict[str, list[str]]:
    """host -> the faults in force on it, one short text each (partitions, daemons, crashes)."""
    found: dict[str, list[str]] = {}
    for fault in faults:
        if "host" in fault:
            what = fault["fault"] + (f" {fault['daemon']}" if "daemon" in fault else "")
            found.setdefault(fault["host"], []).append(what)
    return found


def elements(topo, live: dict[str, Any]) -> list[dict[str, Any]]:
    """cytoscape.js elements: hosts and segments at dot's positions, links, BGP sessions by state."""
    where = positions(topo, live)
    broken_links, troubled_hosts = link_faults(live.get("faults", [])), host_faults(live.get("faults", []))
    found = []
    for host in live["hosts"]:
        rows = [asdict(row) for row in graph.host_rows(host)]
        found.append({"group": "nodes", "data": {"id": host["name"], "kind": "host", "role": host["role"],
                                                 "rows": rows, "faults": troubled_hosts.get(host["name"], []),
                                                 **where.get(host["name"], {})}})
    links = state.links(topo)
    for segment in state.segments(topo):
        label = " ".join([segment["name"], *graph.segment_subnets(links, segment["name"])])
        found.append({"group": "nodes", "data": {"id": segment["name"], "kind": "segment", "label": label,
                                                 **where.get(segment["name"], {})}})
    for link in links:
        condition = broken_links.get(frozenset((link["host"], link["segment"])), "up")
        found.append({"group": "edges", "data": {
            "id": f"link:{link['host']}:{link['segment']}", "source": link["segment"], "target": link["host"],
            "kind": "link", "state": condition, "label": "" if condition == "up" else f"link {condition}",
            **facing_sides(where.get(link["segment"]), where.get(link["host"]))}})
    paired, pairs = graph.paired_sessions(topo, live), graph.sessions(topo, live)
    for (a, b), established in pairs.items():
        if established and not draws_every_session(pairs):
            continue  # as in `calisim graph`: in a big mesh, only what is wrong stands out
        label = graph.session_label(paired[(a, b)]) if len(pairs) <= 3 else ""
        found.append({"group": "edges", "data": {"id": f"bgp:{a}:{b}", "source": a, "target": b, "kind": "bgp",
                                                 "state": "established" if established else "down", "label": label}})
    return found


def draws_every_session(pairs: dict) -> bool:
    return len(pairs) <= graph.DRAW_EVERY_SESSION_UP_TO


def facing_sides(source: dict[str, float] | None, target: dict[str, float] | None) -> dict[str, str]:
    """Where a link leaves and meets its boxes: the middle of the sides that face each other (a
    line to a box's centre would run behind the boxes beside it, which dot routes around)."""
    if not source or not target or source["y"] == target["y"]:
        return {"source_endpoint": "outside-to-node", "target_endpoint": "outside-to-node"}
    below = target["y"] > source["y"]
    return {"source_endpoint": "0% 50%" if below else "0% -50%", "target_endpoint": "0% -50%" if below else "0% 50%"}


HEALS = {"link-down": lambda f: ["link", *f["link"], "up"], "impair": lambda f: ["clear", *f["link"]],
         "partition": lambda f: ["heal", f["host"]], "daemon-stopped": lambda f: ["cont", f["host"], f["daemon"]],
         "daemon-down": lambda f: ["start", f["host"], f["daemon"]], "crashed": lambda f: ["boot", f["host"]]}


def describe_fault(fault: dict[str, Any]) -> dict[str, Any]:
    """A fault in force as the page lists it: one line, and the `calisim fault` words that undo it."""
    details = ", ".join(f"{key} {' '.join(value) if isinstance(value, list) else value}"
                        for key, value in sorted(fault.items()) if key not in ("fault", "link", "host", "daemon"))
    where = " ".join([*fault.get("link", []), fault.get("daemon", ""), fault.get("host", "")]).strip()
    heal = HEALS.get(fault["fault"])
    return {"text": f"{fault['fault']} {where}" + (f": {details}" if details else ""),
            "heal": heal(fault) if heal else None}


def workloads(live: dict[str, Any]) -> list[dict[str, Any]]:
    """Every workload of the lab with an address: what the probe form offers (from each workload;
    to each of its addresses, IPv4 first, then its IPv6 one on an --ipv6 network)."""
    return [{"host": host["name"], "name": w["name"], "address": w["addresses"][0], "addresses": w["addresses"]}
            for host in live["hosts"] for w in host.get("workloads", []) if w["addresses"]]


def snapshot(topo, live: dict[str, Any]) -> dict[str, Any]:
    """Everything the page shows of the lab now (one server-sent event)."""
    pairs = graph.sessions(topo, live)
    calico = [host for host in live["hosts"] if "bgp" in host]
    return {"lab": live["name"], "topology": live["topology"], "run_dir": live["run_dir"],
            "elements": elements(topo, live), "faults": [describe_fault(f) for f in live.get("faults", [])],
            "workloads": workloads(live), "hosts": [host["name"] for host in live["hosts"]],
            "summary": {"hosts": len(live["hosts"]), "calico_nodes": sum(h["calico_node"] for h in calico),
                        "calico_hosts": len(calico), "sessions": len(pairs),
                        "established": sum(pairs.values()), "every_session_drawn": draws_every_session(pairs)}}


def fault_verbs(parser: argparse.ArgumentParser) -> list[dict[str, Any]]:
    """The verbs of `calisim fault` (its argparse parser) as the page's form offers them: name,
    help, and each argument's name, whether it may be left out and its choices."""
    verbs = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in verbs._choices_actions}
    found = []
    for name, sub in verbs.choices.items():
        actions = [action for action in sub._actions if not isinstance(action, argparse._HelpAction)]
        arguments = [{"name": action.metavar or action.dest, "option": action.option_strings[0] if action.option_strings
                      else None, "optional": bool(action.option_strings) or action.nargs in ("?", "*"),
                      "flag": action.nargs == 0,  # e.g. `kill --leader etcd`: a checkbox, no value
                      "choices": list(action.choices) if action.choices else None}
                     for action in sorted(actions, key=lambda action: bool(action.option_strings))]  # positionals first
        found.append({"verb": name, "help": helps.get(name, ""), "arguments": arguments})
    return found
