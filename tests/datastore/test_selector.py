"""Calico's selector language: parsing, evaluation, and clear errors (no root needed)."""

import pytest

from calisim.datastore.selector import SelectorError, parse

LABELS = {"role": "db", "env": "prod", "tier": "back"}


@pytest.mark.parametrize("text, expected", [
    ("all()", True),
    ("role == 'db'", True),
    ('role == "web"', False),
    ("role != 'web'", True),
    ("missing != 'x'", True),  # an absent label is not equal to anything
    ("env in {'prod', 'staging'}", True),
    ("env not in {'prod'}", False),
    ("has(tier)", True),
    ("!has(tier)", False),
    ("has(missing)", False),
    ("role == 'db' && env == 'dev'", False),
    ("role == 'db' && env == 'dev' || tier == 'back'", True),  # && binds tighter than ||
    ("role == 'db' && (env == 'dev' || tier == 'back')", True),
    ("!(role == 'db' && env == 'prod')", False),
    ("env in {}", False),
])
def test_selectors_evaluate_like_calicos(text, expected):
    assert parse(text).matches(LABELS) is expected


@pytest.mark.parametrize("text, message", [
    ("", "empty selector"),
    ("role ==", "expected string, found the end"),
    ("role = 'db'", "unexpected"),
    ("(role == 'db'", "expected ), found the end"),
    ("role == 'db' &&", "expected word, found the end"),
    ("role in {'a' 'b'}", "expected ,"),
    ("has(role", "expected ), found the end"),
    ("role == 'db' extra", "unexpected 'extra'"),
])
def test_bad_selectors_are_rejected_with_where(text, message):
    with pytest.raises(SelectorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)
