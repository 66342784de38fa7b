"""calicoctl node diags / node checksystem: what a Calico operator collects from a node and
checks on it, in calicoctl v1.0's words.

`diags` gathers, as calicoctl's runDiags does, the host's date, name, sockets, routes and
addresses, then calisim's equivalents of iptables-save and ipset (the nftables ruleset), BIRD's
protocols and routes (from its control socket), this node's etcd keys and a copy of
/var/log/calico, into diags-<time>.tar.gz in a fresh temporary directory ($TMPDIR, else /tmp).

`checksystem` checks the kernel version and what calisim's dataplane needs instead of Calico's
xt_set and ip6_tables: nf_tables (policy), IP forwarding in this host, the IPIP backend that
calico-node would use here, and BIRD.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..node import NodePaths
from .errors import CommandError

MIN_KERNEL_VERSION = (2, 6, 24)  # network namespaces and veth pairs, as calicoctl requires


@dataclass(frozen=True)
class DiagCommand:
    info: str  # what calicoctl prints before running it ("" for nothing)
    argv: tuple[str, ...]
    filename: str


DIAG_COMMANDS = (
    DiagCommand("", ("date",), "date"),
    DiagCommand("", ("hostname",), "hostname"),
    DiagCommand("Dumping netstat", ("ss", "--all", "--numeric"), "netstat"),
    DiagCommand("Dumping routes (IPv4)", ("ip", "-4", "route"), "ipv4_route"),
    DiagCommand("Dumping routes (IPv6)", ("ip", "-6", "route"), "ipv6_route"),
    DiagCommand("Dumping interface info (IPv4)", ("ip", "-4", "addr"), "ipv4_addr"),
    DiagCommand("Dumping interface info (IPv6)", ("ip", "-6", "addr"), "ipv6_addr"),
    DiagCommand("Dumping nftables (calisim's iptables and ipsets)", ("nft", "list", "ruleset"), "nftables"),
)


def run_diag(command: DiagCommand, directory: Path) -> None:
    """Run one command and keep its output; a failure is printed and the rest goes on."""
    if command.info:
        print(command.info, flush=True)
    try:
        done = subprocess.run(command.argv, capture_output=True, text=True, timeout=30)
        output = done.stdout
        if done.returncode != 0:
            print(f"exit status {done.returncode}")
    except (OSError, subprocess.TimeoutExpired) as error:
        output = ""
        print(error)
    (directory / command.filename).write_text(output)


def node_name(paths: NodePaths) -> str:
    """The running calico-node's --name (from its command line), else this host's name."""
    pid = paths.running_pid()
    if pid is not None:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        if "--name" in argv[:-1]:
            return argv[argv.index("--name") + 1]
    return socket.gethostname()


def dump_bird(paths: NodePaths, directory: Path) -> None:
    print("Dumping BIRD state", flush=True)
    for command, filename in (("show protocols all", "bird_protocols"), ("show route", "bird_routes")):
        done = subprocess.run(["birdc", "-s", str(paths.bird_socket), *command.split()], capture_output=True, text=True)
        (directory / filename).write_text(done.stdout + done.stderr)


def dump_etcd_keys(name: str, directory: Path) -> None:
    """Every key of this node (its host, BGP and IPAM affinity subtrees), one JSON object a line."""
    print("Dumping etcd keys of this node", flush=True)
    from ..datastore import Datastore, DatastoreError, Synchronous, keys

    prefixes = [keys.host(name), keys.bgp_host(name), keys.ipam_host(name)]
    lines = []
    try:
        with Synchronous(Datastore.from_env()) as ds:
            for prefix in prefixes:
                lines += [json.dumps({"key": e.key, "value": e.value}) for e in ds.list(prefix)]
    except DatastoreError as error:
        print(f"Error reading the datastore: {error}")
    (directory / "etcd_keys").write_text("".join(line + "\n" for line in lines))


def enforce_root() -> None:
    if os.geteuid() != 0:
        raise CommandError("Need super user privileges: Operation not permitted")


def cmd_node_diags(args: argparse.Namespace) -> str:
    enforce_root()
    paths = NodePaths()
    log_dir = Path(args.log_dir) if args.log_dir else paths.log_dir
    print("Collecting diagnostics")
    temp_dir = Path(tempfile.mkdtemp(prefix="calico"))
    print("Using temp dir:", temp_dir)
    diagnostics = temp_dir / "diagnostics"
    diagnostics.mkdir()
    for command in DIAG_COMMANDS:
        run_diag(command, diagnostics)
    dump_bird(paths, diagnostics)
    dump_etcd_keys(node_name(paths), diagnostics)
    if log_dir.is_dir():
        print("Copying Calico logs")
        shutil.copytree(log_dir, diagnostics / "logs")
    elif log_dir.exists():
        print(f"No logs found in {log_dir}; skipping log copying")
    else:
        print(f"Error copying log files: stat {log_dir}: no such file or directory")
    archive = temp_dir / f"diags-{time.strftime('%Y%m%d_%H%M%S')}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(diagnostics, arcname="diagnostics")
    return (f"\nDiags saved to {archive}\n"
            "If required, you can upload the diagnostics bundle to a file sharing service \n"
            "such as transfer.sh using curl or similar.  For example:\n\n"
            f"    curl --upload-file {archive} https://transfer.sh/{archive}")


def print_result(value: str, result: str) -> None:
    """calicoctl's `\\t\\t%-20s\\t\\t\\t\\t\\t%s` line."""
    print(f"\t\t{value:<20}\t\t\t\t\t{result}")


def kernel_version() -> tuple[str, tuple[int, ...]]:
    release = os.uname().release
    return release, tuple(int(part) for part in re.findall(r"\d+", release)[:3])


def check_kernel_version() -> bool:
    release, version = kernel_version()
    if version >= MIN_KERNEL_VERSION:
        print_result(release, "OK")
        return True
    print_result(release, "FAIL")
    print(f"Minimum kernel version to run Calico is {'.'.join(map(str, MIN_KERNEL_VERSION))}. "
          f"Detected kernel version: {release}")
    return False


def module_present(module: str, release: str) -> bool:
    """As calicoctl: a loadable module (modules.dep), a built-in one (modules.builtin), or loaded."""
    pattern = re.compile(rf"/{re.escape(module)}\.ko")
    for listing in ("modules.dep", "modules.builtin"):
        try:
            if pattern.search(Path(f"/lib/modules/{release}/{listing}").read_text()):
                return True
        except OSError:
            continue
    try:
        return re.search(rf"^{re.escape(module)}\s", Path("/proc/modules").read_text(), re.M) is not None
    except OSError:
        return False


def nf_tables_works() -> bool:
    """The kernel answers nftables' netlink (a kernel may build it in and list no modules)."""
    return (shutil.which("nft") is not None
            and subprocess.run(["nft", "list", "tables"], capture_output=True).returncode == 0)


def check_kernel_modules() -> bool:
    """nf_tables instead of Calico's xt_set (calisim's policy is one nftables table); ip6_tables
    missing is only a warning, as in calicoctl."""
    release, _ = kernel_version()
    missing = []
    for module in ("nf_tables", "ip6_tables"):
        if module_present(module, release) or module == "nf_tables" and nf_tables_works():
            print_result(module, "OK")
        else:
            print(f"WARNING: Unable to detect the {module} module as Loaded/Builtin module or lsmod")
            print_result(module, "FAIL")
            missing.append(module)
    if missing == ["ip6_tables"]:
        print("WARNING: IPv6 will be unavailable as ip6_tables kernel module is not found")
        return True
    return not missing


def check_forwarding() -> bool:
    try:
        enabled = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    except OSError:
        enabled = False
    print_result("net.ipv4.ip_forward", "OK" if enabled else "FAIL")
    if not enabled:
        print("IPv4 forwarding is off in this host: workloads could not be routed")
    return enabled


def check_ipip_backend() -> bool:
    """The backend calico-node would take here (CALICO_IPIP_BACKEND, auto by default) and whether it works."""
    from ..felix import ipip

    requested = os.environ.get("CALICO_IPIP_BACKEND", "auto")
    if requested not in ("auto", *ipip.BACKENDS):
        print_result(requested, "FAIL")
        print(f"CALICO_IPIP_BACKEND must be auto, {', '.join(ipip.BACKENDS)}, not {requested!r}")
        return False
    backend = ipip.choose_backend(requested)
    works = {"kernel": ipip.kernel_ipip_available, "ebpf": ipip.ebpf_available,
             "userspace": lambda: Path("/dev/net/tun").exists()}[backend]()
    print_result(f"ipip: {backend}", "OK" if works else "FAIL")
    if not works:
        print(f"The {backend} IPIP backend cannot run on this host")
    return works


def check_bird() -> bool:
    found = shutil.which("bird")
    version = subprocess.run([found, "--version"], capture_output=True, text=True) if found else None
    text = (version.stdout + version.stderr).strip().replace("BIRD version ", "bird ") if version else ""
    if version is None or version.returncode != 0:
        print_result("bird", "FAIL")
        print("BIRD (bird2) is not installed: BGP cannot run")
        return False
    print_result(text or "bird", "OK")
    return True


def cmd_node_checksystem(args: argparse.Namespace) -> str:
    enforce_root()
    checks = (("Checking kernel version...", check_kernel_version),
              ("Checking kernel modules...", check_kernel_modules),
              ("Checking IPv4 forwarding...", check_forwarding),
              ("Checking IPIP backend...", check_ipip_backend),
              ("Checking BIRD...", check_bird))
    system_ok = True
    for heading, check in checks:
        print(heading, flush=True)
        system_ok = check() and system_ok
    if not system_ok:
        raise CommandError("System doesn't meet one or more minimum systems requirements to run Calico")
    return "System meets minimum system requirements to run Calico!"
