"""Real servers (``--servers A,B,C``): on each of B, C... a server sandbox like a simulated server's,
started over the user's own ssh (root, keys, BatchMode) by ``calisim.servers.boot``, and joined with
the controller's sandbox on A into one VXLAN underlay (``underlay.py``) at 198.18.0.0/24.

From there on they are what simulated servers are: the run's key and host keys, one multiplexed
ssh connection a server to 198.18.0.N, the same init and sshd.  The user's ssh and the
underlay's devices are made from A's own network namespace (the sandbox keeps a handle on it),
where the uplink is; nothing is added to any machine's own namespace.  Each server's sandbox
lasts as long as the user's ssh session that started it: ending that session (at the run's stop,
or with the run's death) has it stopped by its PID there and its directory removed.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Interface

from .processes import STOP_TIMEOUT
from .sim import (CONTROLLER, HANDSHAKE_TIMEOUT, START_TIMEOUT, UNDERLAY_BRIDGE, UNDERLAY_MTU, ServerError,
                  SimServer, SimServers)
from .underlay import Route, UnderlayJoin, link_mtu, new_vni, underlay_mtu

SSH_TIMEOUT = 10  # the user's ssh to a real server: its ConnectTimeout

log = logging.getLogger(__name__)


@dataclass
class RealServer(SimServer):
    """A real server's sandbox: its name as given, its sandbox's PID 1 *there* (no PID namespace
    of it here), and the user's ssh session that holds it (its end stops the sandbox)."""

    holder: subprocess.Popen | None = None

    def failure(self) -> str | None:
        """What is wrong, in one line naming it: the session holding its sandbox ended, or its
        sandbox's sshd does not answer over the underlay (the sandbox gone with its PID 1, the
        machine gone, or the sshd killed)."""
        if self.holder is not None and self.holder.poll() is not None:
            return f"{self.name}: the ssh session holding its server sandbox ended (exit {self.holder.returncode})"
        try:
            socket.create_connection((str(self.address.ip), 22), timeout=2).close()
        except OSError as error:
            return (f"{self.name}: its server sandbox's sshd does not answer on {self.address.ip}:22 "
                    f"({error.strerror or error})")
        return None


@dataclass
class RealServers(SimServers):
    """The real servers B, C... of a run on A (names[0]): started, watched and stopped as simulated
    servers are, but each in a sandbox on its own machine."""

    names: tuple[str, ...] = ()
    machine_netns: str = ""  # a path to A's own network namespace (sandbox.machine_netns())
    vni: int = field(default_factory=new_vni)
    mtu: int = UNDERLAY_MTU  # the underlay's, once its uplinks are known (no underlay with A alone)
    routes: dict[str, Route] = field(default_factory=dict)  # how A reaches each server's machine
    addresses: dict[str, str] = field(default_factory=dict)  # each server's machine address, as A reaches it

    @property
    def underlay_mtu(self) -> int:
        return self.mtu

    @classmethod
    def of(cls, run_dir, names: tuple[str, ...], machine_netns: str) -> "RealServers":
        return cls(run_dir, len(names) - 1, names=names, machine_netns=machine_netns)

    def on_machine(self, argv: list[str]) -> list[str]:
        """argv run in A's own network namespace (where its uplink and DNS are)."""
        return ["nsenter", f"--net={self.machine_netns}", "--", *argv]

    def user_ssh(self, name: str) -> list[str]:
        """The user's own ssh to root on server name (their keys and config); a command follows."""
        return self.on_machine(["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT}", f"root@{name}"])

    def start(self) -> list[SimServer]:
        return super().start() if self.count else []

    def _check_prerequisites(self) -> None:
        if not self.machine_netns:
            raise ServerError("real servers need a handle on this machine's network namespace")

    def _machine(self, argv: list[str], what: str) -> str:
        """argv's output, run in A's namespace; ServerError saying what failed (and why, if it said)."""
        done = subprocess.run(self.on_machine(argv), capture_output=True, text=True, timeout=SSH_TIMEOUT)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip()
            raise ServerError(f"{what} ({why})" if why else what)
        return done.stdout

    def _make_underlay(self) -> None:
        """The controller's end (srv0, 198.18.0.1): the MTU from A's uplinks to the servers, every
        server's machine a peer."""
        mtus = [self._find_uplink(name) for name in self.names[1:]]
        try:
            self.mtu = underlay_mtu(mtus)
        except ValueError as error:
            raise ServerError(f"--servers {','.join(self.names)}: {error}") from None
        join = UnderlayJoin(UNDERLAY_BRIDGE, os.getpid(), str(CONTROLLER), self.vni, self.mtu,
                            tuple(self.addresses[name] for name in self.names[1:]))
        self._machine(join.create_command(), f"{self.names[0]}: cannot make its underlay device")
        for command in join.inside_commands():
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise ServerError(f"{self.names[0]}: `{shlex.join(command)}` failed: {done.stderr.strip()}")

    def _find_uplink(self, name: str) -> int:
        """Server name's machine address (resolved on A) and A's route to it; its uplink's MTU."""
        address = self._machine(["getent", "ahostsv4", name], f"{name}: cannot resolve its address").split()[0]
        self.addresses[name] = address
        self.routes[name] = Route.parse(self._machine(["ip", "-j", "route", "get", address],
                                                      f"{name}: no route to {address}"))
        if self.routes[name].local:
            raise ServerError(f"{name}: {address} is this machine ({self.names[0]}): each server must be another one")
        device = self.routes[name].device
        return link_mtu(self._machine(["ip", "-j", "link", "show", "dev", device], f"{name}: the uplink {device}"))

    @staticmethod
    def _confirmed(server: RealServer) -> bool:
        """Whether the session ended cleanly (boot stopped the sandbox); a warning naming the server if not."""
        try:
            code = server.holder.wait(timeout=STOP_TIMEOUT + SSH_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.holder.kill()
            server.holder.wait()
            log.warning("%s: its server sandbox's stop was not confirmed within %.0fs", server.name,
                        STOP_TIMEOUT + SSH_TIMEOUT)
            return False
        if code != 0:
            lines = server.holder.stderr.read().strip().splitlines()
            log.warning("%s: stopping its server sandbox: %s", server.name, lines[-1] if lines else f"exit {code}")
        return code == 0

    def peers_of(self, name: str) -> tuple[str, ...]:
        """The machines a server's sandbox floods to: A (from the address A sends to it from) and
        every other server."""
        return (self.routes[name].source, *(self.addresses[other] for other in self.names[1:] if other != name))

    def _start_server(self, index: int) -> RealServer:
        name = self.names[index]
        server = RealServer(name, IPv4Interface(f"{CONTROLLER.ip + index}/{CONTROLLER.network.prefixlen}"),
                            self.directory / name)
        self._write_ssh_files(server)
        request = {"name": name, "run_dir": str(self.run_dir), "address": str(server.address), "vni": self.vni,
                   "mtu": self.mtu, "peers": list(self.peers_of(name)),
                   "ssh_files": {path: (server.ssh_dir / path).read_text()
                                 for path in ("ssh_host_ed25519_key", "sshd_config", "authorized_keys")}}
        boot = shlex.join([sys.executable, "-m", "calisim.servers.boot"])
        # its own process group: Ctrl-C reaches the run, which stops the sandbox, not this session first
        holder = subprocess.Popen([*self.user_ssh(name), boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, process_group=0)
        holder.stdin.write(json.dumps(request) + "\n")
        holder.stdin.flush()
        server.init_pid = self._answer(name, holder)["pid"]
        server.holder = holder
        return server

    @staticmethod
    def _answer(name: str, holder: subprocess.Popen) -> dict:
        """boot's answer line; ServerError with its (or ssh's) last line if it ends without one."""
        timeout = START_TIMEOUT + HANDSHAKE_TIMEOUT
        ready, _, _ = select.select([holder.stdout], [], [], timeout)
        line = holder.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if not ready:
            holder.kill()
        holder.stdin.close()
        holder.wait()
        lines = holder.stderr.read().strip().splitlines()
        if not ready:
            raise ServerError(f"{name}: its server sandbox did not start within {timeout:.0f}s")
        raise ServerError(f"{name}: {lines[-1] if lines else f'ssh exited {holder.returncode}'}")

    def stop(self) -> list[str]:
        """Every server's holding session ended, all at once: there boot stops the sandbox by its
        PID 1 (the kernel ends all it ran, and its underlay device with its namespace) and removes
        its directory, then the session ends.  Then the controller's underlay device.  The names
        of servers whose sandbox's stop was not confirmed."""
        started = [server for server in self.servers if server.holder is not None]
        for server in started:  # the run's multiplexing ssh to the sandbox
            subprocess.run(self.ssh_command(server) + ["-O", "exit"], capture_output=True, timeout=START_TIMEOUT)
        for server in started:
            server.holder.stdin.close()
        left = [server.name for server in started if not self._confirmed(server)]
        subprocess.run(["ip", "link", "del", UNDERLAY_BRIDGE], capture_output=True)  # none if the start failed early
        if self.control_directory is not None:
            shutil.rmtree(self.control_directory, ignore_errors=True)
        return left
