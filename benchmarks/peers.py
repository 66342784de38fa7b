"""The same job three ways, side by side in one run: N BGP speakers in one segment, a full iBGP
mesh, from nothing to every session Established; time and memory.

    python benchmarks/peers.py [--hosts 25 50 100] [--designs calisim floor frr] [--json PATH] [--png PATH]

calisim: the flat topology, `calicoctl node run` on every host (etcd, calico-node, confd's config,
BIRD), as `benchmarks/bringup.py` does.  floor: plain Mininet hosts (Mininet's own Host, Link and
LinuxBridge, nothing of Calico) each running BIRD 2 with a hand-written mesh config: what the
emulation costs beyond the daemons.  frr: plain Mininet hosts each running FRR's zebra and bgpd
(Debian's `frr`, `make bench-peers-setup`), the peer tool's routing suite.  IPMininet, which
wraps FRR the same way, cannot be installed here: its one PyPI release (1.0, 2021) is an sdist
whose setup.py imports pkg_resources, requires Mininet from GitHub by URL (only PyPI, Debian and
npm are reachable) and, as it installs, builds Mininet's dependencies into /opt.

Every speaker retries a refused connect after 3 s, as calisim's BIRDs do (BGP's default is 120 s:
a mesh started at once would wait for it).  Measured: build (network up), daemons started,
converged (every host with N-1 sessions Established, polled once a host until it has them all,
as a session only comes up meanwhile), the total, the run's peak PSS (every process in the
sandbox's PID namespace, this interpreter included) and the daemons' PSS at convergence, CPU
seconds; ratios calisim / floor and calisim / frr of total time and peak memory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from calisim.emulation import sandbox

sandbox.enter()

from mininet.net import Mininet  # noqa: E402  (imports after the re-exec into the sandbox)
from mininet.nodelib import LinuxBridge  # noqa: E402
from mininet.topo import SingleSwitchTopo  # noqa: E402
from rich.console import Console  # noqa: E402

import topologies  # noqa: E402
from bringup import PeakMemory, cpu_seconds, total_pss_kib  # noqa: E402  (benchmarks/ is this script's directory)
from report import designs_parser, label_axes, write_runs  # noqa: E402
from calisim.emulation import Cluster, wait_until  # noqa: E402
from calisim.emulation.topology import pin_segment_neighbours  # noqa: E402
from calisim.node.bird import BirdControl, BirdError  # noqa: E402

RESULTS = Path(__file__).parent / "results"
AS_NUMBER = 64512  # Calico's default AS, for all three
CONNECT_RETRY_S = 3  # calisim's BIRD timers (calisim/node/bird/config.py Timers)
DESIGNS = {"calisim": "calisim", "floor": "floor: Mininet+BIRD", "frr": "peer: Mininet+FRR"}
DAEMONS = {"calisim": frozenset({"bird"}), "floor": frozenset({"bird"}), "frr": frozenset({"bgpd", "zebra"})}
HEADINGS = {"peak_pss_mib": "peak MiB", "daemons_pss_mib": "daemons MiB", "time_vs_floor": "time ÷ floor",
            "time_vs_frr": "time ÷ FRR", "memory_vs_floor": "MiB ÷ floor", "memory_vs_frr": "MiB ÷ FRR",
            "load_average_1min_at_start": "load"}  # the table's column titles, short enough to fit
BIRD_CONFIG = """router id {ip};
protocol device {{ }}
protocol kernel {{ ipv4 {{ export all; }}; }}
template bgp mesh {{
  local as {asn};
  connect delay time 1;
  connect retry time {retry};
  error wait time 1, 10;
  ipv4 {{ import all; export all; }};
}}
{peers}
"""
BGPD_CONFIG = """frr defaults traditional
hostname {name}
log file {directory}/bgpd.log
!
router bgp {asn}
 bgp router-id {ip}
 neighbor mesh peer-group
 neighbor mesh remote-as {asn}
 neighbor mesh timers connect {retry}
{peers}
!
"""


@dataclass
class Speaker:
    """One host's BGP daemon(s): how they start, how many sessions they have Established, their pid files."""

    start: Callable[[object, str, list[str], Path], list[Path]]
    established: Callable[[Path], int]


def start_bird(host, ip: str, peers: list[str], directory: Path) -> list[Path]:
    """BIRD 2 with a hand-written mesh: one bgp protocol a peer, from one template."""
    protocols = "\n".join(f"protocol bgp peer{i} from mesh {{ neighbor {peer} as {AS_NUMBER}; }}"
                          for i, peer in enumerate(peers))
    (directory / "bird.conf").write_text(BIRD_CONFIG.format(ip=ip, asn=AS_NUMBER, retry=CONNECT_RETRY_S,
                                                            peers=protocols))
    run_in(host, f"bird -c {directory}/bird.conf -s {directory}/bird.ctl -P {directory}/bird.pid")
    return [directory / "bird.pid"]


def bird_established(directory: Path) -> int:
    try:
        protocols = BirdControl(directory / "bird.ctl", timeout=2).protocols()
    except BirdError:
        return 0  # not listening yet
    return sum(p.proto == "BGP" and p.info.startswith("Established") for p in protocols)


def start_frr(host, ip: str, peers: list[str], directory: Path) -> list[Path]:
    """FRR's zebra (the kernel's routes) and bgpd, each with its own pid file, zserv and vty sockets
    in directory (FRR's defaults, /var/run/frr, are one per machine), running as Debian's frr user
    (FRR refuses root: not in its vty group)."""
    shutil.chown(directory.parent, "frr", "frr")
    shutil.chown(directory, "frr", "frr")
    (directory / "zebra.conf").write_text(f"hostname {host.name}\nlog file {directory}/zebra.log\n")
    neighbors = "\n".join(f" neighbor {peer} peer-group mesh" for peer in peers)
    (directory / "bgpd.conf").write_text(BGPD_CONFIG.format(name=host.name, directory=directory, asn=AS_NUMBER,
                                                            ip=ip, retry=CONNECT_RETRY_S, peers=neighbors))
    common = f"-d -z {directory}/zserv.api --vty_socket {directory}"
    run_in(host, f"/usr/lib/frr/zebra {common} -f {directory}/zebra.conf -i {directory}/zebra.pid")
    run_in(host, f"/usr/lib/frr/bgpd {common} -f {directory}/bgpd.conf -i {directory}/bgpd.pid")
    return [directory / "zebra.pid", directory / "bgpd.pid"]


def frr_established(directory: Path) -> int:
    reply = subprocess.run(["vtysh", "--vty_socket", str(directory), "-c", "show bgp summary json"],
                           capture_output=True, text=True, timeout=10)
    try:
        peers = json.loads(reply.stdout).get("ipv4Unicast", {}).get("peers", {})
    except json.JSONDecodeError:
        return 0  # bgpd not answering yet
    return sum(peer.get("state") == "Established" for peer in peers.values())


SPEAKERS = {"floor": Speaker(start_bird, bird_established), "frr": Speaker(start_frr, frr_established)}


def run_in(host, command: str) -> None:
    """A daemon's start in host's namespace; RuntimeError with its output if it fails."""
    output = host.cmd(f"{command} 2>&1; echo status $?").strip().splitlines()
    if not output or output[-1] != "status 0":
        raise RuntimeError(f"{host.name}: {command}: {' '.join(output[:-1])[:300]}")


def wait_established(names: list[str], established: Callable[[str], int], peers: int) -> None:
    """Until every host has peers sessions Established, polling the first pending host until it has
    them all (sessions only come up while a mesh converges)."""
    pending = deque(names)

    def done() -> bool:
        while pending and established(pending[0]) >= peers:
            pending.popleft()
        return not pending

    wait_until(done, 600, interval=0.2, what=f"every session Established ({len(pending)} hosts left)")


def stop_by_pid(pid_files: list[Path]) -> None:
    """SIGTERM to each daemon by its pid file, then wait until they are gone (Mininet's stop would
    leave them running)."""
    pids = [int(path.read_text().split()[0]) for path in pid_files if path.exists()]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30, what="the daemons to stop")


def measure_plain(design: str, hosts: int) -> dict:
    """Plain Mininet: one Linux bridge, hosts h1..hN at 10.0.0.1..N, a speaker started in each.
    The hosts' ARP entries for each other are permanent, as calisim's (pin_segment_neighbours):
    the kernel's neighbour table is one for every namespace, capped at 1024 entries, and past
    the cap a mesh's SYNs wait on ARP that never resolves (TCP's back-off then took 104 s at
    50 hosts); this is the machine's limit, not the emulation's."""
    speaker = SPEAKERS[design]
    Mininet.inited = True  # Mininet's init raises machine-wide limits (sysctls): none is needed here
    started = time.monotonic()
    net = Mininet(topo=SingleSwitchTopo(hosts), switch=LinuxBridge, controller=None, waitConnected=False)
    pid_files: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=f"peers-{design}-") as work:
        try:
            net.start()
            pin_segment_neighbours(net)
            built = time.monotonic()
            directories = {}
            for host in net.hosts:
                directories[host.name] = Path(work, host.name)
                directories[host.name].mkdir()
                others = [other.IP() for other in net.hosts if other is not host]
                pid_files += speaker.start(host, host.IP(), others, directories[host.name])
            daemons_started = time.monotonic()
            wait_established([h.name for h in net.hosts], lambda name: speaker.established(directories[name]),
                             hosts - 1)
            converged = time.monotonic()
            daemons_kib = total_pss_kib(DAEMONS[design])
        finally:
            stop_by_pid(pid_files)
            net.stop()
    return {"build_s": built - started, "daemons_s": daemons_started - built, "converge_s": converged - daemons_started,
            "total_s": converged - started, "daemons_pss_kib": daemons_kib}


def measure_calisim(_design: str, hosts: int) -> dict:
    started = time.monotonic()
    with Cluster(topologies.load("flat", hosts), docker=False) as cluster:
        built = time.monotonic()
        cluster.start_nodes()
        daemons_started = time.monotonic()
        wait_established(cluster.hosts, cluster.bgp_established, hosts - 1)
        converged = time.monotonic()
        daemons_kib = total_pss_kib(DAEMONS["calisim"])
    return {"build_s": built - started, "daemons_s": daemons_started - built, "converge_s": converged - daemons_started,
            "total_s": converged - started, "daemons_pss_kib": daemons_kib}


def measure(design: str, hosts: int) -> dict:
    load = os.getloadavg()[0]
    cpu_before = cpu_seconds()
    with PeakMemory() as memory:
        parts = (measure_calisim if design == "calisim" else measure_plain)(design, hosts)
    return {"design": DESIGNS[design], "hosts": hosts, "sessions": hosts * (hosts - 1) // 2,
            **{key: round(value, 2) for key, value in parts.items() if key.endswith("_s")},
            "peak_pss_mib": round(memory.peak / 1024, 1), "daemons_pss_mib": round(parts["daemons_pss_kib"] / 1024, 1),
            "cpu_s": round(cpu_seconds() - cpu_before, 1), "load_average_1min_at_start": round(load, 2)}


def add_ratios(rows: list[dict]) -> None:
    """calisim's total time and peak memory over the floor's and FRR's at the same host count, on calisim's rows."""
    for row in rows:
        if row["design"] != DESIGNS["calisim"]:
            continue
        for name in ("floor", "frr"):
            other = next((r for r in rows if r["design"] == DESIGNS[name] and r["hosts"] == row["hosts"]), None)
            for key, label in (("total_s", "time"), ("peak_pss_mib", "memory")):
                row[f"{label}_vs_{name}"] = round(row[key] / other[key], 2) if other else "-"


def plot(rows: list[dict], path: Path) -> None:
    """Time to every session Established and peak memory against N, a line a design; the ratios
    written beside calisim's points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    panels = (("total_s", "seconds from nothing to every session Established", "time_vs"),
              ("peak_pss_mib", "peak memory of the run, MiB (PSS)", "memory_vs"))
    for axis, (key, title, ratio) in zip(axes, panels):
        for design, marker in zip(DESIGNS.values(), ("o", "s", "^")):
            mine = [row for row in rows if row["design"] == design]
            if mine:
                axis.plot([r["hosts"] for r in mine], [r[key] for r in mine], marker=marker, label=design)
        for row in (r for r in rows if r["design"] == DESIGNS["calisim"]):
            axis.annotate(f"calisim / floor {row[f'{ratio}_floor']}\ncalisim / FRR {row[f'{ratio}_frr']}",
                          (row["hosts"], row[key]), textcoords="offset points", xytext=(-6, 8), ha="right",
                          fontsize=8, color="tab:blue")
        axis.set_ylim(bottom=0)
        axis.set_xlim(0, max(r["hosts"] for r in rows) * 1.05)  # room for the ratios left of the first point
        label_axes(axis, "BGP speakers (full iBGP mesh, one segment)", None, title)
    loads = [r["load_average_1min_at_start"] for r in rows]
    figure.suptitle(f"calisim (flat topology, calicoctl node run) against the floor (plain Mininet hosts + BIRD) and "
                    f"a peer (plain Mininet hosts + FRR zebra/bgpd)\none run on a shared 2-core machine, 1-min load "
                    f"at each start {min(loads)}-{max(loads)}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def check_frr() -> None:
    """FRR's daemons and vtysh where the frr design looks for them, or one line saying how to get them."""
    needed = ("/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/bin/vtysh")
    missing = [path for path in needed if not Path(path).exists()]
    if missing:
        sys.exit(f"peers: FRR is not installed ({', '.join(missing)} missing): run `make bench-peers-setup`, "
                 f"or leave frr out of --designs")


def main() -> None:
    parser = designs_parser(__doc__, list(DESIGNS), RESULTS / "peers")
    args = parser.parse_args()
    if any(count < 2 for count in args.hosts):
        parser.error("--hosts: a mesh needs at least 2 speakers")
    if "frr" in args.designs:
        check_frr()
    console = Console(width=200)
    rows = []
    for count in args.hosts:
        for design in args.designs:
            with console.status(f"{DESIGNS[design]}, {count} hosts"):
                rows.append(measure(design, count))
            console.print(rows[-1])
    add_ratios(rows)
    columns = ("design", "hosts", "sessions", "build_s", "daemons_s", "converge_s", "total_s", "peak_pss_mib",
               "daemons_pss_mib", "cpu_s", "time_vs_floor", "time_vs_frr", "memory_vs_floor", "memory_vs_frr",
               "load_average_1min_at_start")
    for row in rows:
        for column in columns:
            row.setdefault(column, "")
    write_runs(console, "N BGP speakers, full mesh, to every session Established: calisim, floor, peer", columns,
               rows, args.json, args.png, plot,
               heading=lambda column: HEADINGS.get(column, column.replace("_", " ")))


if __name__ == "__main__":
    main()
