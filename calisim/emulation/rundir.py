"""The per-run directory: every config, socket, pid file and log of one run, kept for reading
after a failure.  Runs go under $CALISIM_RUNS (default /var/tmp/calisim), newest linked as ``latest``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import overlay

DEFAULT_BASE = Path("/var/tmp/calisim")
SOCKET_PATH_MAX = 107  # sun_path; the longest socket below a run is hosts/<host>/run/bird.ctl
LONGEST_SOCKET_SUFFIX = len("/hosts/host1000/run/bird.ctl")


class RunDirError(ValueError):
    """The run directory cannot be used (its sockets' paths would be too long)."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    @staticmethod
    def check_base(base: Path | None, label: str) -> Path:
        """The base directory runs labelled label go under; RunDirError if its sockets would not fit."""
        base = Path(base or os.environ.get("CALISIM_RUNS") or DEFAULT_BASE).absolute()
        try:
            overlay.check_outside_views(base)
        except overlay.OverlayError as error:
            raise RunDirError(str(error)) from None
        name_length = len("/20261128-213921-") + len(label) + len("-12345678")
        if len(str(base)) + name_length + LONGEST_SOCKET_SUFFIX > SOCKET_PATH_MAX:
            raise RunDirError(f"run directory base {base} is too long: unix socket paths below it would exceed "
                              f"{SOCKET_PATH_MAX} bytes; choose a shorter CALISIM_RUNS or --run-dir")
        return base

    @classmethod
    def create(cls, label: str, base: Path | None = None) -> "RunDir":
        base = cls.check_base(base, label)
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{label}-", dir=base))
        latest = base / "latest"
        try:
            latest.unlink(missing_ok=True)
            latest.symlink_to(path.name)
        except OSError:
            pass  # a concurrent run took the link; it is only a convenience
        return cls(path)

    def host(self, name: str) -> Path:
        """A host's state: run/ (its /var/run/calico), log/ (/var/log/calico), docker/
        (/run/docker: plugin sockets, docker.sock, containers), home/ (where its commands run) and
        overlay/etc/upper, overlay/var-lib/upper (what it wrote into its /etc and /var/lib)."""
        return self.path / "hosts" / name

    @property
    def etcd(self) -> Path:
        return self.path / "etcd"

    @property
    def log(self) -> Path:
        return self.path / "calisim.log"
