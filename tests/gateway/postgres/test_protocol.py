"""The protocol codec without sockets: transcripts, split reads, and garbage."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proctor.gateway.postgres.protocol import (
    PROTOCOL_3_0,
    BackendReader,
    Bind,
    CancelRequest,
    Close,
    CommandComplete,
    Describe,
    ErrorResponse,
    Execute,
    FrontendReader,
    GSSENCRequest,
    Parse,
    ProtocolError,
    Query,
    Raw,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    check_backend,
    error_response,
    notice_response,
    ready_for_query,
    response_fields,
)


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


STARTUP = StartupMessage(PROTOCOL_3_0, {"user": "alice", "database": "shop"}).encode()
SSL = struct.pack("!ii", 8, 80877103)


def test_a_session_transcript_in_one_piece_and_byte_by_byte() -> None:
    wire = (
        SSL
        + STARTUP
        + _msg(b"Q", b"SELECT 1; DROP TABLE t\x00")
        + _msg(b"P", b"s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17")
        + _msg(b"B", b"\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x017\x00\x00")
        + _msg(b"D", b"P\x00")
        + _msg(b"E", b"\x00\x00\x00\x00\x00")
        + _msg(b"C", b"S" + b"s1\x00")
        + _msg(b"S", b"")
        + _msg(b"p", b"secret\x00")
        + _msg(b"X", b"")
    )
    expected = [
        SSLRequest(),
        StartupMessage(PROTOCOL_3_0, {"user": "alice", "database": "shop"}),
        Query("SELECT 1; DROP TABLE t"),
        Parse("s1", "SELECT $1", (23,)),
        Bind("", "s1", b"\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x017\x00\x00"),
        Describe(b"P", ""),
        Execute("", 0),
        Close(b"S", "s1"),
        Sync(),
        Raw(b"p", b"secret\x00"),
        Terminate(),
    ]
    assert FrontendReader().feed(wire) == expected
    reader = FrontendReader()
    got = [m for i in range(len(wire)) for m in reader.feed(wire[i : i + 1])]
    assert got == expected


def test_cancel_and_gssenc_requests() -> None:
    cancel = struct.pack("!iiii", 16, 80877102, 4242, 99)
    assert FrontendReader().feed(cancel) == [CancelRequest(4242, struct.pack("!i", 99))]
    gss = struct.pack("!ii", 8, 80877104)
    assert FrontendReader().feed(gss + STARTUP)[0] == GSSENCRequest()


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (struct.pack("!ii", 8, 2 << 16), "unsupported protocol version 2.0"),
        (struct.pack("!i", 3) + b"xxxx", "startup packet claims length 3"),
        (struct.pack("!i", 1 << 30) + b"xxxx", "claims length"),
        (STARTUP + b"Q" + struct.pack("!i", 2), "claims length 2"),
        (STARTUP + _msg(b"Q", b"no terminator"), "not terminated"),
        (STARTUP + _msg(b"Q", b"\xff\xfe\x00"), "not UTF-8"),
        (STARTUP + _msg(b"Q", b"a\x00b\x00"), "unexpected trailing bytes"),
        (STARTUP + _msg(b"D", b"X\x00"), "Describe: bad kind"),
        (STARTUP + _msg(b"E", b"\x00\x00"), "too short"),
        (STARTUP + _msg(b"P", b"s\x00q\x00\xff\xff"), "negative parameter count"),
    ],
)
def test_malformed_input_is_a_protocol_error(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        FrontendReader().feed(wire)
    assert info.value.sqlstate == "08P01"


def test_the_size_limit_applies_before_the_body_arrives() -> None:
    reader = FrontendReader(max_message=1024)
    reader.feed(STARTUP)
    with pytest.raises(ProtocolError, match="claims length 2000"):
        reader.feed(b"Q" + struct.pack("!i", 2000))


def test_backend_messages_and_what_the_gateway_builds() -> None:
    wire = (
        _msg(b"T", b"\x00\x00")
        + _msg(b"C", b"UPDATE 7\x00")
        + error_response("42501", "permission denied: no policy permits this", "policy p1")
        + notice_response("result cut at 1000 rows")
        + ready_for_query(b"T")
    )
    got = BackendReader().feed(wire)
    assert got[0] == Raw(b"T", b"\x00\x00")
    assert got[1] == CommandComplete("UPDATE 7") and got[1].rows == 7
    assert isinstance(got[2], ErrorResponse) and got[2].sqlstate == "42501"
    assert got[2].fields["M"] == "permission denied: no policy permits this"
    assert got[2].fields["D"] == "policy p1"
    assert isinstance(got[3], Raw) and got[3].type == b"N"
    assert got[4] == ReadyForQuery(b"T")
    assert CommandComplete("BEGIN").rows is None
    assert CommandComplete("INSERT 0 5").rows == 5
    with pytest.raises(ProtocolError, match="bad status"):
        BackendReader().feed(_msg(b"Z", b"Q"))


@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_anything_but_a_protocol_error(data: bytes) -> None:
    for reader in (FrontendReader(max_message=4096), BackendReader(max_message=4096)):
        with contextlib.suppress(ProtocolError):
            reader.feed(data)


@given(st.lists(st.text(max_size=30).filter(lambda s: "\x00" not in s), max_size=5))
def test_queries_round_trip(sqls: list[str]) -> None:
    reader = FrontendReader()
    reader.feed(STARTUP)
    wire = b"".join(_msg(b"Q", s.encode() + b"\x00") for s in sqls)
    assert reader.feed(wire) == [Query(s) for s in sqls]


# Server messages as PostgreSQL 15 sent them (SELECT 1; COPY t FROM STDIN; an error).
SERVER: dict[bytes, bytes] = {
    b"T": b"\x00\x01?column?\x00" + bytes(6) + b"\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00",
    b"D": b"\x00\x02\x00\x00\x00\x011\xff\xff\xff\xff",
    b"C": b"SELECT 1\x00",
    b"Z": b"I",
    b"E": b"SERROR\x00VERROR\x00C22P02\x00Minvalid input syntax\x00\x00",
    b"N": b"SNOTICE\x00VNOTICE\x00C00000\x00Mhello\x00\x00",
    b"S": b"TimeZone\x00UTC\x00",
    b"A": b"\x00\x00\x00\x07chan\x00payload\x00",
    b"t": b"\x00\x01\x00\x00\x00\x17",
    b"G": b"\x00\x00\x02\x00\x00\x00\x00",
    b"1": b"",
}


def test_server_messages_are_checked_against_their_format() -> None:
    for kind, body in SERVER.items():
        check_backend(kind, body)
        with pytest.raises(ProtocolError, match="malformed"):
            check_backend(kind, body + b"\x00")  # a byte past the end of every format
        if body:
            with pytest.raises(ProtocolError, match="malformed"):
                check_backend(kind, body[:-1])  # and one short
    assert response_fields(SERVER[b"E"])["C"] == "22P02"
    check_backend(b"d", b"any COPY data")  # not a format: passed as it is
    for kind, body in [(b"Z", b"X"), (b"D", b"\x00\x01\xff\xff\xff\xfe"), (b"G", b"\x02\x00\x00")]:
        with pytest.raises(ProtocolError, match="malformed"):
            check_backend(kind, body)  # a status, a length, a format that is not one


@given(st.sampled_from(sorted(SERVER)), st.binary(max_size=40))
def test_server_message_checks_raise_only_protocol_errors(kind: bytes, body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        check_backend(kind, body)
    with contextlib.suppress(ProtocolError):
        response_fields(body)
