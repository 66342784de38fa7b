"""The policy resources: profile and policy, and their rules (the v1 API form <-> Felix's datastore form).

Rules are stored and read in Felix's form as they are (dicts): calicoctl validated them on the way in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from ..keys import POLICIES, PROFILES
from ..selector import SelectorError, parse as parse_selector
from .base import Resource, ValidationError, check_fields, parse_cidr, parse_labels, parse_name

if TYPE_CHECKING:  # annotations only: validation must not import the etcd client
    from ..etcd import Datastore


ACTIONS = {"allow": "allow", "deny": "deny", "log": "log", "next-tier": "next-tier", "nextTier": "next-tier"}
RULE_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6", "sctp", "udplite")
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "udplite")
ENTITY_FIELDS = {"tag": "tag", "notTag": "!tag", "net": "net", "notNet": "!net", "selector": "selector",
                 "notSelector": "!selector", "ports": "ports", "notPorts": "!ports"}
ALL = "all()"


def parse_protocol(value: Any, where: str) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 255:
        return value
    if value in RULE_PROTOCOLS:
        return value
    raise ValidationError(f"{where}: {value!r} is not a protocol (tcp, udp, icmp, icmpv6, sctp, udplite or 1-255)")


def parse_port(value: Any, where: str) -> int | str:
    """A port (1-65535) or a range "lo:hi"."""
    text = str(value)
    match = re.fullmatch(r"(\d+)(?::(\d+))?", text) if not isinstance(value, bool) else None
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
    if not match or not 1 <= low <= high <= 65535:
        raise ValidationError(f"{where}: {value!r} is not a port (1-65535) or a range lo:hi")
    return low if match[2] is None else f"{low}:{high}"


def rule_to_datastore(rule: Any, where: str) -> dict:
    """A v1 API rule (action, protocol, icmp, source: {tag, net, ports, ...}) in Felix's
    datastore form (action, protocol, icmp_type, src_tag, !dst_net, ...), validated whole."""
    rule = check_fields(rule, ("action", "ipVersion", "protocol", "notProtocol", "icmp", "notICMP", "source",
                               "destination"), where, required=("action",))
    if rule["action"] not in ACTIONS:
        raise ValidationError(f"{where}.action: {rule['action']!r} is not allow, deny, log or next-tier")
    stored: dict[str, Any] = {"action": ACTIONS[rule["action"]]}
    if rule.get("ipVersion") is not None:
        if rule["ipVersion"] not in (4, 6):
            raise ValidationError(f"{where}.ipVersion must be 4 or 6, not {rule['ipVersion']!r}")
        stored["ip_version"] = rule["ipVersion"]
    for api, key in (("protocol", "protocol"), ("notProtocol", "!protocol")):
        if rule.get(api) is not None:
            stored[key] = parse_protocol(rule[api], f"{where}.{api}")
    for api, prefix in (("icmp", ""), ("notICMP", "!")):
        icmp = check_fields(rule.get(api), ("type", "code"), f"{where}.{api}")
        for part in ("type", "code"):
            if icmp.get(part) is not None:
                if isinstance(icmp[part], bool) or not isinstance(icmp[part], int) or not 0 <= icmp[part] <= 255:
                    raise ValidationError(f"{where}.{api}.{part} must be 0-255, not {icmp[part]!r}")
                stored[f"{prefix}icmp_{part}"] = icmp[part]
    for api, side in (("source", "src"), ("destination", "dst")):
        entity = check_fields(rule.get(api), ENTITY_FIELDS, f"{where}.{api}")
        for field_name, stem in ENTITY_FIELDS.items():
            value = entity.get(field_name)
            if value in (None, "", []):
                continue
            negated, base = stem.startswith("!"), stem.lstrip("!")
            at = f"{where}.{api}.{field_name}"
            if base == "tag":
                value = parse_name(value, at)
            elif base == "net":
                value = str(parse_cidr(value, at))
            elif base == "selector":
                try:
                    parse_selector(str(value))
                except SelectorError as error:
                    raise ValidationError(f"{at}: {error}") from None
            else:
                if not isinstance(value, list):
                    raise ValidationError(f"{at} must be a list of ports")
                if stored.get("protocol") not in PORT_PROTOCOLS:
                    raise ValidationError(f"{at}: ports need protocol tcp, udp, sctp or udplite")
                value = [parse_port(port, at) for port in value]
            stored[f"{'!' if negated else ''}{side}_{base}"] = value
    return stored


def rule_to_api(stored: dict) -> dict:
    """The datastore form back into the v1 API form."""
    rule: dict[str, Any] = {"action": stored["action"]}
    if "ip_version" in stored:
        rule["ipVersion"] = stored["ip_version"]
    for key, api in (("protocol", "protocol"), ("!protocol", "notProtocol")):
        if key in stored:
            rule[api] = stored[key]
    for prefix, api in (("", "icmp"), ("!", "notICMP")):
        icmp = {part: stored[f"{prefix}icmp_{part}"] for part in ("type", "code") if f"{prefix}icmp_{part}" in stored}
        if icmp:
            rule[api] = icmp
    for side, api in (("src", "source"), ("dst", "destination")):
        rule[api] = {field_name: stored[f"{'!' if stem.startswith('!') else ''}{side}_{stem.lstrip('!')}"]
                     for field_name, stem in ENTITY_FIELDS.items()
                     if f"{'!' if stem.startswith('!') else ''}{side}_{stem.lstrip('!')}" in stored}
    return rule  # source and destination always shown, as calicoctl prints them


def rules_document(ingress: tuple[dict, ...], egress: tuple[dict, ...]) -> dict:
    """A spec's rules in the v1 form; empty lists are left out, as calicoctl leaves them out."""
    rules = {"ingress": [rule_to_api(r) for r in ingress], "egress": [rule_to_api(r) for r in egress]}
    return {direction: listed for direction, listed in rules.items() if listed}


def go_float(number: float) -> str:
    """A number as Go's %v prints a float64 (calicoctl's ORDER column): shortest digits, with an
    exponent from 1e+06 up and below 1e-04 (100 -> 100, 6543215.5 -> 6.5432155e+06)."""
    sign, digits, exponent = Decimal(repr(float(number))).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + exponent - 1  # the decimal exponent of the first digit
    if text == "0":
        return "-0" if sign else "0"
    if point < -4 or point >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    return f"{'-' if sign else ''}{abs(Decimal(repr(float(number))).normalize()):f}"


def parse_rules(value: Any, where: str) -> tuple[dict, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list of rules")
    return tuple(rule_to_datastore(rule, f"{where}[{index}]") for index, rule in enumerate(value))


@dataclass(frozen=True)
class Profile(Resource):
    """A profile: tags (group membership for tag matches), labels (inherited by its endpoints)
    and rules.  libnetwork makes one per Docker network; calicoctl edits them."""

    kind: ClassVar[str] = "profile"
    aliases: ClassVar[tuple[str, ...]] = ("profile", "profiles", "pro", "pros")
    ps_columns: ClassVar[tuple[str, ...]] = ("NAME",)
    wide_columns: ClassVar[tuple[str, ...]] = ("NAME", "TAGS")
    columns: ClassVar[tuple[str, ...]] = wide_columns

    profile_name: str
    tags: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    ingress: tuple[dict, ...] = ()
    egress: tuple[dict, ...] = ()

    @classmethod
    def from_document(cls, doc: dict) -> "Profile":
        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("name", "tags", "labels"), "profile metadata", required=("name",))
        check_fields(spec, ("ingress", "egress"), "profile spec")
        tags = metadata.get("tags") or []
        if not isinstance(tags, list):
            raise ValidationError("profile metadata.tags must be a list")
        return cls(parse_name(metadata["name"], "profile metadata.name"),
                   tuple(parse_name(tag, "profile metadata.tags") for tag in tags),
                   tuple(sorted(parse_labels(metadata.get("labels"), "profile metadata.labels").items())),
                   parse_rules(spec.get("ingress"), "profile spec.ingress"),
                   parse_rules(spec.get("egress"), "profile spec.egress"))

    def document(self) -> dict:
        metadata: dict[str, Any] = {"name": self.profile_name}
        if self.tags:
            metadata["tags"] = list(self.tags)
        if self.labels:
            metadata["labels"] = dict(self.labels)
        return self._wrap(metadata, rules_document(self.ingress, self.egress))

    @property
    def ident(self) -> str:
        return f"Profile(name={self.profile_name})"

    @property
    def name(self) -> str:
        return self.profile_name

    @property
    def primary_key(self) -> str:
        return f"{PROFILES}{self.profile_name}/tags"

    def writes(self) -> dict[str, Any]:
        base = f"{PROFILES}{self.profile_name}/"
        return {base + "tags": list(self.tags), base + "labels": dict(self.labels),
                base + "rules": {"inbound_rules": list(self.ingress), "outbound_rules": list(self.egress)}}

    def removal_prefixes(self) -> list[str]:
        return [f"{PROFILES}{self.profile_name}/"]

    def cells(self, context: dict) -> dict[str, str]:
        return {"NAME": self.profile_name, "TAGS": ",".join(self.tags)}

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Profile"]:
        return cls.from_entries({entry.key: entry.value for entry in await ds.list(PROFILES)})

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["Profile"]:
        """Every profile stored in these keys (others are ignored): what calicoctl and Felix read."""
        parts: dict[str, dict] = {}
        for key, value in entries.items():
            if key.startswith(PROFILES):
                name, part = key[len(PROFILES):].rsplit("/", 1)
                parts.setdefault(name, {})[part] = value
        profiles = []
        for name, values in sorted(parts.items()):
            rules = values.get("rules") or {}
            profiles.append(cls(name, tuple(values.get("tags") or ()),
                                tuple(sorted((values.get("labels") or {}).items())),
                                tuple(rules.get("inbound_rules") or ()), tuple(rules.get("outbound_rules") or ())))
        return profiles


@dataclass(frozen=True)
class Policy(Resource):
    """A selector policy of the default tier: applies to the endpoints its selector matches,
    before their profiles, lowest order first."""

    kind: ClassVar[str] = "policy"
    aliases: ClassVar[tuple[str, ...]] = ("policy", "policies", "pol", "pols")
    ps_columns: ClassVar[tuple[str, ...]] = ("NAME",)
    wide_columns: ClassVar[tuple[str, ...]] = ("NAME", "ORDER", "SELECTOR")
    columns: ClassVar[tuple[str, ...]] = wide_columns

    policy_name: str
    selector: str
    order: float | None = None
    ingress: tuple[dict, ...] = ()
    egress: tuple[dict, ...] = ()

    @classmethod
    def from_document(cls, doc: dict) -> "Policy":

        metadata, spec = cls._envelope(doc)
        check_fields(metadata, ("name",), "policy metadata", required=("name",))
        check_fields(spec, ("order", "selector", "ingress", "egress"), "policy spec")
        order = spec.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise ValidationError(f"policy spec.order must be a number, not {order!r}")
        text = str(spec.get("selector") or "")
        try:
            parse_selector(text or ALL)
        except SelectorError as error:
            raise ValidationError(f"policy spec.selector: {error}") from None
        return cls(parse_name(metadata["name"], "policy metadata.name"), text, order,
                   parse_rules(spec.get("ingress"), "policy spec.ingress"),
                   parse_rules(spec.get("egress"), "policy spec.egress"))

    def document(self) -> dict:
        spec: dict[str, Any] = {"selector": self.selector}
        if self.order is not None:
            spec["order"] = self.order
        return self._wrap({"name": self.policy_name}, {**spec, **rules_document(self.ingress, self.egress)})

    @property
    def applies_to(self) -> str:
        """The selector of the endpoints it applies to: an empty one selects every endpoint."""
        return self.selector or ALL

    @property
    def ident(self) -> str:
        return f"Policy(name={self.policy_name})"

    @property
    def name(self) -> str:
        return self.policy_name

    @property
    def primary_key(self) -> str:
        return POLICIES + self.policy_name

    def to_value(self) -> dict:
        return {"order": self.order, "selector": self.selector, "inbound_rules": list(self.ingress),
                "outbound_rules": list(self.egress)}

    @classmethod
    def from_value(cls, name: str, value: dict) -> "Policy":
        return cls(name, value["selector"], value.get("order"), tuple(value.get("inbound_rules") or ()),
                   tuple(value.get("outbound_rules") or ()))

    def writes(self) -> dict[str, Any]:
        return {self.primary_key: self.to_value()}

    def cells(self, context: dict) -> dict[str, str]:
        order = "<nil>" if self.order is None else go_float(self.order)
        return {"NAME": self.policy_name, "ORDER": order, "SELECTOR": self.selector}

    @classmethod
    async def load_all(cls, ds: Datastore) -> list["Policy"]:
        return cls.from_entries({entry.key: entry.value for entry in await ds.list(POLICIES)})

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> list["Policy"]:
        """Every policy stored in these keys (others are ignored)."""
        found = sorted(key for key in entries if key.startswith(POLICIES))
        return [cls.from_value(key[len(POLICIES):], entries[key]) for key in found]
