"""Annotations are checked strictly: anything Proctor cannot enforce refuses to load."""

from __future__ import annotations

import pytest

from proctor.policy.annotations import AnnotationError, parse_annotations, parse_obligations


def test_a_full_permit() -> None:
    a = parse_annotations(
        {
            "id": "analysts-read",
            "reason": "analysts read",
            "obligation": " read_only ; max_rows:0100; mask: email , ssn",
            "recheck": "5m",
        },
        "permit",
    )
    assert a.id == "analysts-read"
    assert a.obligations == ("read_only", "max_rows:100", "mask:email,ssn")
    assert a.recheck_s == 300
    assert a.on_deny == "deny"


def test_step_up_forbid() -> None:
    a = parse_annotations({"id": "f", "on_deny": "step_up"}, "forbid")
    assert a.on_deny == "step_up"


@pytest.mark.parametrize(
    ("values", "effect", "message"),
    [
        ({}, "permit", "needs an @id"),
        ({"id": "has space"}, "permit", "must match"),
        ({"id": "a", "colour": "red"}, "permit", "unknown annotation @colour"),
        ({"id": "a", "reason": "  "}, "permit", "@reason is empty"),
        ({"id": "a", "on_deny": "maybe"}, "forbid", "@on_deny must be"),
        ({"id": "a", "on_deny": "step_up"}, "permit", "forbid policies only"),
        ({"id": "a", "obligation": "read_only"}, "forbid", "permit policies only"),
        ({"id": "a", "obligation": "encrypt"}, "permit", "not one Proctor enforces"),
        ({"id": "a", "obligation": "max_rows:0"}, "permit", "not one Proctor enforces"),
        ({"id": "a", "obligation": "max_rows:ten"}, "permit", "not one Proctor enforces"),
        ({"id": "a", "obligation": "read_only;"}, "permit", "not one Proctor enforces"),
        ({"id": "a", "obligation": "mask:email,1x"}, "permit", "'1x' is not a column"),
        ({"id": "a", "recheck": "5 minutes"}, "permit", "not a duration"),
        ({"id": "a", "recheck": "0s"}, "permit", "not a duration"),
    ],
)
def test_refused(values: dict[str, str], effect: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        parse_annotations(values, effect)


def test_obligations_normalize() -> None:
    assert parse_obligations("mask:a") == ("mask:a",)
