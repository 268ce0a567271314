"""canonical.py: msgspec's sorted encoding is RFC 8785 for every valid event, and stable."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import EventError
from proctor.events import (
    EVENT_KINDS,
    Action,
    Actor,
    Clock,
    Decision,
    Device,
    Event,
    Factor,
    Geo,
    Links,
    Outcome,
    Risk,
    Session,
    Source,
    Target,
    canonical_bytes,
    canonicalize,
    decode_event,
    encode_event,
)
from proctor.events.canonical import _encode, _Encoded
from proctor.events.ids import _MAX_NS, _MIN_NS, _uuid7, format_time
from proctor.events.schema import REQUIRED_ATTRIBUTES, REQUIRED_FIELDS

SAFE = 2**53 - 1

# Any Unicode scalar value (no lone surrogates: they are not UTF-8), weighted towards the
# characters RFC 8785 §3.2.2.2 treats specially: controls, quote, backslash, DEL, U+2028.
_tricky = st.sampled_from(['"', "\\", "/", "\x00", "\x1f", "\x7f", "\u2028", "\ufeff", "😀"])
_no_surrogates: list[Literal["Cs"]] = ["Cs"]
_char = st.characters(exclude_categories=_no_surrogates) | _tricky
texts = st.text(_char, max_size=24)
names = st.text(_char, min_size=1, max_size=24)
slugs = st.from_regex(r"[a-z][a-z0-9_.-]{0,63}", fullmatch=True)
times = st.integers(_MIN_NS, _MAX_NS).map(format_time)
uuid7s = st.builds(
    _uuid7, st.integers(0, 2**48 - 1), st.integers(0, 2**12 - 1), st.integers(0, 2**62 - 1)
)
safe_ints = st.integers(-SAFE, SAFE)
counts = st.integers(0, SAFE)
bools = st.none() | st.booleans()


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def tuples(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, max_size=3).map(tuple)


clocks = st.builds(
    Clock,
    source=st.sampled_from(["system", "ntp"]),
    server=opt(names),
    offset_us=opt(safe_ints),
    uncertainty_us=opt(counts),
)
geos = st.builds(
    Geo,
    country=opt(st.from_regex(r"[A-Z]{2}", fullmatch=True)),
    city=opt(names),
    lat_e6=opt(st.integers(-90_000_000, 90_000_000)),
    lon_e6=opt(st.integers(-180_000_000, 180_000_000)),
    asn=opt(st.integers(0, 2**32 - 1)),
)
actors = st.builds(
    Actor,
    id=names,
    kind=st.sampled_from(["human", "agent", "service"]),
    display_name=opt(names),
    email=opt(names),
    roles=tuples(names),
    groups=tuples(names),
    auth_method=opt(names),
    mfa=st.booleans(),
    mfa_time=opt(times),
    device=opt(st.builds(Device, id=names, managed=bools, compliant=bools)),
    ip=opt(st.ip_addresses().map(str)),
    geo=opt(geos),
)
sessions = st.builds(
    Session, id=st.uuids().map(str), started=opt(times), client=opt(names), protocol=opt(names)
)
targets = st.builds(
    Target,
    type=slugs,
    name=opt(names),
    database=opt(names),
    objects=tuples(names),
    sensitivity=opt(st.sampled_from(["public", "internal", "confidential", "restricted"])),
)
actions = st.builds(
    Action,
    class_=st.sampled_from(["connect", "read", "write", "ddl", "admin", "auth", "system"]),
    operation=opt(names),
    statement=opt(texts),
    fingerprint=opt(names),
)
risks = st.builds(
    Risk,
    score=st.integers(0, 100),
    level=st.sampled_from(["low", "medium", "high", "critical"]),
    factors=tuples(
        st.builds(Factor, signal=slugs, points=st.integers(-100, 100), evidence=opt(texts))
    ),
    model=opt(names),
)
decisions = st.builds(
    Decision,
    effect=st.sampled_from(["allow", "deny", "step_up"]),
    reasons=st.lists(texts, min_size=1, max_size=3).map(tuple),
    policies=tuples(names),
    obligations=tuples(names),
    policy_revision=opt(names),
    eval_us=opt(counts),
)
outcomes = st.builds(
    Outcome,
    status=st.sampled_from(["ok", "error", "cancelled", "revoked"]),
    rows=opt(counts),
    duration_us=opt(counts),
    sqlstate=opt(st.from_regex(r"[0-9A-Z]{5}", fullmatch=True)),
    message=opt(texts),
)
_addresses = st.tuples(st.ip_addresses(), st.integers(1, 65535)).map(
    lambda a: f"[{a[0]}]:{a[1]}" if a[0].version == 6 else f"{a[0]}:{a[1]}"
)
_digests = st.binary(min_size=32, max_size=32).map(bytes.hex)


def sources(digest: st.SearchStrategy[str | None]) -> st.SearchStrategy[Source]:
    return st.builds(
        Source, system=slugs, gateway=opt(names), address=opt(_addresses), original_sha256=digest
    )


links = st.builds(
    Links, session_id=opt(st.uuids().map(str)), parent_id=opt(uuid7s), decision_id=opt(uuid7s)
)
_PARTS: dict[str, st.SearchStrategy[Any]] = {
    "actor": actors,
    "session": sessions,
    "target": targets,
    "action": actions,
    "risk": risks,
    "decision": decisions,
    "outcome": outcomes,
    "source": sources(opt(_digests)),
    "links": links,
}


@st.composite
def events(draw: st.DrawFn) -> Event:
    """Valid events of every kind, with each kind's required parts and attributes present."""
    kind = draw(st.sampled_from(EVENT_KINDS))
    needed = {path.split(".")[0] for path in REQUIRED_FIELDS.get(kind, ())}
    parts = {
        name: draw(strategy if name in needed else opt(strategy))
        for name, strategy in _PARTS.items()
    }
    if kind == "ingest":
        parts["source"] = draw(sources(_digests))
    attributes = draw(st.dictionaries(slugs, texts, max_size=4))
    for key in REQUIRED_ATTRIBUTES.get(kind, ()):
        attributes[key] = draw(names)
    return Event(
        id=draw(uuid7s),
        kind=kind,
        time=draw(times),
        clock=draw(clocks),
        attributes=attributes,
        flags=draw(tuples(slugs)),
        **parts,
    )


@settings(max_examples=400)
@given(events())
def test_canonical_bytes_equal_rfc8785(event: Event) -> None:
    assert canonical_bytes(event) == rfc8785.dumps(msgspec.to_builtins(event))


@settings(max_examples=300)
@given(events())
def test_decode_canonical_round_trip_is_stable(event: Event) -> None:
    data = canonical_bytes(event)
    again = decode_event(data)
    assert again == event
    assert canonical_bytes(again) == data
    assert canonicalize(data) == data
    assert encode_event(event) == data


@given(events())
def test_key_order_and_whitespace_do_not_change_the_canonical_form(event: Event) -> None:
    data = canonical_bytes(event)
    shuffled = json.dumps(dict(reversed(json.loads(data).items())), indent=3, ensure_ascii=True)
    assert canonicalize(shuffled) == data


def _minimal(**changes: Any) -> Event:
    fields: dict[str, Any] = {
        "id": "01a207ad-3f7a-7738-a2af-dc842369d3ae",
        "kind": "query",
        "time": "2026-11-23T09:12:04.218734512Z",
        "clock": Clock(source="system"),
        "action": Action(class_="read"),
        "target": Target(type="postgres"),
    }
    return Event(**(fields | changes))


def test_defaults_are_omitted_and_schema_is_always_written() -> None:
    data = canonical_bytes(_minimal())
    assert data == (
        b'{"action":{"class":"read"},"clock":{"source":"system"},'
        b'"id":"01a207ad-3f7a-7738-a2af-dc842369d3ae","kind":"query",'
        b'"schema":"proctor.access/v1","target":{"type":"postgres"},'
        b'"time":"2026-11-23T09:12:04.218734512Z"}'
    )


def test_explicit_nulls_and_empties_canonicalize_to_the_same_bytes() -> None:
    verbose = json.loads(canonical_bytes(_minimal()))
    verbose |= {"actor": None, "links": None, "attributes": {}, "flags": []}
    verbose["target"] |= {"objects": [], "name": None}
    assert "schema" in verbose
    del verbose["schema"]  # an event without schema is read as proctor.access/v1
    assert canonicalize(json.dumps(verbose)) == canonical_bytes(_minimal())


def test_escapes_follow_rfc8785() -> None:
    text = 'tab\t nl\n nul\x00 us\x1f del\x7f quote" slash/ back\\ ls\u2028 é 😀'
    event = _minimal(outcome=Outcome(status="ok", message=text))
    data = canonical_bytes(event)
    assert data == rfc8785.dumps(msgspec.to_builtins(event))
    assert b'"tab\\t nl\\n nul\\u0000 us\\u001f del\x7f quote\\" slash/ back\\\\' in data


def test_msgspec_sorts_by_code_point_so_free_keys_must_be_ascii() -> None:
    # RFC 8785 §3.2.3 sorts by UTF-16 code units; msgspec by code point. They disagree once a
    # key above U+FFFF meets one in U+E000-U+FFFF. That is why attribute keys are ASCII-only.
    keys = {"\uffff": 1, "\U0001f600": 2}
    assert msgspec.json.Encoder(order="sorted").encode(keys) != rfc8785.dumps(keys)
    with pytest.raises(EventError, match=r"\$\.attributes"):
        canonical_bytes(_minimal(attributes={"é": "accent"}))


def test_python_built_event_is_checked_before_it_is_encoded() -> None:
    # Meta limits run only on decode, so canonical_bytes re-decodes what it produced.
    bad = _minimal(risk=Risk(score=101, level="low"))
    with pytest.raises(EventError, match=r"at `\$\.risk\.score`"):
        canonical_bytes(bad)
    floaty = _minimal(risk=Risk(score=3.5, level="low"))  # type: ignore[arg-type]
    with pytest.raises(EventError, match=r"got `float` - at `\$\.risk\.score`"):
        canonical_bytes(floaty)


def test_canonical_bytes_reads_back_into_an_exact_twin_of_event() -> None:
    """_Encoded must decode exactly what Event decodes: same fields (with their limits) and
    the same settings (tag, unknown fields refused, …); only __post_init__ differs."""
    assert msgspec.structs.fields(_Encoded) == msgspec.structs.fields(Event)
    mine, theirs = _Encoded.__struct_config__, Event.__struct_config__
    names = [n for n in dir(theirs) if not n.startswith("_")]
    assert "forbid_unknown_fields" in names and "tag" in names
    assert {n: getattr(mine, n) for n in names} == {n: getattr(theirs, n) for n in names}


def _full_decode(event: Event) -> bytes | str:
    """What canonical_bytes did before it skipped the checks already run at construction:
    encode, then decode_event (every Meta limit and all of check_event). Bytes or the error."""
    try:
        data = _encode(event)
        decode_event(data)
    except EventError as exc:
        return str(exc)
    return data


def _canonical(event: Event) -> bytes | str:
    try:
        return canonical_bytes(event)
    except EventError as exc:
        return str(exc)


def _erasure(**changes: Any) -> Event:
    return _minimal(**({"kind": "erasure", "attributes": {"erasure.key_id": "k1"}} | changes))


# Events built in Python that msgspec never checked: limits, types and literals.
UNCHECKED: dict[str, Callable[[], Event]] = {
    "int above its Meta limit": lambda: _minimal(risk=Risk(score=101, level="low")),
    "float for an int": lambda: _minimal(risk=Risk(score=3.5, level="low")),  # type: ignore[arg-type]
    "bool for an int": lambda: _minimal(outcome=Outcome(status="ok", rows=True)),
    "unsafe integer": lambda: _minimal(clock=Clock(source="ntp", offset_us=2**53)),
    "kind not in the Literal": lambda: _minimal(kind="bogus"),  # type: ignore[arg-type]
    "nested Literal": lambda: _minimal(outcome=Outcome(status="fine")),  # type: ignore[arg-type]
    "string too long": lambda: _minimal(actor=Actor(id="a" * 257, kind="human")),
    "statement too long": lambda: _minimal(action=Action(class_="read", statement="x" * 65_537)),
    "pattern": lambda: _minimal(actor=Actor(id="a", kind="human", geo=Geo(country="usa"))),
    "too many flags": lambda: _minimal(flags=tuple(f"f{i}" for i in range(33))),
    "too many attributes": lambda: _minimal(attributes={f"k{i}": "v" for i in range(65)}),
    "wrong part type": lambda: _minimal(clock=Geo(country="FR")),  # type: ignore[arg-type]
    "tuple of the wrong items": lambda: _minimal(
        actor=Actor(id="a", kind="human", roles=(1, 2))  # type: ignore[arg-type]
    ),
}


def _mutated_attribute_key(key: str) -> Event:
    event = _minimal(attributes={"ok": "1"})
    event.attributes[key] = "x"
    return event


def _flag_appended(flag: str) -> Event:
    event = _minimal(flags=["ok"])  # a list where a tuple is declared: still mutable
    event.flags.append(flag)  # type: ignore[attr-defined]
    return event


def _factor_appended(factor: Factor) -> Event:
    factors = [Factor(signal="ok", points=1)]
    event = _minimal(risk=Risk(score=1, level="low", factors=factors))  # type: ignore[arg-type]
    factors.append(factor)
    return event


def _erasure_without(value: str | None) -> Event:
    event = _erasure()
    if value is None:
        del event.attributes["erasure.key_id"]
    else:
        event.attributes["erasure.key_id"] = value
    return event


# Checked events whose containers changed afterwards: check_event's container checks again.
MUTATED: dict[str, Callable[[], Event]] = {
    "attribute key not a slug": lambda: _mutated_attribute_key("Bad"),
    "attribute key with a final newline": lambda: _mutated_attribute_key("bad\n"),
    "flag with a final newline (list)": lambda: _flag_appended("bad\n"),
    "factor signal with a final newline": lambda: _factor_appended(Factor(signal="b\n", points=1)),
    "required attribute removed": lambda: _erasure_without(None),
    "required attribute emptied": lambda: _erasure_without(""),
}


@pytest.mark.parametrize(
    "make", [*UNCHECKED.values(), *MUTATED.values()], ids=[*UNCHECKED, *MUTATED]
)
def test_canonical_bytes_refuses_what_the_full_decode_refuses(make: Callable[[], Event]) -> None:
    """Only checks that ran at construction on values that cannot change are skipped: every
    other refusal is still there, with the same message."""
    event = make()
    want = _full_decode(event)
    assert isinstance(want, str), "the case must be one the full decode refuses"
    with pytest.raises(EventError) as info:
        canonical_bytes(event)
    assert str(info.value) == want


_keys = st.one_of(slugs, st.text(st.sampled_from("aZ.-_9\n é"), max_size=6))


@settings(max_examples=300)
@given(events(), st.data())
def test_canonical_bytes_agrees_with_the_full_decode(event: Event, data: st.DataObject) -> None:
    """Valid events, some with their attributes changed after construction: the same bytes, or
    the same error, as encoding and then running every check again."""
    if data.draw(st.booleans(), label="mutate"):
        for key in data.draw(st.lists(_keys, max_size=3), label="add"):
            event.attributes[key] = data.draw(texts, label="value")
        for key in data.draw(
            st.lists(st.sampled_from(sorted(event.attributes) or ["x"])), label="drop"
        ):
            event.attributes.pop(key, None)
    assert _canonical(event) == _full_decode(event)


def test_lone_surrogate_cannot_be_canonicalized() -> None:
    with pytest.raises(EventError, match="at `\\$`"):
        canonical_bytes(_minimal(outcome=Outcome(status="ok", message="\ud800")))


def test_big_integers_at_the_safe_limit_are_exact() -> None:
    event = _minimal(clock=Clock(source="ntp", offset_us=-SAFE, uncertainty_us=SAFE))
    data = canonical_bytes(event)
    assert b'"offset_us":-9007199254740991' in data
    assert data == rfc8785.dumps(msgspec.to_builtins(event))
