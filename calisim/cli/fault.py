"""`calisim fault VERB ...`: the command face of calisim.emulation.faults, one verb per Faults
method.  The CLI checks a command line here before it asks a lab to carry it out; the lab (or a
transcript run's control socket, for `lab$ calisim fault ...` steps) is handed run_command.
"""

from __future__ import annotations

import argparse
import json

from ..emulation.faults import SIGNALS, FaultError, Faults, parse_milliseconds, parse_percent, parse_rate


class _FaultParser(argparse.ArgumentParser):
    """argparse that raises FaultError (one line) instead of exiting: the lab answers it."""

    def error(self, message: str) -> None:
        raise FaultError(f"fault: {message}")


def command_parser(prog: str = "calisim fault") -> argparse.ArgumentParser:
    """The verbs of `calisim fault`, one per Faults method."""
    parser = _FaultParser(prog=prog, description="break a running cluster on purpose (calisim.emulation.faults)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def link_verb(name: str, help: str, *values: str) -> argparse.ArgumentParser:
        verb = verbs.add_parser(name, help=help)
        verb.add_argument("a", metavar="A")
        verb.add_argument("b", metavar="B")
        for value in values:
            verb.add_argument(value.lower(), metavar=value)
        return verb

    link_verb("link", "take the link between nodes A and B (e.g. host2 s1) down or up", "STATE")
    for name in ("loss", "corrupt", "duplicate"):
        link_verb(name, f"{name} PERCENT of the packets on the link A-B, both ways (5 or 5%%)", "PERCENT")
    delay = link_verb("delay", "delay the link A-B by MS (50, 50ms, 1s) and JITTER (needs the kernel's netem)",
                      "MS")
    delay.add_argument("jitter_ms", metavar="JITTER", nargs="?", default="0")
    link_verb("rate", "limit the link A-B, e.g. 10mbit", "RATE")
    link_verb("clear", "lift every impairment of the link A-B")
    for name in SIGNALS:
        verb = verbs.add_parser(name, help=f"{name} DAEMON on HOST (--leader etcd: the etcd member leading now)")
        verb.add_argument("--leader", action="store_true", help="the etcd member that leads the cluster now")
        verb.add_argument("host", metavar="HOST", nargs="?")
        verb.add_argument("daemon", metavar="DAEMON")
    start = verbs.add_parser("start", help="start a daemon left down")
    start.add_argument("host", metavar="HOST")
    start.add_argument("daemon", metavar="DAEMON")
    partition = verbs.add_parser("partition",
                                 help="drop HOST's traffic in the underlay (all, from etcd, or from HOSTs)")
    partition.add_argument("host", metavar="HOST")
    partition.add_argument("peers", metavar="PEER", nargs="*")
    partition.add_argument("--from", dest="from_", metavar="etcd", choices=("etcd",))
    heal = verbs.add_parser("heal", help="lift the partition of HOST (without HOST: every partition)")
    heal.add_argument("host", metavar="HOST", nargs="?")
    for name, help in (("crash", "every process of HOST and its containers gone at once"),
                       ("boot", "a crashed HOST back, ready for calicoctl node run")):
        verbs.add_parser(name, help=help).add_argument("host", metavar="HOST")
    verbs.add_parser("list", help="the faults in force")
    return parser


def check_values(args: argparse.Namespace) -> None:
    """The values of a parsed command line (percent, rate, milliseconds, link state), checked
    before anything is done: what can be refused without the cluster is refused here."""
    if args.verb == "link" and args.state not in ("down", "up"):
        raise FaultError(f"fault link: state must be down or up, not {args.state!r}")
    if args.verb in ("loss", "corrupt", "duplicate"):
        parse_percent(args.percent, args.verb)
    if args.verb == "rate":
        parse_rate(args.rate)
    if args.verb == "delay":
        parse_milliseconds(args.ms, "delay")
        parse_milliseconds(args.jitter_ms, "jitter")
    if args.verb in SIGNALS and args.leader and (args.host or args.daemon != "etcd"):
        raise FaultError(f"fault {args.verb} --leader: the leader is etcd's: `{args.verb} --leader etcd`")
    if args.verb in SIGNALS and not args.leader and not args.host:
        raise FaultError(f"fault {args.verb}: HOST DAEMON, or --leader etcd")
    if args.verb == "partition" and args.from_ and args.peers:
        raise FaultError("fault partition: --from etcd or a list of hosts, not both")


def run_command(faults: Faults, argv: list[str]) -> str:
    """Carry out one `calisim fault` command line; returns what to print (FaultError if refused)."""
    args = command_parser().parse_args(argv)
    check_values(args)
    verb = args.verb
    if verb == "link":
        faults.link(args.a, args.b, args.state)
    elif verb in ("loss", "corrupt", "duplicate"):
        getattr(faults, verb)(args.a, args.b, args.percent)
    elif verb == "delay":
        faults.delay(args.a, args.b, args.ms, args.jitter_ms)
    elif verb == "rate":
        faults.rate(args.a, args.b, args.rate)
    elif verb == "clear":
        faults.clear(args.a, args.b)
    elif verb in SIGNALS and args.leader:
        return f"fault {' '.join(argv)}: done ({faults.signal_leader(verb)} led the etcd cluster)"
    elif verb in (*SIGNALS, "start"):
        getattr(faults, verb)(args.host, args.daemon)
    elif verb == "partition":
        faults.partition(args.host, args.peers or None, from_etcd=args.from_ == "etcd")
    elif verb == "heal":
        faults.heal(args.host)
    elif verb in ("crash", "boot"):
        getattr(faults, verb)(args.host)
    else:
        return "\n".join(json.dumps(fault, sort_keys=True) for fault in faults.active())
    return f"fault {' '.join(argv)}: done"
