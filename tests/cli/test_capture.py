"""`calisim capture` on one small fabric lab (host1 in rack 1, host2 in rack 2, their ToRs, one
spine; nodes started, two workloads on host1) shared by the module: ICMP from host1 to host2
captured on host1's and on its ToR's interface, read back with scapy, and as tcpdump's lines; a
container's cali0 captured to standard output; Ctrl-C ending each with a complete pcap; and the
refusals (unknown node, container or interface, a bad filter or target, pcap onto a terminal),
one line, exit 2, no tcpdump left."""

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from scapy.all import ICMP, IP, rdpcap
from scapy.error import Scapy_Exception

from calisim.emulation import wait_until

from tests.conftest import PYTHON, calisim

pytestmark = pytest.mark.emulation
LAB = "cap"


@pytest.fixture(scope="module")
def workloads(labs):
    """The lab and the addresses of its two workloads on host1 (wa, wb)."""
    done = calisim("up", "fabric", "--racks", "2", "--hosts-per-rack", "1", "--spines", "1", "--start-nodes",
                   "--name", LAB)
    assert done.returncode == 0, done.stdout + done.stderr
    made = calisim("exec", "--lab", LAB, "host1", "--", "bash", "-c",
                   "docker network create --driver calico --ipam-driver calico-ipam net1 >/dev/null && "
                   "docker run --net net1 --name wa -tid busybox >/dev/null && "
                   "docker run --net net1 --name wb -tid busybox >/dev/null && docker inspect wa wb")
    assert made.returncode == 0, made.stderr
    return {c["Name"].lstrip("/"): next(iter(c["NetworkSettings"]["Networks"].values()))["IPAddress"]
            for c in json.loads(made.stdout)}


def tcpdumps() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and (p / "comm").exists() and (p / "comm").read_text().strip() == "tcpdump"]


class Capture:
    """`calisim capture ...` running until it listens; stop() is Ctrl-C."""

    def __init__(self, *args: str, stdout):
        self.process = subprocess.Popen([PYTHON, "-m", "calisim", "capture", "--lab", LAB, *args], stdout=stdout,
                                        stderr=subprocess.PIPE, text=True)
        self.said = self._until_listening(deadline=time.monotonic() + 30)

    def _until_listening(self, deadline: float) -> str:
        said = ""
        while "listening on" not in said:
            assert time.monotonic() < deadline and self.process.poll() is None, said
            if select.select([self.process.stderr], [], [], 0.5)[0]:  # read unbuffered: select sees only the pipe
                said += os.read(self.process.stderr.fileno(), 4096).decode()
        return said

    def stop(self, once_seen) -> str:
        """Ctrl-C once once_seen() says tcpdump has written what the test sent (it reads the kernel's
        buffer on its own time: a packet still there at Ctrl-C is never written)."""
        wait_until(once_seen, 20, interval=0.1, what="tcpdump to write the packets sent")
        self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends it: it is tcpdump by now
        _, rest = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, self.said + rest
        return self.said + rest


def pings(pcap: Path) -> list[tuple[str, str, int]]:
    return [(p[IP].src, p[IP].dst, p[ICMP].type) for p in rdpcap(str(pcap)) if ICMP in p]


def holds(pcap: Path, count: int):
    """Whether pcap holds count ICMP packets yet (it is written packet by packet)."""
    def enough() -> bool:
        try:
            return len(pings(pcap)) >= count
        except Scapy_Exception:  # not even the pcap header written yet
            return False
    return enough


HOST1, HOST2 = "172.20.1.11", "172.20.2.11"


def ping_host2(count: int = 3) -> None:
    ping = calisim("exec", "--lab", LAB, "host1", "--", "ping", "-c", str(count), "-i", "0.2", HOST2)
    assert ping.returncode == 0, ping.stdout + ping.stderr


@pytest.mark.parametrize("target", ["host1:host1-eth0", "tor1:tor1-eth0"], ids=["host", "router"])
def test_icmp_on_a_nodes_interface_while_host1_pings(workloads, target, tmp_path, untouched):
    pcap = tmp_path / "capture.pcap"
    capture = Capture(target, "-f", "icmp", "-w", str(pcap), stdout=subprocess.DEVNULL)
    ping_host2()
    said = capture.stop(once_seen=holds(pcap, 6))
    assert f"listening on {target.split(':')[1]}, link-type EN10MB" in said
    assert pings(pcap) == [(HOST1, HOST2, 8), (HOST2, HOST1, 0)] * 3
    assert tcpdumps() == []


def test_without_a_file_tcpdumps_lines(workloads, tmp_path, untouched):
    lines = tmp_path / "lines.txt"
    with open(lines, "w") as out:
        capture = Capture("tor1", "-f", f"icmp and src {HOST1}", stdout=out)  # every interface of the ToR
        ping_host2(count=1)
        capture.stop(once_seen=lambda: lines.read_text().count("ICMP echo request") >= 2)
    shown = [line for line in lines.read_text().splitlines() if line]  # tcpdump ends its lines with a blank one
    request = re.escape(f"IP {HOST1} > {HOST2}: ICMP echo request, id ") + r"\d+, seq 1, length 64$"
    assert len(shown) == 2, shown  # in from the rack, out to the spine
    assert re.match(r"^[\d:.]+ tor1-eth0 In  " + request, shown[0]) and re.match(r"^[\d:.]+ tor1-eth1 Out " + request,
                                                                               shown[1]), shown
    assert tcpdumps() == []


def test_inside_a_container_to_standard_output(workloads, tmp_path, untouched):
    pcap = tmp_path / "wa.pcap"
    with open(pcap, "wb") as out:
        capture = Capture("host1/wa:cali0", "-w", "-", stdout=out)
        ping = calisim("exec", "--lab", LAB, "host1", "--", "docker", "exec", "wa", "ping", "-c", "2", workloads["wb"])
        assert ping.returncode == 0, ping.stdout + ping.stderr
        capture.stop(once_seen=holds(pcap, 4))
    echoes = [p for p in pings(pcap) if workloads["wb"] in p[:2]]
    assert echoes == [(workloads["wa"], workloads["wb"], 8), (workloads["wb"], workloads["wa"], 0)] * 2
    assert tcpdumps() == []


@pytest.mark.parametrize("target, args, says", [
    ("host9", [], "calisim: unknown host 'host9' (this topology has host1, host2, spine1, tor1, tor2)"),
    ("host1:eth9", [], "calisim: host1 has no interface 'eth9' (it has: lo, docker0, "),  # the kernel's order
    ("host1/nobody:cali0", [], "calisim: host1 has no container 'nobody' ("),
    ("host1/wa:eth9", [], "calisim: host1/wa has no interface 'eth9' (it has: lo, cali0, or any)"),
    ("host1:", [], "calisim: capture: 'host1:' is not NODE[:IFACE] or HOST/CONTAINER[:IFACE]"),
    ("host1", ["-f", "icmp or"], "calisim: capture: bad filter 'icmp or': can't parse filter expression"),
    ("host1", ["-w", "/nonexistent/x.pcap"], "calisim: capture: cannot write /nonexistent/x.pcap: No such file"),
])
def test_refusals_are_one_line_exit_2_and_nothing_runs(workloads, target, args, says, untouched):
    done = calisim("capture", "--lab", LAB, target, *args)
    assert done.returncode == 2 and done.stderr.startswith(says) and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == "" and tcpdumps() == []
    assert not os.path.exists("/nonexistent/x.pcap")


def test_pcap_is_not_written_to_a_terminal(workloads, untouched):
    """`-w -` on a terminal would print binary: refused, the way to pipe it named."""
    terminal, other_end = os.openpty()
    try:
        done = subprocess.run([PYTHON, "-m", "calisim", "capture", "--lab", LAB, "host1", "-w", "-"],
                              stdout=other_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(other_end)
        os.close(terminal)
    assert done.returncode == 2 and "pipe `-w -` into a program (wireshark -k -i -) or use -w FILE" in done.stderr
    assert tcpdumps() == []
