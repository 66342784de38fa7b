"""calicoctl ipam show/release: one address's assignment, through calisim's IPAM."""

from __future__ import annotations

import argparse

from ..datastore import Synchronous
from ..ipam import IPAM, IPAMError, parse_ip
from .errors import CommandError


def cmd_ipam(ds: Synchronous, args: argparse.Namespace) -> str:
    ipam = ds.wrap(IPAM(ds.target))
    try:
        ip = parse_ip(args.ip)
        if args.ipam_command == "show":
            attributes = ipam.attributes(ip)
            if attributes is None:
                return f"IP {ip} is not currently assigned in block"
            if not attributes.get("secondary"):
                return f"No attributes defined for IP {ip}"
            return "\n".join(f"{name}: {value}" for name, value in sorted(attributes["secondary"].items()))
        if ipam.release_ips([ip]):
            raise CommandError(f"IP address {ip} is not assigned")
        return f"Successfully released IP address {ip}"
    except IPAMError as error:
        raise CommandError(str(error)) from None
