"""calicoctl node run / status: start this host's calico-node and report its BGP sessions.

Kept apart from the datastore commands so that `calicoctl node run`, run once per host when a
cluster starts, does not pay for importing the etcd client (calico-node itself talks to etcd).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import socket
import subprocess
import sys
import time

from ..node import NodePaths
from ..node.zygote import MODULES
from ..process import pids
from . import CommandError, client

NODE_START_TIMEOUT = 60.0


def stop_running_node(paths: NodePaths, timeout: float = 10.0) -> bool:
    pid = paths.running_pid()
    if pid is None:
        return False
    pids.stop([pid], timeout)
    return True


def cmd_node_run(args: argparse.Namespace) -> str:
    """Start this host's calico-node and relay what its startup says (as the calico/node container does)."""
    name = args.name or socket.gethostname()
    from ..datastore.resources import ValidationError, parse_as_number, parse_name

    try:
        parse_name(name, "--name")
        if args.as_number is not None:
            parse_as_number(args.as_number, "--as")
    except ValidationError as error:
        raise CommandError(str(error)) from None
    check_ip6(args.ip6)
    if not os.environ.get("ETCD_ENDPOINTS"):
        raise CommandError("ETCD_ENDPOINTS is not set; point it at the cluster's etcd (e.g. http://192.168.3.229:2379)")
    paths = NodePaths()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    if stop_running_node(paths):
        print("Removing old calico-node (was running).")
    command = [sys.executable, "-m", "calisim.node", "--name", name, "--backend", args.backend]
    if args.ip and args.ip != "autodetect":
        command += ["--ip", args.ip]
    if args.ip6:
        command += ["--ip6", args.ip6]
    if args.as_number is not None:
        command += ["--as", str(parse_as_number(args.as_number))]
    if args.no_default_ippools:
        command.append("--no-default-ippools")
    return start_daemon(command, paths, "calico-node")


def check_ip6(value: str | None) -> None:
    """calicoctl's own check of --ip6 (calico-node then checks that the host has it)."""
    if value is None or value == "autodetect":
        return
    try:
        address = ipaddress.ip_interface(value)
    except ValueError:
        raise CommandError(f"Error executing command: invalid IP address specified: {value}") from None
    if address.version != 6:
        raise CommandError("Error executing command: --ip6 is wrong IP version")


def start_daemon(command: list[str], paths: NodePaths, what: str) -> str:
    """Start a daemon (calico-node, a route reflector) in its own session, its output in its log,
    and relay what it says on a status pipe until it is up (as the containers' `docker run` did)."""
    read_end, write_end = os.pipe()
    with open(paths.node_log, "ab") as logfile:
        process = launch(command + ["--status-fd", str(write_end)], write_end, logfile)
    os.close(write_end)
    print(f"Starting {what} (pid {process.pid}); logs in {paths.log_dir}")
    with os.fdopen(read_end) as status:
        return relay_startup(status, process, paths)


def launch(command: list[str], status_fd: int, logfile) -> "subprocess.Popen | client.ForkedProcess":
    """`python -m MODULE ...` forked by the run's node zygote when there is one (imports already
    done, pages shared), else executed."""
    if os.environ.get(client.ZYGOTE_ENV) and command[1:2] == ["-m"] and command[2] in MODULES:
        with open(os.devnull, "rb") as devnull:
            try:
                return client.spawn(command[2], command[3:], {0: devnull.fileno(), 1: logfile.fileno(),
                                                              2: logfile.fileno(), status_fd: status_fd})
            except client.ZygoteError as error:
                logfile.write(f"{error}; starting it without the zygote\n".encode())  # the log is binary
                logfile.flush()
    return subprocess.Popen(command, pass_fds=(status_fd,), stdin=subprocess.DEVNULL, stdout=logfile,
                            stderr=logfile, start_new_session=True)


def relay_startup(status, process: subprocess.Popen, paths: NodePaths) -> str:
    """Print what the daemon says while it starts; return its final line, or raise CommandError."""
    deadline = time.monotonic() + NODE_START_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([status], [], [], 0.5)
        if not ready:
            continue
        line = status.readline()
        if not line:
            break
        word, _, text = line.rstrip("\n").partition(" ")
        if word == "READY":
            return text
        if word == "ERROR":
            process.wait(timeout=10)
            raise CommandError(f"{'Calico node' if paths.daemon == 'calico-node' else paths.daemon} failed to start: {text}")
        print(text, flush=True)
    else:
        process.kill()
        process.wait()
        raise CommandError(f"{paths.daemon} did not finish starting within {NODE_START_TIMEOUT:.0f}s; see {paths.node_log}")
    code = process.wait(timeout=10)
    raise CommandError(f"{paths.daemon} exited with code {code} during startup; see {paths.node_log}")


def cmd_node_status() -> str:
    from ..node import bird
    from .output import boxed_table

    paths = NodePaths()
    if paths.running_pid() is None:
        raise CommandError("Calico process is not running.")
    try:
        peers = bird.bgp_peer_statuses(bird.BirdControl(paths.bird_socket).protocols())
    except bird.BirdError as error:
        raise CommandError(f"Calico process is running.\n\nError executing command: unable to connect to BIRDv4 socket: {error}")
    lines = ["Calico process is running."]
    for version in (4, 6):  # calicoctl asks BIRD and then bird6; here one BIRD has both
        family = [p for p in peers if ipaddress.ip_address(p.peer_ip).version == version]
        lines += ["", f"IPv{version} BGP status"]
        if family:
            lines.append(boxed_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                                     [[p.peer_ip, p.peer_type, p.state, p.since, p.info] for p in family]).rstrip("\n"))
        else:
            lines.append(f"No IPv{version} peers found.")
    return "\n".join(lines + [""])
