"""Calico's label selectors: `role == 'db'`, `tier != "web"`, `env in {'a', 'b'}`,
`env not in {'a'}`, `has(role)`, `all()`, `!`, `&&`, `||` and parentheses.

Parsed once (``parse``) into a small tree that evaluates a set of labels (``matches``); the
policy renderer and the reachability model in tests both use that one tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN = re.compile(r"""\s*(?:(?P<op>==|!=|&&|\|\||[!(){},])|(?P<string>"[^"]*"|'[^']*')|(?P<word>[A-Za-z0-9_./-]+))""")


class SelectorError(ValueError):
    """Not a valid selector; says where."""


@dataclass(frozen=True)
class Selector:
    def matches(self, labels: dict[str, str]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class All(Selector):
    def matches(self, labels: dict[str, str]) -> bool:
        return True


@dataclass(frozen=True)
class Has(Selector):
    label: str

    def matches(self, labels: dict[str, str]) -> bool:
        return self.label in labels


@dataclass(frozen=True)
class In(Selector):
    """label == v (one value), label in {..}; negated: label != v, label not in {..}."""
    label: str
    values: frozenset[str]
    negated: bool = False

    def matches(self, labels: dict[str, str]) -> bool:
        return (labels.get(self.label) in self.values) != self.negated


@dataclass(frozen=True)
class Not(Selector):
    inner: Selector

    def matches(self, labels: dict[str, str]) -> bool:
        return not self.inner.matches(labels)


@dataclass(frozen=True)
class And(Selector):
    left: Selector
    right: Selector

    def matches(self, labels: dict[str, str]) -> bool:
        return self.left.matches(labels) and self.right.matches(labels)


@dataclass(frozen=True)
class Or(Selector):
    left: Selector
    right: Selector

    def matches(self, labels: dict[str, str]) -> bool:
        return self.left.matches(labels) or self.right.matches(labels)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = TOKEN.match(text, position)
        if not match:
            raise SelectorError(f"unexpected {text[position:].strip()[:10]!r} at position {position} in {text!r}")
        kind = match.lastgroup
        tokens.append((kind, match[kind]))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1] != value):
            wanted = value or kind or "more"
            found = repr(token[1]) if token else "the end"
            raise SelectorError(f"expected {wanted}, found {found} in {self.text!r}")
        self.index += 1
        return token[1]

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == value

    def parse(self) -> Selector:
        if not self.tokens:
            raise SelectorError("empty selector (use all() to select everything)")
        tree = self.disjunction()
        if self.peek() is not None:
            raise SelectorError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return tree

    def disjunction(self) -> Selector:
        tree = self.conjunction()
        while self.at("||"):
            self.take()
            tree = Or(tree, self.conjunction())
        return tree

    def conjunction(self) -> Selector:
        tree = self.unary()
        while self.at("&&"):
            self.take()
            tree = And(tree, self.unary())
        return tree

    def unary(self) -> Selector:
        if self.at("!"):
            self.take()
            return Not(self.unary())
        if self.at("("):
            self.take()
            tree = self.disjunction()
            self.take("op", ")")
            return tree
        word = self.take("word")
        if word in ("has", "all") and self.at("("):
            self.take()
            tree: Selector = Has(self.take("word")) if word == "has" else All()
            self.take("op", ")")
            return tree
        return self.comparison(word)

    def comparison(self, label: str) -> Selector:
        if self.at("==") or self.at("!="):
            negated = self.take() == "!="
            return In(label, frozenset([self.string()]), negated)
        negated = False
        if self.at("not"):
            self.take()
            negated = True
        self.take("word", "in")
        self.take("op", "{")
        values = set()
        while not self.at("}"):
            values.add(self.string())
            if not self.at("}"):
                self.take("op", ",")
        self.take("op", "}")
        return In(label, frozenset(values), negated)

    def string(self) -> str:
        return self.take("string")[1:-1]


def parse(text: str) -> Selector:
    """The selector's tree; SelectorError (with the position) if it is not valid."""
    return _Parser(text).parse()
