"""Each host's own /etc and /var/lib: copy-on-write views of the machine's (overlayfs).

Mininet's hosts share the machine's filesystem, so `touch /etc/x` on one emulated host would
write the machine's /etc and show on every other host.  Instead each host's mount namespace
gets an overlay on /etc and on /var/lib: the host reads the machine's files until it writes
one, and its writes land in its run directory (``hosts/<name>/overlay/etc/upper``), seen by no
other host and never by the machine, and kept there with the run's logs.  /tmp, /run and the
rest stay shared (transcripts pass values between hosts through /tmp).

There is no fall-back: a run whose hosts cannot get their views stops before any daemon starts.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

COPY_ON_WRITE = ("/etc", "/var/lib")
FORBIDDEN_IN_OPTIONS = ",: \t\n"  # separators of overlayfs's options and of fstab: no way to name such a path


class OverlayError(RuntimeError):
    """A host cannot get its copy-on-write views (the run must not start without them)."""


@dataclass(frozen=True)
class View:
    """One directory of a host seen through an overlay whose upper and work directories are in state."""

    directory: str  # what the host sees, e.g. /etc
    state: Path  # hosts/<name>/overlay/etc

    @property
    def upper(self) -> Path:
        return self.state / "upper"

    @property
    def work(self) -> Path:
        return self.state / "work"

    def prepare(self) -> None:
        for path in (self.upper, self.work):
            path.mkdir(parents=True, exist_ok=True)

    def fstab_line(self, mount_point: str | None = None) -> str:
        """The view over directory (or, for a probe, over mount_point) as a line of fstab(5)."""
        options = f"lowerdir={self.directory},upperdir={self.upper},workdir={self.work},X-mount.mkdir"
        return fstab_line("overlay", mount_point or self.directory, "overlay", options)


def fstab_line(source: str, target: str, fstype: str, options: str) -> str:
    return f"{source} {target} {fstype} {options} 0 0\n"


def mount_all_command(fstab: Path) -> str:
    """One `mount` for every line of fstab, in order (one process instead of one a mount: a
    host's mounts are most of the time it takes to build)."""
    return f"mount --all --fstab {shlex.quote(str(fstab))}"


def views(state_dir: Path) -> list[View]:
    return [View(directory, Path(state_dir) / "overlay" / directory.strip("/").replace("/", "-"))
            for directory in COPY_ON_WRITE]


def check_outside_views(path: Path) -> None:
    """OverlayError if path (a run directory) cannot hold upper directories: inside a viewed
    directory, each host would see it through its own view (its sockets and logs would land
    in the view, not in the run directory), and overlayfs's options cannot name it."""
    resolved = Path(path).resolve()
    for directory in COPY_ON_WRITE:
        if resolved.is_relative_to(Path(directory).resolve()):
            raise OverlayError(f"the run directory {path} is inside {directory}, which every host sees through a "
                               f"copy-on-write view of its own: choose one outside {' and '.join(COPY_ON_WRITE)}")
    if any(character in str(resolved) for character in FORBIDDEN_IN_OPTIONS):
        raise OverlayError(f"the run directory {path!r} holds a comma, colon or white space, which overlayfs's "
                           "options cannot name: choose another")


def probe(directory: Path) -> None:
    """One overlay with its upper directory in directory, mounted in a throwaway mount namespace:
    OverlayError saying why if the kernel refuses it (so a run stops before any daemon starts)."""
    check_outside_views(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".overlay-probe-", dir=directory) as scratch:
        view, fstab = View("/etc", Path(scratch)), Path(scratch) / "fstab"
        view.prepare()
        fstab.write_text(view.fstab_line(mount_point=f"{scratch}/merged"))
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               mount_all_command(fstab)], capture_output=True, text=True)
    if done.returncode != 0:
        raise OverlayError(refusal(directory, done.stderr))


def refusal(directory: Path, stderr: str) -> str:
    """The one line saying why hosts cannot get their views with upper directories in directory."""
    line = next((line.strip() for line in stderr.splitlines() if line.strip()), "mount failed")
    why = re.sub(r"^mount: [^:]*: ", "", line).rstrip(".")  # the probe's own path says nothing
    if not overlayfs_known():
        return f"this kernel has no overlayfs, which gives each host its own /etc and /var/lib ({why})"
    return (f"overlayfs refuses {directory} ({filesystem_type(directory)}) as the upper directory of the hosts' "
            f"copy-on-write /etc and /var/lib ({why}): choose a run directory on another filesystem")


def overlayfs_known() -> bool:
    try:
        return any(line.split()[-1] == "overlay" for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


def filesystem_type(path: Path) -> str:
    done = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)], capture_output=True, text=True)
    return done.stdout.strip() or "unknown filesystem"


def etc_hosts(name: str) -> str:
    """A host's /etc/hosts as Debian's installer writes it on a machine named name."""
    return (f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n\n"
            "# The following lines are desirable for IPv6 capable hosts\n"
            "::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n")
