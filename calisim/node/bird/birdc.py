"""A client of BIRD's control socket (what `birdc` speaks), and the rows of `calicoctl node
status` read from it."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from ...process.daemon import DaemonError

PEER_TYPES = {"Mesh_": "node-to-node mesh", "Global_": "global", "Node_": "node specific"}


class BirdError(DaemonError):
    """BIRD rejected a config or its control socket did not answer."""


def protocol_address(suffix: str) -> str:
    """The peer address a protocol name carries, back with its dots or colons."""
    try:
        return str(ipaddress.IPv4Address(suffix.replace("_", ".")))
    except ValueError:
        return suffix.replace("_", ":")


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str


class BirdControl:
    """A client of BIRD's control socket (what birdc speaks): numbered reply lines, 0000 ends."""

    def __init__(self, path: Path, timeout: float = 5.0):
        self.path = Path(path)
        self.timeout = timeout

    def command(self, text: str) -> list[tuple[str, str]]:
        """Send one command; return its reply as (code, text) lines (continuations keep the code)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(str(self.path))
                reader = conn.makefile("r", encoding="utf-8", errors="replace")
                self._read_reply(reader)  # the 0001 greeting
                conn.sendall(text.encode() + b"\n")
                return self._read_reply(reader)
        except OSError as error:
            raise BirdError(f"BIRD control socket {self.path}: {error}") from error

    @staticmethod
    def _read_reply(reader) -> list[tuple[str, str]]:
        lines: list[tuple[str, str]] = []
        code = ""
        while True:
            line = reader.readline()
            if not line:
                raise BirdError("BIRD closed its control socket mid-reply")
            line = line.rstrip("\n")
            if line.startswith(" "):
                lines.append((code, line[1:]))
                continue
            code, separator, rest = line[:4], line[4:5], line[5:]
            if code == "0000":
                return lines
            lines.append((code, rest))
            if separator == " ":
                if code[0] in "89":
                    raise BirdError(f"BIRD: {rest}")
                return lines

    def protocols(self) -> list[Protocol]:
        rows = []
        for code, text in self.command("show protocols"):
            if code != "1002":
                continue
            columns = text.split(None, 5)
            columns += [""] * (6 - len(columns))
            rows.append(Protocol(*columns[:5], columns[5].strip()))
        return rows

    def configure(self) -> str:
        """Reload the config file BIRD was started with; sessions whose config is unchanged stay up."""
        reply = self.command("configure")
        return " ".join(text for _, text in reply)

    def status(self) -> dict[str, str]:
        lines = [text for code, text in self.command("show status")]
        status = {}
        for line in lines:
            for label in ("Last reconfiguration on ", "Last reboot on ", "Router ID is "):
                if line.startswith(label):
                    status[label.strip().rsplit(" ", 1)[0]] = line[len(label):]
        return status


@dataclass(frozen=True)
class BgpPeerStatus:
    peer_ip: str
    peer_type: str
    state: str
    since: str
    info: str


def bgp_peer_statuses(protocols: list[Protocol]) -> list[BgpPeerStatus]:
    """The rows of `calicoctl node status`: Calico-named BGP protocols, typed by name prefix."""
    peers = []
    for proto in protocols:
        for prefix, peer_type in PEER_TYPES.items():
            if proto.proto == "BGP" and proto.name.startswith(prefix):
                ip = protocol_address(proto.name[len(prefix):])
                peers.append(BgpPeerStatus(ip, peer_type, proto.state, proto.since, proto.info))
    return peers
