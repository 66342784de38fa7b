"""Faults, the one object the rest uses (``cluster.faults``): every kind of fault on one cluster."""

from __future__ import annotations

import contextlib
import shlex
import subprocess

from . import servers
from .base import FaultError
from .daemons import DaemonFaults
from .hosts import HostFaults
from .links import LinkFaults


class Faults(LinkFaults, HostFaults, DaemonFaults):
    """The faults of one running cluster (see calisim.emulation.faults)."""

    def close(self) -> None:
        """Unmount the pins' bpffs, here and on every other server that has them, before its run
        directory is gathered (the programs go with the namespaces they are attached in)."""
        if self.pin_root.is_dir():
            subprocess.run(["umount", str(self.pin_root)], capture_output=True)
        for node in self.pinned_on.values():
            with contextlib.suppress(FaultError):  # a server gone took its mounts with it
                servers.run_there(node, f"umount {shlex.quote(str(self.pin_root))} 2>/dev/null; true")
        self.pinned_on.clear()
