"""dockerd's configuration file, `/etc/docker/daemon.json` in its host (each host's own: its /etc
is a view of its own), read once at start as dockerd 1.13 reads it.

Known keys: `cluster-store` (the etcd dockerd keeps its global networks in; without one, the
cluster's etcd, as the seed's daemon.json names it), `cluster-advertise` (IP:port or
interface:port, resolved as dockerd resolves it), `live-restore`, `bip`, `dns`, `labels`,
`log-driver` and `log-opts`.  Anything else, a value of the wrong type or a file that is not
JSON stops dockerd with Docker's line ("unable to configure the Docker daemon with file ...");
`default-address-pools` came with Docker 18.06 and is refused as 1.13 refuses any unknown key.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import APIError
from .restarts import check_log_config

PATH = Path("/etc/docker/daemon.json")
SIOCGIFADDR = 0x8915
TYPES = {"cluster-store": str, "cluster-advertise": str, "live-restore": bool, "bip": str, "dns": list,
         "labels": list, "log-driver": str, "log-opts": dict}
GO_TYPES = {str: "string", bool: "bool", list: "[]string", dict: "map[string]string", int: "number",
            float: "number"}


class ConfigError(ValueError):
    """Why dockerd does not start: Docker's own words."""


@dataclass(frozen=True)
class DaemonConfig:
    cluster_store: str = ""  # etcd://IP:port[,IP:port]; empty: the cluster's etcd
    cluster_advertise: str = ""  # IP:port, an interface's name resolved
    live_restore: bool = False
    bip: str = ""  # docker0's address and prefix
    dns: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    log_config: dict = field(default_factory=lambda: {"Type": "json-file", "Config": {}})

    @classmethod
    def load(cls, path: Path = PATH) -> "DaemonConfig":
        """The file's settings (all defaults if there is none); ConfigError as dockerd words it."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        except OSError as error:
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: {error.strerror}") from None
        try:
            return cls.from_json(text)
        except ConfigError as error:
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> "DaemonConfig":
        try:
            values = json.loads(text.lstrip("\ufeff"))
        except json.JSONDecodeError as error:
            raise ConfigError(go_json_error(error)) from None
        if not isinstance(values, dict):
            raise ConfigError(f"json: cannot unmarshal {go_type(values)} into Go value of type "
                              "map[string]interface {}")
        unknown = sorted(set(values) - set(TYPES))
        if unknown:
            raise ConfigError(f"the following directives don't match any configuration option: {', '.join(unknown)}")
        for key, value in values.items():
            if not isinstance(value, TYPES[key]) or (TYPES[key] is list and not all(isinstance(v, str) for v in value)):
                raise ConfigError(f"json: cannot unmarshal {go_type(value)} into Go value of type "
                                  f"{GO_TYPES[TYPES[key]]}")
        return cls(values.get("cluster-store", ""), advertise(values), values.get("live-restore", False),
                   checked_bip(values.get("bip", "")), checked_dns(values.get("dns", [])),
                   checked_labels(values.get("labels", [])), checked_log(values))

    def etcd_endpoints(self) -> str | None:
        """The cluster store as ETCD_ENDPOINTS (http://IP:port,...), None without one."""
        if not self.cluster_store:
            return None
        scheme, _, hosts = self.cluster_store.partition("://")
        if scheme != "etcd" or not hosts:
            raise ConfigError(f"cluster store {self.cluster_store}: calisim emulates only etcd:// cluster stores")
        return ",".join(f"http://{host}" for host in hosts.split("/")[0].split(","))

    def info(self) -> dict:
        """What `docker info` says of this configuration (GET /info's keys)."""
        return {"ClusterAdvertise": self.cluster_advertise, "LiveRestoreEnabled": self.live_restore,
                "Labels": list(self.labels), "LoggingDriver": self.log_config["Type"],
                **({"ClusterStore": self.cluster_store} if self.cluster_store else {})}

    def resolv_conf(self, host_text: str) -> str:
        """A default-bridge container's /etc/resolv.conf: the host's, with `dns`'s servers in place
        of the host's nameservers when daemon.json names some."""
        if not self.dns:
            return host_text
        kept = [line for line in host_text.splitlines() if not line.startswith("nameserver")]
        return "\n".join([*kept, *(f"nameserver {server}" for server in self.dns)]) + "\n"


def go_type(value: object) -> str:
    """encoding/json's name for a JSON value's kind."""
    kinds = {bool: "bool", str: "string", list: "array", dict: "object", int: "number", float: "number"}
    return kinds.get(type(value), "null")


def go_json_error(error: json.JSONDecodeError) -> str:
    """Go's encoding/json text for the same syntax error (dockerd parses daemon.json with it)."""
    if error.pos >= len(error.doc.rstrip()):
        return "unexpected end of JSON input"
    character = error.doc[error.pos]
    literal = next((word for word in ("true", "false", "null") if word[0] == character), None)
    if error.msg == "Expecting value" and literal:  # Go reads the literal as far as it matches
        rest = error.doc[error.pos:error.pos + len(literal)]
        index = next((i for i, c in enumerate(rest) if c != literal[i]), len(rest))
        if index == len(rest):
            return "unexpected end of JSON input"
        return f"invalid character {rest[index]!r} in literal {literal} (expecting {literal[index]!r})"
    where = {"Expecting property name enclosed in double quotes": "looking for beginning of object key string",
             "Expecting ':' delimiter": "after object key",
             "Expecting value": "looking for beginning of value",
             "Extra data": "after top-level value"}.get(error.msg)
    if error.msg == "Expecting ',' delimiter":
        where = "after array element" if innermost(error.doc, error.pos) == "[" else "after object key:value pair"
    return f"invalid character {character!r} {where}" if where else error.msg.lower()


def innermost(text: str, end: int) -> str:
    """The innermost bracket ([ or {) open at position end of text (strings skipped)."""
    opened: list[str] = []
    in_string = escaped = False
    for character in text[:end]:
        if in_string:
            in_string, escaped = (character != '"' or escaped), (character == "\\" and not escaped)
        elif character == '"':
            in_string = True
        elif character in "[{":
            opened.append(character)
        elif character in "]}" and opened:
            opened.pop()
    return opened[-1] if opened else ""


def advertise(values: dict) -> str:
    """cluster-advertise as dockerd resolves it (discovery.ParseAdvertise): IP:port as it is, an
    interface's name replaced by its first IPv4 address."""
    value = values.get("cluster-advertise", "")
    if not value:
        return ""
    if not values.get("cluster-store"):
        raise ConfigError("invalid cluster configuration. --cluster-advertise must be accompanied by "
                          "--cluster-store configuration")
    host, colon, port = value.rpartition(":")
    if not colon or not host:
        raise ConfigError(f"invalid --cluster-advertise configuration: {value}: address {value}: "
                          "missing port in address")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return value
    except ValueError:
        pass
    try:
        return f"{interface_address(host)}:{port}"
    except OSError:
        raise ConfigError(f"invalid cluster advertise IP address or interface name ({value}) : "
                          "route ip+net: no such network interface") from None


def interface_address(name: str) -> str:
    """An interface's IPv4 address, in this (the host's) network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        answer = fcntl.ioctl(sock, SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(answer[20:24])


def checked_bip(value: str) -> str:
    if not value:
        return ""
    try:
        ipaddress.IPv4Interface(value)
    except ValueError:
        raise ConfigError(f"invalid CIDR address: {value}") from None
    return value


def checked_dns(servers: list[str]) -> tuple[str, ...]:
    for server in servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ConfigError(f"{server} is not an ip address") from None
    return tuple(servers)


def checked_labels(labels: list[str]) -> tuple[str, ...]:
    for label in labels:
        if "=" not in label:
            raise ConfigError(f"bad attribute format: {label}")
    return tuple(labels)


def checked_log(values: dict) -> dict:
    log_config = {"Type": values.get("log-driver") or "json-file", "Config": dict(values.get("log-opts") or {})}
    try:
        check_log_config(log_config)
    except APIError as error:
        raise ConfigError(f"Failed to set log opts: {error}" if log_config["Config"] else str(error)) from None
    return log_config
