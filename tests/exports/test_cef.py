"""cef.py: records parse back with a strict CEF parser; no value can make a field or a record."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proctor.events import Event, canonical_bytes
from proctor.exports.cef import (
    EXTENSION_KEYS,
    CefFormatter,
    _extension,
    escape_extension,
    escape_header,
    severity,
    to_cef,
)
from tests.exports.conftest import EXAMPLES, HOSTILE, example, hostile

# The extension dictionary keys ("Implementing ArcSight CEF", extension dictionary) a record
# may use; the custom cs/cn/flexString fields each come with their label.
DICTIONARY = {
    "act", "app", "c6a1", "c6a1Label", "c6a2", "c6a2Label", "c6a3", "c6a3Label", "c6a4",
    "c6a4Label", "cat", "cfp1", "cfp1Label", "cn1", "cn1Label", "cn2", "cn2Label", "cn3",
    "cn3Label", "cnt", "cs1", "cs1Label", "cs2", "cs2Label", "cs3", "cs3Label", "cs4",
    "cs4Label", "cs5", "cs5Label", "cs6", "cs6Label", "destinationServiceName", "deviceExternalId",
    "dhost", "dpt", "dst", "duid", "duser", "dvc", "dvchost", "end", "externalId", "fileHash",
    "flexString1", "flexString1Label", "flexString2", "flexString2Label", "msg", "outcome",
    "proto", "reason", "request", "requestClientApplication", "rt", "shost", "spriv", "spt",
    "src", "start", "suid", "suser",
}  # fmt: skip
KEY = re.compile(r"[A-Za-z0-9_]+(?==)")
EXT_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def parse(line: str) -> tuple[list[str], list[tuple[str, str]]]:
    """A strict CEF:0 parser: 7 header fields, then key=value pairs; any deviation raises."""
    if "\n" in line or "\r" in line or not line.startswith("CEF:0|"):
        raise ValueError("not one CEF:0 line")
    header: list[str] = []
    cur: list[str] = []
    i = len("CEF:")
    while len(header) < 7:
        c = line[i]
        if c == "\\":
            if line[i + 1] not in "\\|":
                raise ValueError(f"bad header escape {line[i : i + 2]!r}")
            cur.append(line[i + 1])
            i += 2
        elif c == "|":
            header.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(c)
            i += 1
    ext = line[i:]
    pairs: list[tuple[str, str]] = []
    if not ext:
        return header, pairs
    m = KEY.match(ext)
    if m is None:
        raise ValueError("extension does not start with a key")
    key, i, value = m.group(), m.end() + 1, []
    while i < len(ext):
        c = ext[i]
        if c == "\\":
            if ext[i + 1 : i + 2] not in EXT_ESCAPES:
                raise ValueError(f"bad extension escape {ext[i : i + 2]!r}")
            value.append(EXT_ESCAPES[ext[i + 1]])
            i += 2
        elif c == "=":
            raise ValueError(f"unescaped '=' in the value of {key}")
        elif c == " " and (m := KEY.match(ext, i + 1)) is not None:
            pairs.append((key, "".join(value)))
            key, i, value = m.group(), m.end() + 1, []
        else:
            value.append(c)
            i += 1
    pairs.append((key, "".join(value)))
    return header, pairs


def expected_pairs(event: Event, index: int | None) -> list[tuple[str, str]]:
    """What the record must carry: each value cut at its limit, unsafe characters replaced."""
    unsafe = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
    out = []
    for key, value in _extension(event, index):
        limit = EXTENSION_KEYS[key]
        out.append((key, unsafe.sub("\ufffd", value[:limit] if limit else value)))
    return out


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_every_example_parses_back_exactly(index: int) -> None:
    event = EXAMPLES[index]
    line = CefFormatter().format(index, canonical_bytes(event)).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    header, pairs = parse(line[:-1])
    assert header[:4] == ["0", "Proctor", "Proctor", "0.1.0"]  # CEF:Version|Vendor|…
    assert 0 <= int(header[6]) <= 10
    assert pairs == expected_pairs(event, index)
    keys = [k for k, _ in pairs]
    assert set(keys) <= DICTIONARY and len(keys) == len(set(keys))
    for key in keys:  # every custom field is labelled
        if re.fullmatch(r"(cs|cn|c6a|flexString)\d", key):
            assert f"{key}Label" in keys


def test_field_mapping() -> None:
    header, pairs = parse(to_cef(example("decision", 4), index=12))
    assert header[4:] == ["decision.deny", "Access denied", "9"]
    ext = dict(pairs)
    assert ext["act"] == "deny" and ext["suser"] == "u-2210" and ext["src"] == "203.0.113.45"
    assert (ext["dst"], ext["dpt"], ext["dvchost"]) == ("10.0.0.5", "5432", "gw-eu-1")
    assert (ext["cn1Label"], ext["cn1"]) == ("riskScore", "85")
    assert (ext["cn3Label"], ext["cn3"]) == ("ledgerIndex", "12")
    assert ext["externalId"] == "01a207db-cd0e-7dfe-8d16-fdc5ed94d4f0"
    assert ext["rt"] == "1795428175118"


def test_ipv6_addresses_use_the_ipv6_fields() -> None:
    _, pairs = parse(to_cef(example("ingest", 1)))
    ext = dict(pairs)
    assert "dst" not in ext and ext["c6a3"] == "2001:db8:40::12"
    assert ext["c6a3Label"] == "Destination IPv6 Address"


def test_severity_follows_level_and_risk() -> None:
    assert severity(example("checkpoint")) == 1
    assert severity(example("auth.failed")) == 5
    assert severity(example("decision", 4)) == 9  # risk 85, high


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_hostile_values_cannot_make_records_or_fields(index: int) -> None:
    event = hostile(EXAMPLES[index])
    line = to_cef(event, index=index)
    header, pairs = parse(line)  # strict: one line, known escapes only
    assert pairs == expected_pairs(event, index)
    assert header[4] in {"decision.allow", "decision.deny", "decision.step_up"} | {
        f"outcome.{s}" for s in ("ok", "error", "cancelled", "revoked")
    } | {e.kind for e in EXAMPLES}


@given(st.text(max_size=300))
def test_any_text_round_trips_through_the_extension(text: str) -> None:
    event = hostile(example("outcome"), text)
    _, pairs = parse(to_cef(event))
    assert pairs == expected_pairs(event, None)


@given(st.text(max_size=100), st.text(max_size=100))
def test_header_fields_escape_pipes_backslashes_and_drop_line_breaks(
    vendor: str, product: str
) -> None:
    header, _ = parse(to_cef(example("query"), vendor=vendor, product=product))
    unsafe = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
    for got, sent in ((header[1], vendor), (header[2], product)):
        assert got == unsafe.sub("\ufffd", re.sub("[\r\n]", " ", sent))


def test_escapes_are_the_specs() -> None:
    assert escape_header("a|b\\c\nd") == "a\\|b\\\\c d"
    assert escape_extension("a=b\\c\nd\re|f") == "a\\=b\\\\c\\nd\\re|f"
    assert escape_extension(HOSTILE).count("\n") == 0


def test_long_values_are_cut_at_the_dictionary_limit() -> None:
    event: Event = msgspec.structs.replace(
        example("query"),
        action=msgspec.structs.replace(example("query").action, statement="x" * 60000),
    )
    ext = dict(parse(to_cef(event))[1])
    assert ext["cs2"] == "x" * 4000
