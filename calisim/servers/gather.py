"""Every server's run directory (its hosts' logs and files) gathered into the controller's run
directory at ``servers/<name>/`` when the run ends: one tar stream a server over its ssh
connection, so what a remote host wrote can be read where the run was started.

A simulated server's directory already is ``servers/<name>/`` here (its PID 1 shows it at the run
directory's path): that is found out, not assumed, by a marker written here and looked for there,
and then nothing is copied (copying a directory onto itself would truncate the files it reads).
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 300.0  # a server's whole directory; logs of a long run may be large
LEFT_OUT = ("./ssh",)  # a simulated server's sshd keys and config: not logs, and its host key is private
TAR_CHANGED = 1  # GNU tar: a file changed while read (a log still written): the rest is good


@dataclass(frozen=True)
class Gathered:
    """What gathering one server's directory did: copied, already here, or why it could not."""

    server: str
    into: Path
    outcome: str  # "copied", "already here" or "failed"
    detail: str = ""

    def line(self) -> str:
        if self.outcome == "failed":
            return f"{self.server}: its run directory was not gathered ({self.detail})"
        return f"{self.server}: run directory {self.outcome} in {self.into}"


def gather(server: str, ssh: list[str], remote_dir: Path, into: Path, timeout: float = TIMEOUT) -> Gathered:
    """Copy remote_dir on server (reached with the ssh command given) into into; never raises for a
    server that is gone: the run is ending, and the others' logs are still wanted."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        if _shared(ssh, remote_dir, into, timeout):
            return Gathered(server, into, "already here")
        return _copy(server, ssh, remote_dir, into, timeout)
    except subprocess.TimeoutExpired:
        return Gathered(server, into, "failed", f"no answer within {timeout:.0f}s")
    except OSError as error:
        return Gathered(server, into, "failed", str(error))


def gather_all(servers: dict[str, list[str]], remote_dir: Path, run_dir: Path) -> list[Gathered]:
    """Every server's (name -> its ssh command) directory into run_dir/servers/<name>/, every
    server at once (each is a round trip at least, over its own connection)."""
    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        return list(pool.map(lambda item: gather(item[0], item[1], remote_dir, run_dir / "servers" / item[0]),
                             servers.items()))


def _shared(ssh: list[str], remote_dir: Path, into: Path, timeout: float) -> bool:
    """True when the server sees into at remote_dir (a simulated server on this machine)."""
    marker = into / f".gather-{secrets.token_hex(8)}"
    marker.touch()
    try:
        probe = subprocess.run([*ssh, f"test -e {shlex.quote(str(remote_dir / marker.name))}"],
                               capture_output=True, text=True, timeout=timeout)
    finally:
        marker.unlink()
    if probe.returncode == 255:
        raise OSError(_last_line(probe.stderr, "ssh failed"))
    return probe.returncode == 0


def _copy(server: str, ssh: list[str], remote_dir: Path, into: Path, timeout: float) -> Gathered:
    excluded = " ".join(f"--exclude={shlex.quote(path)}" for path in LEFT_OUT)
    remote = f"tar --warning=no-file-ignored {excluded} -C {shlex.quote(str(remote_dir))} -cf - ."
    with subprocess.Popen([*ssh, remote], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as sender:
        receiver = subprocess.run(["tar", "-C", str(into), "-xf", "-"], stdin=sender.stdout,
                                  capture_output=True, text=True, timeout=timeout)
        sender.stdout.close()
        sent = sender.wait(timeout=timeout)
        sender_errors = sender.stderr.read().decode(errors="replace")
    if sent not in (0, TAR_CHANGED):
        return Gathered(server, into, "failed", _last_line(sender_errors, f"tar exited {sent} there"))
    if receiver.returncode != 0:
        return Gathered(server, into, "failed", _last_line(receiver.stderr, f"tar exited {receiver.returncode} here"))
    return Gathered(server, into, "copied")


def _last_line(text: str, otherwise: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else otherwise
