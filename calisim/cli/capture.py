"""`calisim capture [--lab NAME] NODE[:IFACE] [-f FILTER] [-w FILE | -]`: tcpdump in a lab's node
or container (calisim.emulation.capture), pcap to a file or to standard output, for Wireshark:

    calisim capture host1:tunl0 -w - | wireshark -k -i -

Everything is checked first (the lab, the node or container, the interface, the filter, the
output file), each refusal one line and exit 2 with nothing started; then this process becomes
tcpdump, so Ctrl-C ends the capture as it ends tcpdump: the pcap flushed and complete."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys



def add_capture_command(commands) -> None:
    capture = commands.add_parser(
        "capture", help="capture packets in a lab's host, router, reflector or container (pcap for Wireshark)",
        description="tcpdump in a lab's node, e.g. `calisim capture host1:tunl0 -w - | wireshark -k -i -`; "
                    "Ctrl-C ends it")
    capture.add_argument("--lab", metavar="NAME", help="the lab (may be left out while one lab runs)")
    capture.add_argument("target", metavar="NODE[:IFACE]",
                         help="host1, tor1, rr1 or host1/workload-A (a container), then :IFACE (default: any)")
    capture.add_argument("-f", "--filter", metavar="FILTER",
                         help="a pcap filter expression, e.g. 'icmp or tcp port 179'")
    capture.add_argument("-w", "--write", metavar="FILE",
                         help="write pcap to FILE, or to standard output with - (default: one line a packet)")


def lab_capture(args: argparse.Namespace) -> None:
    from ..emulation import lab
    from ..emulation.capture import ANY, Target, tcpdump_argv  # Mininet's: only once the command runs

    try:
        target = Target.parse(args.target)
    except ValueError as error:
        raise lab.LabError(str(error)) from None
    if args.write == "-" and sys.stdout.isatty():
        raise lab.LabError("capture: pcap is binary: pipe `-w -` into a program (wireshark -k -i -) or use -w FILE")
    record = lab.Registry().find(args.lab)
    found = record.client().call("locate", node=target.node, container=target.container)
    if target.interface != ANY and target.interface not in found["interfaces"]:
        raise lab.LabError(f"{target.where} has no interface {target.interface!r} "
                           f"(it has: {', '.join(found['interfaces'])}, or any)")
    argv = tcpdump_argv(record.pid, found["pid"], target.interface, text=args.write is None)
    if args.filter:
        check_filter(argv, args.filter)
        argv.append(args.filter)
    if args.write not in (None, "-"):
        try:
            output = os.open(args.write, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            raise lab.LabError(f"capture: cannot write {args.write}: {error.strerror}") from None
        os.dup2(output, sys.stdout.fileno())
        os.close(output)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def check_filter(argv: list[str], expression: str) -> None:
    """tcpdump -d compiles the filter for the interface and exits: a bad one is refused before
    the capture starts, in tcpdump's own words."""
    from ..emulation import lab

    compiled = subprocess.run([*argv, "-d", expression], capture_output=True, text=True, timeout=30)
    if compiled.returncode != 0:
        said = [line for line in compiled.stderr.splitlines() if line.startswith("tcpdump:")]
        raise lab.LabError(f"capture: bad filter {expression!r}: "
                           f"{(said[-1] if said else compiled.stderr.strip()).removeprefix('tcpdump: ')}")
