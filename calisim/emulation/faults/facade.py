"""Faults, the one object the rest uses (``cluster.faults``): every kind of fault on one cluster."""

from __future__ import annotations

import subprocess

from .daemons import DaemonFaults
from .hosts import HostFaults
from .links import LinkFaults


class Faults(LinkFaults, HostFaults, DaemonFaults):
    """The faults of one running cluster (see calisim.emulation.faults)."""

    def close(self) -> None:
        """Unmount the pins' bpffs (the programs go with the namespaces they are attached in)."""
        if self.pin_root.is_dir():
            subprocess.run(["umount", str(self.pin_root)], capture_output=True)
