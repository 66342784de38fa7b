"""Pictures of a world: hosts, routers, segments and links, and for a running lab its BGP
sessions coloured by state and each host's blocks and workloads.

Drawn with Graphviz (the Debian package's `dot`, through the `graphviz` Python binding) from a
topology (calisim.emulation.state reads it without building anything) and, for a lab, the
document of its ``inspect`` operation.
"""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphviz

from . import state

FONT = "Helvetica"
COLOURS = {"calico host": "#1f6feb", "calico host, etcd": "#1f6feb", "router": "#57606a", "outside host": "#8c959f",
           "etcd member": "#1a7f37"}
SEGMENT_FILL = "#eef1f4"
ESTABLISHED = "#2da44e"
NOT_ESTABLISHED = "#cf222e"
SPLIT_SEGMENT_AT = 5  # a segment with more hosts gets half of them above it, half below
DRAW_EVERY_SESSION_UP_TO = 6  # sessions: a full mesh of 4 hosts
SERVER_COLOURS = ("#0969da", "#bf8700", "#8250df", "#1a7f37", "#bc4c00", "#cf222e", "#1b7c83", "#6e7781")


def write(topo, output: Path, live: dict[str, Any] | None = None, title: str | None = None,
          placement: dict[str, str] | None = None) -> Path:
    """Render topo (with a lab's inspect document, or where --servers would place its nodes, if
    given) to output (.svg or .png)."""
    dot = build(topo, live, title, placement)
    output = Path(output)
    rendered = dot.render(outfile=str(output), format=output.suffix.lstrip("."), cleanup=True)
    output.with_suffix(".gv").unlink(missing_ok=True)  # the binding leaves the DOT source beside it
    return Path(rendered)


def build(topo, live: dict[str, Any] | None = None, title: str | None = None,
          placement: dict[str, str] | None = None) -> graphviz.Graph:
    """Top to bottom: routers, then segments, then hosts (a crowded segment gets half of its
    hosts above it); a lab's BGP sessions are dashed lines between hosts; on several servers,
    each host's box is edged and labelled in its server's colour."""
    hosts = {h["name"]: h for h in (live["hosts"] if live else state.describe_hosts(topo, placement))}
    colours = server_colours(hosts.values())
    has_routers = any(h["role"] == "router" for h in hosts.values())
    dot = graphviz.Graph(name=topo.name, engine="dot")
    dot.attr(rankdir="TB", fontname=FONT, fontsize="20", labelloc="t", pad="0.4", nodesep="0.35",
             ranksep="0.6", newrank="true", ordering="out",
             label=f"<<b>{html.escape(title or topo.name)}</b><br/>"
                   f"<font point-size='12'>{subtitle(topo, live)}{servers_legend(colours)}</font>>")
    dot.attr("node", fontname=FONT, fontsize="11")
    dot.attr("edge", fontname=FONT, fontsize="10", color="#6e7781", penwidth="1.6")
    for host in hosts.values():
        dot.node(host["name"], label=host_label(host, colours), shape="plain")
    links = state.links(topo)
    bridges = {segment["name"] for segment in state.segments(topo)}
    for segment in state.segments(topo):
        subnets = segment_subnets(links, segment["name"])
        dot.node(segment["name"], shape="box", style="rounded,filled", fillcolor=SEGMENT_FILL, color="#afb8c1",
                 height="0.3", margin="0.25,0.06",
                 label=f"<<b>{segment['name']}</b>  <font point-size='10'>{' '.join(subnets)}</font>>")
    uplinks = sorted({link["segment"] for link in links if link["segment"] not in bridges})
    for link in (link for link in links if link["segment"] not in bridges):
        # A router's point-to-point link (a fabric's ToR to a spine): the far router above it.
        dot.edge(link["segment"], link["host"], label=link_label(link), fontcolor="#57606a")
    _keep_in_order(dot, uplinks)
    for segment_name, members in sorted(_by_segment(links).items()):
        if segment_name not in bridges:
            continue
        routers = [link for link in members if hosts[link["host"]]["role"] == "router"]
        others = [link for link in members if link not in routers]
        half = len(others) // 2 if not has_routers and len(others) >= SPLIT_SEGMENT_AT else 0
        for link in routers:
            dot.edge(link["host"], segment_name, label=link_label(link), fontcolor="#57606a")
        for index, link in enumerate(others):
            dot.edge(*((link["host"], segment_name) if index < half else (segment_name, link["host"])))
        for row in (others[:half], others[half:]):
            _keep_in_order(dot, [link["host"] for link in row])
    if live:
        paired = paired_sessions(topo, live)
        pairs = sessions(topo, live)
        # Every session of a small mesh is drawn; in a big one (10 hosts: 45 sessions) only the
        # ones that are not Established are, so that what is wrong stands out.
        draw_all = len(pairs) <= DRAW_EVERY_SESSION_UP_TO
        labelled = len(pairs) <= 3
        for (a, b), established in pairs.items():
            if established and not draw_all:
                continue
            colour = ESTABLISHED if established else NOT_ESTABLISHED
            dot.edge(a, b, style="dashed", constraint="false", penwidth="1.5", color=colour, fontcolor=colour,
                     label=session_label(paired[(a, b)]) if labelled else "")
    return dot


def segment_subnets(links: list[dict[str, Any]], segment: str) -> list[str]:
    """The subnets of the addresses on a segment, IPv4 then IPv6 (what its box says beside its name)."""
    networks = {ipaddress.ip_interface(address).network for link in links if link["segment"] == segment
                for address in [link["address"], *link["addresses6"]] if address}
    return [str(network) for network in sorted(networks, key=lambda network: (network.version, network))]


def link_label(link: dict[str, Any]) -> str:
    """A router's addresses on a link, one a line (IPv4, then IPv6)."""
    return "\n".join(address for address in [link["address"], *link["addresses6"]] if address)


def subtitle(topo, live: dict[str, Any] | None) -> str:
    """One or two lines under the title (HTML-like: lines joined by <br/>, already escaped)."""
    others = [h for h in topo.hosts() if h not in topo.calico_hosts() and h not in topo.etcd_members()]
    routers = len(topo.routers())
    counts = [f"{len(topo.calico_hosts())} Calico hosts"] + [f"{n} {what}{'s' if n > 1 else ''}" for n, what in (
        (routers, "router"), (len(others) - routers, "outside host")) if n]
    lines = [", ".join(counts) + f" · etcd in {', '.join(topo.etcd_nodes())}"]
    if live:
        calico = [h for h in live["hosts"] if "bgp" in h]
        pairs = sessions(topo, live)
        lines[0] += f" · calico-node running on {sum(h['calico_node'] for h in calico)}/{len(calico)}"
        drawn = "dashed lines: green Established, red not" if len(pairs) <= DRAW_EVERY_SESSION_UP_TO else \
            "red dashed lines: the sessions that are not"
        lines.append(f"BGP sessions {sum(pairs.values())}/{len(pairs)} Established ({drawn})")
    return "<br/>".join(html.escape(line) for line in lines) + "<br/> "


def server_colours(hosts) -> dict[str, str]:
    """Each server the hosts run on (none: one machine) -> its colour, in the servers' order."""
    names = sorted({host["server"] for host in hosts if "server" in host}, key=_natural)
    return {name: SERVER_COLOURS[index % len(SERVER_COLOURS)] for index, name in enumerate(names)}


def servers_legend(colours: dict[str, str]) -> str:
    """The subtitle's line naming the servers in their colours (HTML-like; empty on one machine)."""
    if not colours:
        return ""
    names = " ".join(f"<font color='{colour}'><b>{html.escape(name)}</b></font>" for name, colour in colours.items())
    return f"on {len(colours)} servers: {names}<br/> "


def paired_sessions(topo, live: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each pair of hosts with BGP sessions between them once, with those sessions (IPv4 and IPv6,
    each end's; a route reflector or a fabric's router is the peer of a Calico host's session too,
    judged by the host's end; a peer address outside the topology is left out)."""
    by_address = {str(ipaddress.ip_interface(address).ip): host["name"]
                  for host in state.describe_hosts(topo) for address in host["addresses"]}
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for host in live["hosts"]:
        for session in host.get("bgp", []):
            peer = by_address.get(session["peer"])
            if peer is not None:
                pairs.setdefault(tuple(sorted((host["name"], peer))), []).append(session)
    return pairs


def sessions(topo, live: dict[str, Any]) -> dict[tuple[str, str], bool]:
    """Each pair of paired_sessions: True when every session between them is Established."""
    return {pair: all(session["state"] == "Established" for session in found)
            for pair, found in paired_sessions(topo, live).items()}


def session_label(found: list[dict[str, Any]]) -> str:
    """What a pair's line says: "BGP Established" ("BGP Established (IPv4, IPv6)" once the pair has
    bird6's sessions too), or which version's are not: "IPv6 BGP not established"."""
    versions = sorted({session.get("version", 4) for session in found})
    down = sorted({session.get("version", 4) for session in found if session["state"] != "Established"})
    if not down:
        return "BGP Established" + (" (IPv4, IPv6)" if versions == [4, 6] else "")
    return ("BGP" if down == versions else " and ".join(f"IPv{version}" for version in down) + " BGP") + \
        " not established"


@dataclass(frozen=True)
class Row:
    """One line of a host's box (the picture's table row, the web page's line)."""

    text: str
    colour: str = "#24292f"
    fill: str | None = None
    header: bool = False


def host_rows(host: dict[str, Any], colours: dict[str, str] | None = None) -> list[Row]:
    """A host's box: the name on the role's colour, then role, the server it runs on (in the
    server's colour), addresses, daemons, blocks, workloads."""
    role = host["role"].replace("calico host, etcd", "Calico host · etcd").replace("calico host", "Calico host")
    rows = [Row(host["name"], "white", COLOURS.get(host["role"], "#57606a"), header=True), Row(role, "#57606a")]
    if "server" in host:
        rows.append(Row(f"on {host['server']}", (colours or {}).get(host["server"], "#57606a")))
    if host["role"] != "router":
        rows += [Row(address) for address in host["addresses"]]
    if "calico_node" not in host:
        return rows
    rows.append(Row("calico-node running", ESTABLISHED) if host["calico_node"]
                else Row("calico-node stopped", NOT_ESTABLISHED))
    if "bird" in host:
        daemons = f"BIRD {'up' if host['bird'] else 'down'} · dockerd {'up' if host['dockerd'] else 'down'}"
        rows.append(Row(daemons, ESTABLISHED if host["bird"] and host["dockerd"] else NOT_ESTABLISHED))
    if host["bgp"]:
        rows.append(Row(state.bgp_summary(host["bgp"]),
                        ESTABLISHED if host["established"] == len(host["bgp"]) else NOT_ESTABLISHED))
    rows += [Row(f"block {block}", fill="#ddf4ff") for block in host["blocks"]]
    for workload in host["workloads"]:
        condition = "" if workload.get("state", "running") == "running" else f" ({workload['state']})"
        rows.append(Row(f"{workload['name']} {' '.join(workload['addresses'])}{condition}".strip(), fill="#fff8c5"))
    return rows


def host_label(host: dict[str, Any], colours: dict[str, str] | None = None) -> str:
    """An HTML-like table of host_rows, edged in its server's colour when it has one."""
    cells = []
    for row in host_rows(host, colours):
        text = html.escape(row.text)
        font = f"<font color='white' point-size='13'><b>{text}</b></font>" if row.header else \
            f"<font color='{row.colour}'>{text}</font>"
        fill = (f" bgcolor='{row.fill}'" if row.fill else "") + (" cellpadding='5'" if row.header else "")
        cells.append(f"<tr><td{fill}>{font}</td></tr>")
    edge = (colours or {}).get(host.get("server"))
    frame = f"border='3' color='{edge}'" if edge else "border='1' color='#8c959f'"
    return f"<<table {frame} cellborder='0' cellspacing='0' cellpadding='3'>" + "".join(cells) + "</table>>"


def _keep_in_order(dot: graphviz.Graph, names: list[str]) -> None:
    """Hold a row of hosts in their order (host1, host2, ...) whatever the BGP lines pull."""
    with dot.subgraph() as row:
        row.attr(rank="same")
        for left, right in zip(names, names[1:]):
            row.edge(left, right, style="invis")


def _by_segment(links: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for link in links:
        grouped.setdefault(link["segment"], []).append(link)
    return grouped


def _natural(name: str) -> tuple:
    """server2 before server10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
