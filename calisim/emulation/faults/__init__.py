"""Faults: break a running cluster on purpose and put it back (``cluster.faults``).

    cluster.faults.link("host2", "s1", "down")        # both ends of every link between the two
    cluster.faults.loss("host2", "s1", 50)            # also corrupt(), duplicate(); rate("10mbit")
    cluster.faults.kill("host2", "bird")              # kill/term/stop/cont/start HOST DAEMON
    cluster.faults.kill("rr1", "routereflector")      # a route reflector's BIRD
    cluster.faults.partition("host2", from_etcd=True) # or partition("host2", ["host3"]); heal()
    cluster.faults.crash("host2"); cluster.faults.boot("host2")
    cluster.faults.active()                           # what is broken now (also in faults.json)

It talks to the emulation the way a person at the machines would: `ip link`, `tc` and `bpftool`
run in the node's network namespace, signals sent to the daemons' PIDs (from their pid files),
`calicoctl node run` in a host.  By what they break: links.py (down, loss, delay, rate...; the
eBPF impair program of bpf.py where the kernel has no netem), partitions.py, daemons.py (signals,
start), hosts.py (crash, boot); facade.py is ``Faults``, all of them on one cluster; servers.py
reaches a node of another server (``--servers``) through that server, never through this
machine's /proc.  The `calisim fault` command's parser sits beside the CLI (calisim/cli/fault.py).

Every fault is appended with a timestamp to faults.log in the run directory and the faults still
in force are kept in faults.json there.  Bad input raises FaultError (one line) before anything
changes.
"""

from .base import NETEM_MISSING, FaultError, Impairment, Partition, netem_available, nsexec
from .bpf import threshold
from .daemons import DAEMONS, SIGNALS
from .facade import Faults
from .links import parse_milliseconds, parse_percent, parse_rate

__all__ = ["DAEMONS", "NETEM_MISSING", "SIGNALS", "FaultError", "Faults", "Impairment", "Partition", "netem_available",
           "nsexec", "parse_milliseconds", "parse_percent", "parse_rate", "threshold"]
