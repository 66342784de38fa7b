"""What every calicoctl v1 resource shares: the ``Resource`` base class and the field parsers.

A resource is a frozen dataclass.  ``from_document`` validates a whole v1 document (unknown
fields, bad CIDRs, AS numbers out of range are errors, never silently dropped);
``document`` gives it back; ``writes`` are the keys and values that store it; ``load_all``
rebuilds every stored resource of the kind.  calicoctl only combines these.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

if TYPE_CHECKING:  # annotations only: validation must not import the etcd client
    from ..etcd import Datastore


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAME_RE = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9._]{0,251}[a-zA-Z0-9])?$")
INTERFACE_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")  # Linux's IFNAMSIZ: at most 15 characters
API_VERSION = "v1"


class ValidationError(ValueError):
    """A resource document is not valid; nothing of it may be stored."""


def check_fields(mapping: Any, allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> dict:
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ValidationError(f"{where} must be a mapping, not {type(mapping).__name__}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown field{'s' if len(unknown) > 1 else ''} in {where}: {', '.join(unknown)}")
    missing = [name for name in required if mapping.get(name) in (None, "")]
    if missing:
        raise ValidationError(f"missing field in {where}: {', '.join(missing)}")
    return mapping


def parse_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValidationError(f"{where} must be true or false, not {value!r}")


def parse_cidr(text: Any, where: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not a valid CIDR") from None
    if "/" not in str(text):
        raise ValidationError(f"{where}: {text!r} is not a valid CIDR (no prefix length)")
    if str(network) != str(text).strip():
        raise ValidationError(f"{where}: {text!r} has host bits set (did you mean {network}?)")
    return network


def parse_ip(text: Any, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not a valid IP address") from None


def parse_interface(text: Any, where: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(str(text))
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not a valid IP address (with optional /prefix)") from None


def parse_as_number(value: Any, where: str = "asNumber") -> int:
    """Plain (64512) or asdot (4294.566) AS number, 1..4294967295."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValidationError(f"{where}: {value!r} is not a valid AS number")
    if "." in text:
        high, low = (int(part) for part in text.split("."))
        if high > 65535 or low > 65535:
            raise ValidationError(f"{where}: {value!r} is not a valid asdot AS number (each part 0-65535)")
        number = high * 65536 + low
    else:
        number = int(text)
    if not 1 <= number <= 4294967295:
        raise ValidationError(f"{where}: AS number {value} is out of range (1-4294967295)")
    return number


def parse_interface_name(value: Any, where: str) -> str:
    text = str(value) if value is not None else ""
    if not INTERFACE_RE.match(text):
        raise ValidationError(f"{where}: {value!r} is not a valid interface name "
                              "(1-15 of letters, digits, '_', '.', '-')")
    return text


def parse_string_list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list, not {type(value).__name__}")
    return value


def parse_name(value: Any, where: str) -> str:
    text = str(value) if value is not None else ""
    if not NAME_RE.match(text):
        raise ValidationError(f"{where}: {value!r} is not a valid name (letters, digits, '-', '.', '_')")
    return text


@dataclass(frozen=True)
class Resource:
    kind: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]]
    ps_columns: ClassVar[tuple[str, ...]]
    wide_columns: ClassVar[tuple[str, ...]]
    columns: ClassVar[tuple[str, ...]]  # every heading `-o custom-columns=` takes, in calicoctl's names

    @classmethod
    def from_document(cls, doc: dict) -> "Resource":
        raise NotImplementedError

    def document(self) -> dict:
        raise NotImplementedError

    @property
    def ident(self) -> str:
        """How messages name this resource, e.g. IPPool(cidr=10.10.0.0/16)."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The NAME that `calicoctl get KIND NAME` and `delete KIND NAME` match."""
        raise NotImplementedError

    @property
    def primary_key(self) -> str:
        """The key whose presence means the resource exists."""
        raise NotImplementedError

    def writes(self) -> dict[str, Any]:
        raise NotImplementedError

    def owned_keys(self) -> list[str]:
        """Keys an apply/replace must clear when the new version no longer writes them."""
        return list(self.writes())

    def removal_prefixes(self) -> list[str]:
        """What `delete` removes: every key and prefix belonging to the resource."""
        return self.owned_keys()

    def cells(self, context: dict) -> dict[str, str]:
        """Every column of `get` (see ``columns``) for this resource; context holds the global AS."""
        raise NotImplementedError

    def row(self, headings: Sequence[str], context: dict) -> list[str]:
        cells = self.cells(context)
        return [cells[heading] for heading in headings]

    @classmethod
    def headings(cls, output: str) -> tuple[str, ...]:
        """The table's headings for `-o ps`, `-o wide` or `-o custom-columns=A,B`."""
        if output in ("ps", "wide"):
            return cls.wide_columns if output == "wide" else cls.ps_columns
        wanted = tuple(output.split("=", 1)[1].split(","))
        for heading in wanted:
            if heading not in cls.columns:
                raise ValidationError(f"Unknown heading {heading}, valid values are: {', '.join(cls.columns)}")
        return wanted

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Resource"]:
        raise NotImplementedError

    @classmethod
    def _envelope(cls, doc: dict) -> tuple[dict, dict]:
        check_fields(doc, ("apiVersion", "kind", "metadata", "spec"), f"{cls.kind} resource")
        if doc.get("apiVersion") != API_VERSION:
            raise ValidationError(f"{cls.kind}: apiVersion must be {API_VERSION}, not {doc.get('apiVersion')!r}")
        return doc.get("metadata") or {}, doc.get("spec") or {}

    def _wrap(self, metadata: dict, spec: dict) -> dict:
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": metadata, "spec": spec}


def parse_labels(value: Any, where: str) -> dict[str, str]:
    labels = check_fields(value, value.keys() if isinstance(value, dict) else (), where)
    for key, label in labels.items():
        if not re.fullmatch(r"[a-zA-Z0-9_./-]{1,253}", str(key)) or not isinstance(label, str):
            raise ValidationError(f"{where}: {key!r}: {label!r} is not a valid label (name: string)")
    return dict(labels)
