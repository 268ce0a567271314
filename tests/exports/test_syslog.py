"""syslog.py: messages parse back with a strict RFC 5424 parser; frames with the decoder."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proctor.errors import FormatError, UsageError
from proctor.events import Event, canonical_bytes
from proctor.exports.syslog import (
    BOM,
    FrameDecoder,
    SyslogConfig,
    SyslogFormatter,
    escape_param,
    format_message,
    frame,
    unescape_param,
)
from proctor.ledger.merkle import leaf_hash
from tests.exports.conftest import EXAMPLES, HOSTILE, example, hostile

CONFIG = SyslogConfig(hostname="gw1.corp.example", procid="4242")
TIMESTAMP = re.compile(
    rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
PRINTUSASCII = re.compile(rb"[\x21-\x7e]+")


@dataclass
class Message:
    pri: int
    timestamp: bytes
    hostname: bytes
    app_name: bytes
    procid: bytes
    msgid: bytes
    sd: list[tuple[str, list[tuple[str, str]]]]
    msg: bytes


def _field(data: bytes, pos: int, limit: int) -> tuple[bytes, int]:
    end = data.index(b" ", pos)
    value = data[pos:end]
    if value != b"-" and (not PRINTUSASCII.fullmatch(value) or len(value) > limit):
        raise ValueError(f"bad header field {value!r}")
    return value, end + 1


def _sd_name(data: bytes, pos: int, stop: bytes) -> tuple[str, int]:
    m = re.compile(rb"[\x21-\x7e]{1,32}").match(data, pos)
    if m is None:
        raise ValueError("no SD-NAME")
    name = m.group()
    for c in b'= ]"':
        if c in name:
            name = name[: name.index(c)]
    if not name or data[pos + len(name) : pos + len(name) + 1] not in (stop, b" ", b"]"):
        raise ValueError(f"bad SD-NAME at {data[pos : pos + 40]!r}")
    return name.decode(), pos + len(name)


def parse(data: bytes) -> Message:
    """RFC 5424 §6 ABNF, strictly: any deviation raises ValueError."""
    m = re.compile(rb"<(0|[1-9][0-9]{0,2})>1 ").match(data)
    if m is None or int(m.group(1)) > 191:
        raise ValueError("bad PRI/VERSION")
    pos = m.end()
    ts, pos = _field(data, pos, 64)
    if ts != b"-" and not TIMESTAMP.fullmatch(ts):
        raise ValueError(f"bad TIMESTAMP {ts!r}")
    host, pos = _field(data, pos, 255)
    app, pos = _field(data, pos, 48)
    procid, pos = _field(data, pos, 128)
    msgid, pos = _field(data, pos, 32)
    sd: list[tuple[str, list[tuple[str, str]]]] = []
    if data[pos : pos + 1] == b"-":
        pos += 1
    else:
        while data[pos : pos + 1] == b"[":
            sd_id, pos = _sd_name(data, pos + 1, b"]")
            params: list[tuple[str, str]] = []
            while data[pos : pos + 1] == b" ":
                name, pos = _sd_name(data, pos + 1, b"=")
                if data[pos : pos + 2] != b'="':
                    raise ValueError('PARAM-NAME not followed by ="')
                pos += 2
                value = bytearray()
                while True:
                    c = data[pos : pos + 1]
                    if not c:
                        raise ValueError("unterminated PARAM-VALUE")
                    if c == b"\\" and data[pos + 1 : pos + 2] in (b'"', b"\\", b"]"):
                        value += data[pos : pos + 2]  # kept escaped: see params()
                        pos += 2
                    elif c == b'"':
                        pos += 1
                        break
                    elif c == b"]":
                        raise ValueError("unescaped ] in PARAM-VALUE")
                    else:
                        value += c
                        pos += 1
                params.append((name, value.decode("utf-8")))
            if data[pos : pos + 1] != b"]":
                raise ValueError(f"SD-ELEMENT not closed at {data[pos : pos + 20]!r}")
            pos += 1
            sd.append((sd_id, params))
        if not sd:
            raise ValueError("no STRUCTURED-DATA")
    msg = b""
    if pos < len(data):
        if data[pos : pos + 1] != b" ":
            raise ValueError("junk after STRUCTURED-DATA")
        msg = data[pos + 1 :]
        if msg.startswith(BOM):
            msg[len(BOM) :].decode("utf-8")  # MSG-UTF8 must be valid UTF-8
    return Message(int(m.group(1)), ts, host, app, procid, msgid, sd, msg)


def params(message: Message, sd_id: str) -> dict[str, str]:
    """An element's params, unescaped in one pass (RFC §6.3.3 escapes and Proctor's \\uXXXX)."""
    for name, values in message.sd:
        if name == sd_id:
            return {k: unescape_param(v) for k, v in values}
    raise KeyError(sd_id)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_every_example_parses_back(index: int) -> None:
    event = EXAMPLES[index]
    raw = canonical_bytes(event)
    message = parse(format_message(event, raw, CONFIG, index=index))
    assert message.pri // 8 == 13  # log audit
    assert message.timestamp == event.time[:26].encode() + b"Z"  # microseconds, RFC 5424 §6.2.3
    assert (message.hostname, message.app_name, message.procid) == (
        b"gw1.corp.example",
        b"proctor",
        b"4242",
    )
    assert message.msgid == event.kind.encode()
    assert message.msg == BOM + raw
    # The MSG is the ledger entry itself: its leaf hash is the ledger's.
    assert leaf_hash(message.msg[len(BOM) :]) == leaf_hash(raw)
    own = params(message, "proctor@32473")
    assert own["id"] == event.id and own["index"] == str(index) and own["kind"] == event.kind
    assert params(message, "origin")["software"] == "Proctor"


def test_severity_and_time_quality() -> None:
    deny = parse(format_message(example("decision", 4), b"{}", CONFIG))
    assert deny.pri == 13 * 8 + 3  # high risk: error
    info = parse(format_message(example("checkpoint"), b"{}", CONFIG))
    assert info.pri == 13 * 8 + 6
    assert params(info, "timeQuality") == {"tzKnown": "1", "isSynced": "1", "syncAccuracy": "850"}
    unsynced = parse(format_message(example("ingest"), b"{}", CONFIG))
    assert params(unsynced, "timeQuality") == {"tzKnown": "1", "isSynced": "0"}


def test_cef_body() -> None:
    config = SyslogConfig(hostname="h", procid="1", body="cef", facility=4)
    message = parse(format_message(example("auth.failed"), b"", config))
    assert message.pri == 4 * 8 + 4
    assert message.msg.startswith(BOM + b"CEF:0|Proctor|Proctor|")


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_hostile_values_stay_in_their_params(index: int) -> None:
    event = hostile(EXAMPLES[index])
    raw = canonical_bytes(event)
    data = format_message(event, raw, CONFIG, index=index)
    assert b"\n" not in data and b"\r" not in data  # safe even for line-framed receivers
    message = parse(data)
    assert [name for name, _ in message.sd] == ["timeQuality", "origin", "proctor@32473"]
    assert message.msg == BOM + raw
    own = params(message, "proctor@32473")
    if event.actor is not None:
        assert own["actor"] == HOSTILE[:256]
    if event.target is not None:
        assert own["target"] == HOSTILE[:256]


@given(st.text(max_size=200))
def test_any_text_round_trips_through_a_param(text: str) -> None:
    event = hostile(example("query"), text)
    message = parse(format_message(event, b"{}", CONFIG))
    assert params(message, "proctor@32473")["actor"] == text[:256]
    assert unescape_param(escape_param(text)) == text


def test_param_escaping_is_rfc_5424() -> None:
    assert escape_param('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert escape_param("x\ny\x00") == "x\\u000ay\\u0000"
    assert unescape_param("x\\u000ay \\\\u000a") == "x\ny \\u000a"


def test_config_checks_header_fields_once() -> None:
    for bad in (
        {"hostname": "two words"},
        {"hostname": "x" * 256},
        {"app_name": "é"},
        {"procid": ""},
        {"facility": 24},
        {"sd_id": "bad id@1"},
        {"sd_id": "proctor@pen"},
        {"max_octets": 100},
    ):
        with pytest.raises(UsageError):
            SyslogConfig(**bad)  # type: ignore[arg-type]
    assert SyslogConfig(hostname="-").hostname == "-"  # NILVALUE is allowed


def test_oversize_fails_or_truncates_with_a_mark() -> None:
    event: Event = example("query")
    raw = canonical_bytes(event) + b" " * 2000
    with pytest.raises(UsageError, match="more than the 1000 allowed"):
        format_message(event, raw, SyslogConfig(hostname="h", max_octets=1000))
    cut = format_message(
        event, raw, SyslogConfig(hostname="h", max_octets=1000, oversize="truncate")
    )
    assert len(cut) == 1000 or len(cut) == 999  # never inside a UTF-8 character
    assert params(parse(cut), "proctor@32473")["truncated"] == str(len(raw))


def test_frames_round_trip_whatever_the_chunking() -> None:
    messages = [
        format_message(e, canonical_bytes(e), CONFIG, index=i) for i, e in enumerate(EXAMPLES)
    ]
    stream = b"".join(frame(m) for m in messages)
    assert stream.startswith(b"%d <" % len(messages[0]))
    for size in (1, 2, 7, 100, len(stream)):
        decoder = FrameDecoder()
        got: list[bytes] = []
        for i in range(0, len(stream), size):
            got += decoder.feed(stream[i : i + size])
        assert got == messages and decoder.pending == 0


@pytest.mark.parametrize(
    "garbage", [b"0 x", b"01 x", b"x1 a", b" 1 a", b"12345678901 ", b"-1 a", b"1a a"]
)
def test_decoder_refuses_what_is_not_a_frame(garbage: bytes) -> None:
    with pytest.raises(FormatError):
        FrameDecoder().feed(garbage)


def test_decoder_limits_frame_size() -> None:
    with pytest.raises(FormatError, match="exceeds"):
        FrameDecoder(max_octets=10).feed(b"11 ")


@given(st.binary(max_size=200))
def test_decoder_takes_any_bytes_without_crashing(data: bytes) -> None:
    decoder = FrameDecoder(max_octets=1000)
    try:
        for message in decoder.feed(data):
            assert len(message) <= 1000
    except FormatError:
        pass


def test_formatter_line_and_octet_framing() -> None:
    raw = canonical_bytes(example("query"))
    line = SyslogFormatter(CONFIG).format(3, raw)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    framed = SyslogFormatter(CONFIG, framing="octet").format(3, raw)
    assert FrameDecoder().feed(framed) == [line[:-1]]


def test_event_with_no_clock_quality() -> None:
    event = msgspec.structs.replace(
        example("checkpoint"), clock=msgspec.structs.replace(example("ingest").clock)
    )
    assert params(parse(format_message(event, b"{}", CONFIG)), "timeQuality")["isSynced"] == "0"
