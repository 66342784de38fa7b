"""calico/node's address autodetection methods beyond first-found (Calico 2.x's `--ip6-autodetection-method`,
env IP6_AUTODETECTION_METHOD): `interface=REGEX[,REGEX...]` and `can-reach=DESTINATION`, with the checks
calicoctl makes of a method before it starts anything and calico/node's words for what it found."""

from __future__ import annotations

import ipaddress
import re
import socket

FIRST_FOUND = "first-found"
CAN_REACH = "can-reach="
INTERFACE = "interface="
SKIPPED_INTERFACES = ("lo", "cali", "tunl", "vxlan.calico", "docker")  # first-found's exclusions

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class AutodetectionError(ValueError):
    """A method calicoctl refuses, or one that found no address on this host."""


def host_interfaces(version: int) -> list[tuple[str, Interface]]:
    """(interface name, address) of every global address of one IP version, in the kernel's order."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return [(names.get(address["index"], ""),
                 ipaddress.ip_interface(f"{address.get_attr('IFA_ADDRESS')}/{address['prefixlen']}"))
                for address in ipr.get_addr(family=2 if version == 4 else 10) if address["scope"] == 0]


def check_method(method: str, version: int) -> None:
    """calicoctl node run's check of an autodetection method, in its words (nothing has started yet)."""
    if method == FIRST_FOUND:
        return
    if method.startswith(CAN_REACH):
        resolve(method.removeprefix(CAN_REACH), version)
        return
    if method.startswith(INTERFACE):
        for regex in interface_regexes(method):
            try:
                re.compile(regex)
            except re.error:
                raise AutodetectionError("Error executing command: invalid interface regex specified for IP "
                                         f"autodetection: {regex}") from None
        return
    raise AutodetectionError(f"Error executing command: invalid IP autodetection method: {method}")


def resolve(destination: str, version: int) -> str:
    """The destination's first address of that IP version (a literal address, or a name to look up)."""
    try:
        found = socket.getaddrinfo(destination, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError):
        raise AutodetectionError("Error executing command: cannot resolve address specified for IP autodetection: "
                                 f"{destination}") from None
    for family, *_, sockaddr in found:
        if family == (socket.AF_INET if version == 4 else socket.AF_INET6):
            return sockaddr[0]
    raise AutodetectionError("Error executing command: address for IP autodetection does not resolve to an "
                             f"IPv{version} address: {destination}")


def interface_regexes(method: str) -> list[str]:
    """interface=A, B: the regexes, split on commas with any spaces around them (as calico/node splits them)."""
    return re.split(r"\s*,\s*", method.removeprefix(INTERFACE))


def detect(method: str, version: int) -> tuple[Interface, str]:
    """The address an interface= or can-reach= method picks, with calico/node's line saying so."""
    if method.startswith(INTERFACE):
        regexes = interface_regexes(method)
        for name, address in host_interfaces(version):
            if any(re.search(regex, name) for regex in regexes):  # Go's MatchString: anywhere in the name
                return address, f"Using autodetected IPv{version} address {address} on matching interface {name}"
        raise AutodetectionError(f"Unable to auto-detect an IPv{version} address using interface regexes "
                                 f"{regexes}: no valid IPv{version} addresses found on the host interfaces")
    if not method.startswith(CAN_REACH):
        raise AutodetectionError(f"Invalid IP autodection method: {method}")  # sic: calico/node's spelling
    destination = method.removeprefix(CAN_REACH)
    address = reaching_address(destination, version)
    return address, f"Using autodetected IPv{version} address {address}, detected by connecting to {destination}"


def reaching_address(destination: str, version: int) -> Interface:
    """The host's address (with its prefix) that the routing table picks to reach destination: a UDP
    socket connected there (nothing is sent) tells, as calico/node's can-reach finds it."""
    try:
        target = resolve(destination, version)
        with socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 80))
            local = ipaddress.ip_address(probe.getsockname()[0])
    except (OSError, AutodetectionError) as error:
        raise AutodetectionError(f"Unable to auto-detect IPv{version} address by connecting to {destination}: "
                                 f"{error}") from None
    for _, address in host_interfaces(version):
        if address.ip == local:
            return address
    raise AutodetectionError(f"Unable to auto-detect IPv{version} address by connecting to {destination}: "
                             f"{local} is on no interface of this host")
