"""schema.py and ids.py: limits, post-decode checks with field paths, UUIDv7 ids, RFC 3339 times."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import inspect
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import EventError
from proctor.events import (
    EVENT_KINDS,
    Clock,
    Event,
    Kind,
    canonical_bytes,
    decode_event,
    decode_event_obj,
    event_id_ms,
    format_time,
    new_event_id,
    now_ns,
    original_bytes,
    parse_time,
)
from proctor.events.ids import _MAX_NS, _MIN_NS, UUID7_PATTERN, _Uuid7Clock

EXAMPLES = Path(__file__).parents[2] / "examples" / "events.jsonl"
LINES = EXAMPLES.read_bytes().splitlines()
SAFE = 2**53 - 1


def example(kind: str, *, has: str = "") -> dict[str, Any]:
    """A fresh mutable copy of the first example event of ``kind`` (carrying part ``has``)."""
    for line in LINES:
        obj: dict[str, Any] = json.loads(line)
        if obj["kind"] == kind and (not has or has in obj):
            return obj
    raise LookupError(kind)


# --- the struct declarations ---------------------------------------------------------------


def _structs(info: msgspec.inspect.Type) -> Iterator[msgspec.inspect.Type]:
    """Every type reachable from ``info``, depth first (structs visited once)."""
    seen: set[type] = set()
    stack = [info]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, msgspec.inspect.StructType):
            if node.cls in seen:
                continue
            seen.add(node.cls)
            stack.extend(field.type for field in node.fields)
        elif isinstance(node, msgspec.inspect.UnionType):
            stack.extend(node.types)
        elif isinstance(node, msgspec.inspect.VarTupleType | msgspec.inspect.DictType):
            if isinstance(node, msgspec.inspect.DictType):
                stack.extend([node.key_type, node.value_type])
            else:
                stack.append(node.item_type)


ALL = list(_structs(msgspec.inspect.type_info(Event)))


def test_every_struct_is_frozen_strict_and_documented() -> None:
    classes = {node.cls for node in ALL if isinstance(node, msgspec.inspect.StructType)}
    assert len(classes) == 26
    for cls in classes:
        config = cls.__struct_config__
        assert config.frozen and config.forbid_unknown_fields, cls
        params = inspect.signature(cls).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), cls
        assert config.omit_defaults, cls
        doc = cls.__doc__ or ""
        assert doc and "\n" not in doc.strip(), f"{cls.__name__} needs a one-line docstring"


def test_no_floats_and_every_value_is_bounded() -> None:
    for node in ALL:
        assert not isinstance(node, msgspec.inspect.FloatType)
        if isinstance(node, msgspec.inspect.IntType):
            assert node.ge is not None and node.ge >= -SAFE, node
            assert node.le is not None and node.le <= SAFE, node
        if isinstance(node, msgspec.inspect.StrType | msgspec.inspect.VarTupleType):
            assert node.max_length is not None, node
        if isinstance(node, msgspec.inspect.DictType):
            assert node.max_length is not None, node


def test_kinds_tuple_matches_the_literal() -> None:
    assert get_args(Kind) == EVENT_KINDS
    assert len(set(EVENT_KINDS)) == len(EVENT_KINDS) == 12


def test_schema_is_a_class_constant_and_the_tag() -> None:
    event = decode_event(LINES[0])
    assert event.schema == Event.schema == "proctor.access/v1"
    assert msgspec.to_builtins(event)["schema"] == "proctor.access/v1"


def test_action_class_is_spelled_class_in_json() -> None:
    event = decode_event_obj(example("query"))
    assert event.action is not None
    assert event.action.class_ == "read"


# --- invalid input: every rejection is an EventError naming the field path ----------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(obj: dict[str, Any]) -> None:
        for name in parents:
            obj = obj[name]
        obj[last] = value

    return mutate


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj.pop(name)


V4 = str(uuid.UUID("6f2b1a0e-93c4-4a57-8d0b-2e5c7f1a9b34"))
INVALID = [
    ("float score", _set("risk.score", 12.0), "$.risk.score"),
    ("score 101", _set("risk.score", 101), "$.risk.score"),
    ("negative score", _set("risk.score", -1), "$.risk.score"),
    ("bad uuid", _set("id", "not-a-uuid"), "$.id"),
    ("uuid v4", _set("id", V4), "$.id"),
    ("uppercase uuid", _set("id", "01A207AD-3F7A-7738-A2AF-DC842369D3AE"), "$.id"),
    ("uuid with newline", _set("id", "01a207ad-3f7a-7738-a2af-dc842369d3ae\n"), "$.id"),
    ("parent v4", _set("links.parent_id", V4), "$.links.parent_id"),
    ("impossible date", _set("time", "2026-02-30T10:15:30.123456789Z"), "$.time"),
    ("leap second", _set("time", "2026-12-31T23:59:60.000000000Z"), "$.time"),
    ("6 digits", _set("time", "2026-11-23T10:15:30.123456Z"), "$.time"),
    ("offset not Z", _set("time", "2026-11-23T10:15:30.123456789+00:00"), "$.time"),
    ("lowercase z", _set("time", "2026-11-23T10:15:30.123456789z"), "$.time"),
    ("arabic digits", _set("time", "٢٠٢٦-11-23T10:15:30.123456789Z"), "$.time"),
    ("bad mfa_time", _set("actor.mfa_time", "yesterday"), "$.actor.mfa_time"),
    ("unknown field", _set("colour", "blue"), "$"),
    ("unknown nested field", _set("actor.colour", "blue"), "$.actor"),
    ("bad ip", _set("actor.ip", "10.20.30.400"), "$.actor.ip"),
    ("ip with port", _set("actor.ip", "10.20.30.40:5432"), "$.actor.ip"),
    ("ip zero-padded", _set("actor.ip", "10.020.30.40"), "$.actor.ip"),
    ("latitude range", _set("actor.geo.lat_e6", 90_000_001), "$.actor.geo.lat_e6"),
    ("country case", _set("actor.geo.country", "de"), "$.actor.geo.country"),
    ("bad kind", _set("kind", "query.v2"), "$.kind"),
    ("bad schema", _set("schema", "proctor.access/v2"), "$.schema"),
    ("missing decision", _drop("decision"), "$.decision"),
    ("null decision", _set("decision", None), "$.decision"),
    ("no reasons", _set("decision.reasons", []), "$.decision.reasons"),
    ("bad effect", _set("decision.effect", "maybe"), "$.decision.effect"),
    ("unsafe int", _set("clock.offset_us", 2**53), "$.clock.offset_us"),
    ("huge int", _set("clock.offset_us", 10**30), "$.clock.offset_us"),
    ("bool as int", _set("risk.score", True), "$.risk.score"),
    ("string as int", _set("risk.score", "12"), "$.risk.score"),
    ("long reason", _set("decision.reasons", ["x" * 4097]), "$.decision.reasons[0]"),
    ("upper attribute key", _set("attributes", {"Team": "x"}), "$.attributes"),
    ("key with newline", _set("attributes", {"team\n": "x"}), "$.attributes['team\\n']"),
    ("flag with newline", _set("flags", ["time_skew\n"]), "$.flags[0]"),
    ("too many flags", _set("flags", ["a"] * 33), "$.flags"),
    ("no port", _set("source.address", "10.0.0.5"), "$.source.address"),
    ("bare ipv6", _set("source.address", "2001:db8::1:5432"), "$.source.address"),
    ("port 0", _set("source.address", "10.0.0.5:0"), "$.source.address"),
    ("missing clock", _drop("clock"), "$"),
    ("bad clock source", _set("clock.source", "gps"), "$.clock.source"),
]


@pytest.mark.parametrize(("mutate", "path"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_event_names_the_field(mutate: Callable[[dict[str, Any]], None], path: str) -> None:
    obj = example("decision", has="risk")
    mutate(obj)
    with pytest.raises(EventError) as raised:
        decode_event(json.dumps(obj))
    assert str(raised.value).endswith(f"`{path}`")
    with pytest.raises(EventError) as again:  # an already-parsed object fails the same way
        decode_event_obj(obj)
    assert str(again.value).endswith(f"`{path}`")


KIND_PARTS = [
    ("query", "action", "$.action"),
    ("session.start", "session", "$.session"),
    ("outcome", "outcome", "$.outcome"),
    ("auth.failed", "actor", "$.actor"),
    ("session.revoked", "decision", "$.decision"),
    ("ingest", "source", "$.source.original_sha256"),
]


@pytest.mark.parametrize(("kind", "part", "path"), KIND_PARTS)
def test_kind_requires_its_parts(kind: str, part: str, path: str) -> None:
    obj = example(kind)
    del obj[part]
    with pytest.raises(EventError, match=re.escape(f"- at `{path}`")):
        decode_event(json.dumps(obj))


@pytest.mark.parametrize(
    ("kind", "key"), [("policy.reloaded", "policy.revision"), ("erasure", "erasure.key_id")]
)
def test_kind_requires_its_attributes(kind: str, key: str) -> None:
    obj = example(kind)
    obj["attributes"][key] = ""
    with pytest.raises(EventError, match=re.escape(f"at `$.attributes['{key}']`")):
        decode_event(json.dumps(obj))


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b'{"id": "\xff\xfe"}', "UTF-8"),
        (b"\xef\xbb\xbf{}", "JSON"),
        (b"", "JSON"),
        (b'{"kind": "query",', "JSON"),
        (b"[]", "object"),
        (b"null", "object"),
        ('{"id": "\ud800"}', "UTF-8"),
    ],
)
def test_not_json_or_not_utf8_is_an_event_error_at_root(data: bytes | str, what: str) -> None:
    with pytest.raises(EventError, match=re.escape(what) + ".* - at `\\$`$"):
        decode_event(data)


def test_building_a_bad_event_in_python_raises_event_error() -> None:
    with pytest.raises(EventError, match=re.escape("- at `$.time`")):
        Event(id=new_event_id(), kind="checkpoint", time="now", clock=Clock(source="system"))


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_event_error(data: bytes) -> None:
    with contextlib.suppress(EventError):
        decode_event(data)


@settings(max_examples=500)
@given(st.sampled_from(LINES), st.data())
def test_corrupted_examples_raise_only_event_error(line: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(line) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = line[:at] + bytes([byte]) + line[at + 1 :]
    try:
        decode_event(mutated)
    except EventError as exc:
        assert re.search(r" - at `(key` in `)?\$[^`]*`$", str(exc)), str(exc)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["id", "kind", "time", "clock", "actor", "x"]), _json))
def test_random_objects_raise_only_event_error(obj: dict[str, Any]) -> None:
    with contextlib.suppress(EventError):
        decode_event_obj(obj)


# --- ids.py: UUIDv7 (RFC 9562 §5.7) and RFC 3339 times --------------------------------------


def test_new_event_id_has_version_variant_and_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    for text in ids:
        value = uuid.UUID(text)
        assert str(value) == text
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert re.fullmatch(UUID7_PATTERN[1:-1], text)
    assert before <= event_id_ms(ids[0]) <= event_id_ms(ids[-1]) <= after + 1
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_ids_stay_ordered_through_counter_rollover_and_clock_steps_back() -> None:
    clock = _Uuid7Clock()
    seen = [clock.next(1_000) for _ in range(5000)]  # > 4096 in one ms: borrows the next ms
    seen += [clock.next(900) for _ in range(10)]  # the wall clock stepped back
    seen += [clock.next(5_000)]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert all(0 <= counter <= 0xFFF for _, counter in seen)


def test_event_id_ms_rejects_other_versions() -> None:
    assert event_id_ms("01a207ad-3f7a-7738-a2af-dc842369d3ae") == 0x01A207AD3F7A
    with pytest.raises(EventError, match="version is 4, expected 7"):
        event_id_ms(V4)
    with pytest.raises(EventError, match="variant"):
        event_id_ms("01a207ad-3f7a-7738-c2af-dc842369d3ae")
    with pytest.raises(EventError, match="lowercase"):
        event_id_ms("01A207AD-3F7A-7738-A2AF-DC842369D3AE")


def test_format_time_examples() -> None:
    assert format_time(0) == "1970-01-01T00:00:00.000000000Z"
    assert format_time(-1) == "1969-12-31T23:59:59.999999999Z"
    assert format_time(1_795_428_930_123_456_789) == "2026-11-23T10:15:30.123456789Z"
    assert format_time(_MIN_NS) == "0001-01-01T00:00:00.000000000Z"
    assert format_time(_MAX_NS) == "9999-12-31T23:59:59.999999999Z"
    with pytest.raises(ValueError, match="0001-9999"):
        format_time(_MAX_NS + 1)


@given(st.integers(_MIN_NS, _MAX_NS))
def test_parse_time_inverts_format_time(ns: int) -> None:
    text = format_time(ns)
    assert parse_time(text) == ns
    assert len(text) == 30


@given(st.integers(_MIN_NS, _MAX_NS), st.integers(_MIN_NS, _MAX_NS))
def test_time_text_sorts_like_the_instant(a: int, b: int) -> None:
    assert (format_time(a) < format_time(b)) == (a < b)


def test_now_ns_is_recent() -> None:
    assert abs(now_ns() - time.time_ns()) < 10**9


# --- the ingested original, hash-bound by source.original_sha256 ----------------------------


def _with_original(data: str, encoding: str, raw: bytes) -> dict[str, Any]:
    obj = example("ingest")
    obj["original"] = {"format": "pgaudit", "encoding": encoding, "data": data}
    obj["source"]["original_sha256"] = hashlib.sha256(raw).hexdigest()
    return obj


@pytest.mark.parametrize(
    ("data", "encoding", "raw"),
    [
        ("AUDIT: SESSION,1,1,READ,SELECT,,,select 1,<not logged>", "utf-8", None),
        ("zé ☃", "utf-8", None),
        (base64.b64encode(b"\xff\x00 bytes").decode(), "base64", b"\xff\x00 bytes"),
    ],
)
def test_original_is_checked_against_its_digest(
    data: str, encoding: str, raw: bytes | None
) -> None:
    obj = _with_original(data, encoding, raw if raw is not None else data.encode())
    event = decode_event(json.dumps(obj))
    assert event.original is not None
    assert original_bytes(event.original) == (raw if raw is not None else data.encode())
    assert decode_event(canonical_bytes(event)) == event


def test_original_with_another_digest_is_refused() -> None:
    obj = _with_original("one line", "utf-8", b"another line")
    with pytest.raises(
        EventError, match=re.escape("does not match `original`") + ".*original_sha256"
    ):
        decode_event(json.dumps(obj))


def test_original_without_a_digest_or_with_bad_base64_is_refused() -> None:
    obj = _with_original("x", "utf-8", b"x")
    del obj["source"]["original_sha256"]
    obj["kind"] = "outcome"
    with pytest.raises(EventError, match=re.escape("at `$.source.original_sha256`")):
        decode_event(json.dumps(obj))
    obj = _with_original("not base64!", "base64", b"")
    with pytest.raises(EventError, match=re.escape("invalid base64") + ".*at `\\$.original.data`"):
        decode_event(json.dumps(obj))
