"""The request context: strict decoding, errors that name the field."""

from __future__ import annotations

import pytest

from proctor.events.context import ContextError, decode_context, parse_rfc3339

BASE = {
    "principal": {"id": "alice"},
    "action": {"class": "read"},
    "resource": {"type": "table", "name": "t"},
    "time": "2026-11-23T10:00:00Z",
}


def test_minimal_context_from_json_and_mapping() -> None:
    ctx = decode_context(BASE)
    assert ctx.principal.auth_method == "none" and ctx.resource.sensitivity is None
    assert decode_context(
        b'{"principal":{"id":"a"},"action":{"class":"connect"},'
        b'"resource":{"type":"database","name":"d"},"time":"2026-01-01T00:00:00+02:00"}'
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"principal": {"id": "a", "rolez": []}}, "unknown field `rolez` - at `$.principal`"),
        ({"principal": {"id": ""}}, "at `$.principal.id`"),
        ({"action": {"class": "delete"}}, "at `$.action.class`"),
        (
            {"resource": {"type": "table", "name": "t", "sensitivity": "secret"}},
            "$.resource.sensitivity",
        ),
        ({"time": "yesterday"}, "invalid time 'yesterday'"),
        ({"time": "2026-02-30T10:00:00Z"}, "day is out of range"),
        ({"network": {"ip": "10.0.0.300"}}, "invalid IP address '10.0.0.300' - at `$.network.ip`"),
        ({"network": {"ip": "10.0.0.1", "geo": {"lat_e6": 1.5}}}, "$.network.geo.lat_e6"),
        ({"principal": {"id": "a", "mfa_time": "2026-11-23 10:00"}}, "$.principal.mfa_time"),
    ],
)
def test_bad_contexts_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ContextError, match="invalid request context") as info:
        decode_context({**BASE, **change})
    assert message in str(info.value)


def test_garbage_json() -> None:
    with pytest.raises(ContextError, match="not valid JSON"):
        decode_context(b"{")


def test_rfc3339_offsets_and_fractions() -> None:
    z = parse_rfc3339("2026-11-23T10:00:00Z")
    assert parse_rfc3339("2026-11-23T11:00:00+01:00") == z
    assert parse_rfc3339("2026-11-23T10:00:00.5Z") == z + 500_000_000
    assert parse_rfc3339("2026-11-23T10:00:00.000000001Z") == z + 1
    for bad in ("2026-11-23T10:00:00", "2026-11-23T10:00:00.0000000001Z", "2026-13-01T00:00:00Z"):
        with pytest.raises(ContextError):
            parse_rfc3339(bad)
