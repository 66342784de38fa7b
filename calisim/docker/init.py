"""A container's runtime (runc's part), started by the emulated dockerd as
``python -I -S init.py SPEC`` with a control socket (SPEC["control"], an fd).  Standard library only: it runs
before the container's root exists and must start fast.

It unshares mount, UTS, IPC, network and PID namespaces and forks the container's PID 1, which
mounts the image's layers under a writable overlayfs layer, /proc, a minimal /dev with its own
devpts, a read-only /sys, Docker's /etc/hosts, /etc/hostname and /etc/resolv.conf and the -v mounts, sets the
hostname, brings up lo and pivots into the root.  It then tells the daemon it is ready (with the
pty's master when the container has a TTY), waits for "go" (the daemon connects its network
first, as Docker does before the process starts) and execs the command.  The first process
stays outside the new PID namespace, reports PID 1's host PID and exits with its status (128+N
after signal N), so the daemon reads the container's exit code from its own child.

Control messages (JSON, SOCK_SEQPACKET): {"pid": N} from the first process, {"ready": true} from
PID 1, "go" from the daemon, {"error": "...", "code": N} if the command cannot be run; EOF after
"go" means the command is running.

The first process is also the container's shim: it keeps the output pipes' read ends (SPEC["held"])
or a copy of the pty master open while the container runs, so that the container outlives its
dockerd, writes SPEC["runtime"] (its PID, PID 1's, those descriptors) for a dockerd that adopts the
container, and writes the exit status to SPEC["exit"] before it exits.
"""

import ctypes
import fcntl
import json
import os
import signal
import socket
import stat
import struct
import sys
import termios
import warnings  # noqa: F401  os.execvpe imports it lazily, when the host's root is gone

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = (0x20000, 0x4000000, 0x8000000, 0x40000000,
                                                                       0x20000000)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
SYS_PIVOT_ROOT = 155  # x86_64
SIOCSIFFLAGS, IFF_UP = 0x8914, 1
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    check(libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None), f"mount {target}")


def make_root(spec: dict) -> str:
    """The container's filesystem, mounted at spec["merged"] in this (new) mount namespace."""
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    root = spec["merged"]
    mount("overlay", root, "overlay", 0,
          f"lowerdir={':'.join(spec['lowerdirs'])},upperdir={spec['upper']},workdir={spec['work']}")
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV)
    mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"{root}/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(f"{root}/dev/{name}", 0o666)
    for directory in ("pts", "shm"):
        os.mkdir(f"{root}/dev/{directory}")
    mount("devpts", f"{root}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    mount("shm", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    for link, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{link}")
    mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name, source in spec["files"].items():  # Docker's /etc/hosts, /etc/hostname, /etc/resolv.conf
        target = f"{root}/etc/{name}"
        if not os.path.exists(target):
            open(target, "w").close()
        mount(source, target, None, MS_BIND)
    for source, destination, writable in spec.get("mounts", []):  # -v: host paths and volumes
        bind_in(root, source, destination, writable)
    return root


def bind_in(root: str, source: str, destination: str, writable: bool) -> None:
    """A host path at destination in the root (made there, in the writable layer, if missing):
    a directory's whole tree (MS_REC), read-only unless writable, as runc binds Docker's mounts."""
    target = root + destination
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "w").close()
    mount(source, target, None, MS_BIND | MS_REC)
    if not writable:
        mount(source, target, None, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY)


def enter_root(root: str, workdir: str) -> None:
    """pivot_root(".", ".") and detach the old root, as runc does."""
    os.chdir(root)
    check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir(workdir or "/")


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", IFF_UP))


def take_terminal(spec: dict, control: socket.socket, keep: socket.socket) -> None:
    """A pty from the container's own devpts; the master goes to the daemon and to the shim, the
    slave becomes stdin, stdout, stderr and the controlling terminal."""
    master, slave = os.openpty()
    height, width = spec["console"]
    # the client's size, before the command runs
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))]
    keep.sendmsg([b"master"], rights)
    control.sendmsg([json.dumps({"ready": True}).encode()], rights)
    os.close(master)
    os.setsid()
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    os.close(slave)


def container_main(spec: dict, control: socket.socket, keep: socket.socket) -> None:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for fd in spec.get("held", []):  # the shim's, not the command's
        os.close(fd)
    check(libc.sethostname(spec["hostname"].encode(), len(spec["hostname"])), "sethostname")
    loopback_up()
    enter_root(make_root(spec), spec.get("workdir", "/"))
    if spec.get("tty"):
        take_terminal(spec, control, keep)
    else:
        control.send(json.dumps({"ready": True}).encode())
    if control.recv(16) != b"go":
        os._exit(1)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; the command must not inherit that
    uid, gid, groups = spec.get("user", [0, 0, []])  # --user, as the daemon found it in the image's /etc
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    control.set_inheritable(False)  # closed by the exec: EOF tells the daemon the command runs
    cmd = spec["cmd"]
    try:
        os.execvpe(cmd[0], cmd, spec["env"])
    except OSError as error:
        reason = "executable file not found in $PATH" if error.errno == 2 and "/" not in cmd[0] else (
            "no such file or directory" if error.errno == 2 else
            "permission denied" if error.errno == 13 else os.strerror(error.errno))
        control.send(json.dumps({"error": f'exec: "{cmd[0]}": {reason}',
                                 "code": 126 if error.errno == 13 else 127}).encode())
        os._exit(126 if error.errno == 13 else 127)


def main() -> None:
    spec = json.loads(sys.argv[1])
    control = socket.socket(fileno=spec["control"])
    network = 0 if spec.get("network") == "host" else CLONE_NEWNET  # --net host: the host's own namespace
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | network | CLONE_NEWPID), "unshare")
    shims, keep = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # opened now: PID 1's pivot_root moves this process's root into the container too
    files = [os.open(spec[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644) if spec.get(name)
             else None for name in ("runtime", "exit")]
    pid = os.fork()
    if pid == 0:
        shims.close()
        try:
            container_main(spec, control, keep)
        except Exception as error:
            control.send(json.dumps({"error": str(error), "code": 128}).encode())
            os._exit(128)
    keep.close()
    control.send(json.dumps({"pid": pid}).encode())
    control.close()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _: os.kill(pid, number))  # pass on to PID 1
    shim(spec, pid, shims, *files)


def shim(spec: dict, pid: int, shims: socket.socket, runtime_file: int | None, status_file: int | None) -> None:
    """Hold the container's output (the pty master, once PID 1 sends it), say where, wait for PID
    1, write its status and exit with it."""
    outputs = dict(zip(spec.get("held", []), (1, 2)))
    if spec.get("tty"):
        _, ancillary, _, _ = shims.recvmsg(16, socket.CMSG_SPACE(4))  # EOF if PID 1 failed first
        outputs = {struct.unpack("i", data[:4])[0]: 1 for _, _, data in ancillary}
    shims.close()
    if runtime_file is not None:
        os.write(runtime_file, json.dumps({"shim": os.getpid(), "pid": pid, "tty": bool(spec.get("tty")),
                                           "outputs": outputs}).encode())
        os.close(runtime_file)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if status_file is not None:
        os.write(status_file, str(code).encode())
    os._exit(code)


if __name__ == "__main__":
    main()
