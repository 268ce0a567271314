"""RFC 5424 messages (the RFC's own examples first), their mapping, and RFC 6587 framing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.events import Event
from proctor.ingest import (
    IngestError,
    SdElement,
    SyslogFramer,
    normalize_syslog,
    parse_syslog,
)

from .helpers import RECEIVED, checked

BOM = b"\xef\xbb\xbf"

# RFC 5424 §6.5, examples 1 to 4 (example 1's BOM and its MSG as the RFC shows them).
EXAMPLE_1 = (
    b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
    + BOM
    + b"'su root' failed for lonvick on /dev/pts/8"
)
EXAMPLE_2 = (
    b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
    b"%% It's time to make the do-nuts."
)
EXAMPLE_3 = (
    b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
    b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
    + BOM
    + b"An application event log entry..."
)
EXAMPLE_4 = (
    b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
    b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    b'[examplePriority@32473 class="high"]'
)


def test_rfc5424_examples_parse() -> None:
    one = parse_syslog(EXAMPLE_1)
    assert (one.facility, one.severity, one.version) == (4, 2, 1)
    assert (one.hostname, one.app_name, one.procid, one.msgid) == (
        "mymachine.example.com",
        "su",
        None,
        "ID47",
    )
    assert one.structured_data == ()
    assert one.msg == b"'su root' failed for lonvick on /dev/pts/8" and one.msg_utf8

    two = parse_syslog(EXAMPLE_2)
    assert (two.facility, two.severity) == (20, 5)
    assert two.msg == b"%% It's time to make the do-nuts." and not two.msg_utf8
    assert two.msgid is None and two.procid == "8710"

    three = parse_syslog(EXAMPLE_3)
    assert three.structured_data == (
        SdElement(
            "exampleSDID@32473",
            (("iut", "3"), ("eventSource", "Application"), ("eventID", "1011")),
        ),
    )
    four = parse_syslog(EXAMPLE_4)
    assert [e.id for e in four.structured_data] == ["exampleSDID@32473", "examplePriority@32473"]
    assert four.msg is None


def test_rfc5424_examples_map() -> None:
    one, two, three, four = normalize_syslog(
        [EXAMPLE_1, EXAMPLE_2, EXAMPLE_3, EXAMPLE_4], received=RECEIVED
    )
    one = checked(one, EXAMPLE_1, "syslog")
    assert one.original is not None and one.original.format == "syslog.rfc5424"
    assert one.time == "2003-10-11T22:14:15.003000000Z"
    assert one.actor is not None
    assert (one.actor.id, one.actor.kind) == ("su@mymachine.example.com", "service")
    assert one.attributes == {
        "syslog.facility": "auth",
        "syslog.severity": "crit",
        "syslog.hostname": "mymachine.example.com",
        "syslog.app_name": "su",
        "syslog.msgid": "ID47",
        "proctor.received_at": "2026-11-23T11:21:10.000000000Z",
    }
    assert one.target is None and one.action is None and one.decision is None
    assert "lonvick" not in repr(one.attributes)  # MSG stays in the original

    two = checked(two, EXAMPLE_2, "syslog")
    assert two.time == "2003-08-24T12:14:15.000003000Z"
    assert two.attributes["syslog.facility"] == "local4"
    assert two.attributes["syslog.severity"] == "notice"
    assert two.attributes["syslog.procid"] == "8710"
    assert two.actor is not None and two.actor.id == "myproc@192.0.2.1"

    three = checked(three, EXAMPLE_3, "syslog")
    assert three.attributes["syslog.sd_ids"] == "exampleSDID@32473"
    four = checked(four, EXAMPLE_4, "syslog")
    assert four.attributes["syslog.sd_ids"] == "exampleSDID@32473,examplePriority@32473"


BASTION = (
    b"<86>1 2026-11-23T12:19:58.412377+01:00 bastion-1 sshd 4242 LOGIN "
    b'[proctor@32473 actor="alice" actor_kind="human" actor_ip="2001:DB8::44" group="sre" '
    b'group="oncall" target_type="ssh" target="bastion-1" database="prod" object="/bin/sh" '
    b'action_class="auth" operation="login" decision="allow" '
    b'reason="publickey \\"SHA256:Yx\\\\z\\] accepted" outcome="ok"]'
    b'[origin ip="10.0.0.5" software="OpenSSH"][timeQuality tzKnown="1" isSynced="0"] '
    + BOM
    + b"Accepted publickey for alice from 2001:db8::44 port 50522 ssh2"
)


def test_proctor_structured_data_maps_every_field() -> None:
    (event,) = normalize_syslog([BASTION], received=RECEIVED)
    event = checked(event, BASTION, "syslog")
    assert event.time == "2026-11-23T11:19:58.412377000Z"
    assert event.actor is not None
    assert (event.actor.id, event.actor.kind, event.actor.ip) == ("alice", "human", "2001:db8::44")
    assert event.actor.groups == ("sre", "oncall")
    assert event.target is not None
    assert (event.target.type, event.target.name, event.target.database) == (
        "ssh",
        "bastion-1",
        "prod",
    )
    assert event.target.objects == ("/bin/sh",)
    assert event.action is not None
    assert (event.action.class_, event.action.operation) == ("auth", "login")
    assert event.decision is not None and event.decision.effect == "allow"
    assert event.decision.reasons == ('publickey "SHA256:Yx\\z] accepted',)
    assert event.outcome is not None and event.outcome.status == "ok"
    assert event.flags == ("source_clock_unsynced",)
    assert event.attributes["syslog.facility"] == "authpriv"
    assert event.attributes["syslog.severity"] == "info"
    assert event.attributes["syslog.sd_ids"] == "proctor@32473,origin,timeQuality"


def test_without_proctor_data_the_sender_is_the_actor_at_its_origin_ip() -> None:
    data = b'<13>1 2026-11-23T11:19:58Z host-7 backup 1 - [origin ip="10.0.0.7"] done'
    (event,) = normalize_syslog([data], received=RECEIVED)
    event = checked(event, data, "syslog")
    assert event.actor is not None
    assert (event.actor.id, event.actor.kind, event.actor.ip) == (
        "backup@host-7",
        "service",
        "10.0.0.7",
    )


def test_all_nil() -> None:
    data = b"<0>1 - - - - - -"
    (event,) = normalize_syslog([data], received=RECEIVED)
    event = checked(event, data, "syslog")
    assert event.actor is None
    assert event.time == "2026-11-23T11:21:10.000000000Z"
    assert event.flags == ("time_from_receipt",)
    assert event.attributes["syslog.facility"] == "kern"
    assert event.attributes["syslog.severity"] == "emerg"


def test_other_backslashes_stay_and_msg_any_keeps_its_bytes() -> None:
    data = b'<14>1 - h a - - [x@1 p="a\\nb\\\\c\\]d\\"e"] \xff\xfe not utf-8'
    message = parse_syslog(data)
    assert message.structured_data == (SdElement("x@1", (("p", 'a\\nb\\c]d"e'),)),)
    assert message.msg == b"\xff\xfe not utf-8"
    (event,) = normalize_syslog([data], received=RECEIVED)
    event = checked(event, data, "syslog")
    assert event.original is not None and event.original.encoding == "base64"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "PRI: expected '<' (at byte 0)"),
        (b"34>1 - - - - - -", "PRI: expected '<' (at byte 0)"),
        (b"<>1 - - - - - -", "PRI: expected 1 to 3 digits (at byte 1)"),
        (b"<1234>1 - - - - - -", "PRI: expected '>' (at byte 4)"),
        (b"<192>1 - - - - - -", "PRI: greater than 191 (at byte 1)"),
        (b"<34> - - - - - -", "VERSION: expected a version number (at byte 4)"),
        (b"<34>01 - - - - - -", "VERSION: expected a version number (at byte 4)"),
        (b"<34>2 - - - - - -", "VERSION: only version 1 (RFC 5424) is supported (at byte 4)"),
        (b"<34>1- - - - - -", "VERSION: expected SP after it (at byte 5)"),
        (
            b"<34>1 Oct 11 22:14:15 host su - - -",
            "TIMESTAMP: expected an RFC 5424 timestamp or '-' (at byte 6)",
        ),
        (
            b"<34>1 2003-10-11t22:14:15Z h a - - -",
            "TIMESTAMP: expected an RFC 5424 timestamp or '-' (at byte 6)",
        ),
        (
            b"<34>1 2003-10-11T22:14:15.0000001Z h a - - -",
            "TIMESTAMP: expected an RFC 5424 timestamp or '-' (at byte 6)",
        ),
        (
            b"<34>1 2003-10-11T23:59:60Z h a - - -",
            "TIMESTAMP: not a valid date and time (leap seconds are refused) (at byte 6)",
        ),
        (b"<34>1 -  a - - -", "HOSTNAME: expected printable US-ASCII or '-' (at byte 8)"),
        (
            b"<34>1 - " + b"h" * 256 + b" a - - -",
            "HOSTNAME: longer than 255 characters (at byte 8)",
        ),
        (b"<34>1 - h " + b"a" * 49 + b" - - -", "APP-NAME: longer than 48 characters (at byte 10)"),
        (b"<34>1 - h a " + b"p" * 129 + b" - -", "PROCID: longer than 128 characters (at byte 12)"),
        (b"<34>1 - h a - " + b"m" * 33 + b" -", "MSGID: longer than 32 characters (at byte 14)"),
        (b"<34>1 - h\xc3\xa9 a - - -", "HOSTNAME: expected SP after it (at byte 9)"),
        (b"<34>1 - h a - -", "MSGID: expected SP after it (at byte 15)"),
        (b"<34>1 - h a - - x", "STRUCTURED-DATA: expected '-' or '[' (at byte 16)"),
        (b"<34>1 - h a - - []", "SD-ID: expected a name (at byte 17)"),
        (b"<34>1 - h a - - [" + b"i" * 33 + b"]", "SD-ID: longer than 32 characters (at byte 17)"),
        (b'<34>1 - h a - - [x p="1"', "SD-ELEMENT: expected SP or ']' (at byte 24)"),
        (b'<34>1 - h a - - [x p"1"]', "PARAM-NAME: expected '=' after it (at byte 20)"),
        (b"<34>1 - h a - - [x p=1]", "PARAM-VALUE: expected '\"' (at byte 21)"),
        (b'<34>1 - h a - - [x p="1]', "PARAM-VALUE: unterminated value (at byte 22)"),
        (b'<34>1 - h a - - [x p="\xff"]', "PARAM-VALUE: not UTF-8 (at byte 22)"),
        (b"<34>1 - h a - - [x][x]", "SD-ID: appears twice in the message (at byte 20)"),
        (b"<34>1 - h a - - [x]msg", "MSG: expected SP before MSG (at byte 19)"),
        (b"<34>1 - h a - - - " + BOM + b"ok\xff", "MSG: not UTF-8 after the BOM (at byte 23)"),
    ],
)
def test_parse_errors_name_the_field_and_offset(data: bytes, message: str) -> None:
    with pytest.raises(IngestError) as caught:
        parse_syslog(data)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("sd", "message"),
    [
        ('[proctor@32473 user="bob"]', "SD-PARAM proctor@32473 user: unknown parameter"),
        ('[proctor@32473 actor="a" actor="b"]', "SD-PARAM proctor@32473 actor: given twice"),
        (
            '[proctor@32473 actor="a" actor_kind="robot"]',
            "SD-PARAM proctor@32473 actor_kind: expected one of human, agent, service",
        ),
        (
            '[proctor@32473 actor="a" actor_ip="10.0.0.256"]',
            "SD-PARAM proctor@32473 actor_ip: not an IP address",
        ),
        (
            '[proctor@32473 group="g"]',
            "SD-PARAM proctor@32473 actor: actor_kind, actor_ip and group need actor",
        ),
        (
            '[proctor@32473 object="t"]',
            "SD-PARAM proctor@32473 target_type: object needs target_type",
        ),
        (
            '[proctor@32473 target_type="Bad Type"]',
            "event $.target.type: the mapped value does not fit proctor.access/v1",
        ),
        (
            '[proctor@32473 operation="x"]',
            "SD-PARAM proctor@32473 action_class: operation needs action_class",
        ),
        (
            '[proctor@32473 action_class="delete"]',
            "SD-PARAM proctor@32473 action_class: expected one of connect, read, write, ddl, "
            "admin, transaction, utility, auth, system",
        ),
        ('[proctor@32473 reason="r"]', "SD-PARAM proctor@32473 decision: reason needs decision"),
        (
            '[proctor@32473 outcome="error" sqlstate="28p01"]',
            "SD-PARAM proctor@32473 sqlstate: expected 5 characters 0-9 A-Z",
        ),
        (
            '[proctor@32473 sqlstate="28P01"]',
            "SD-PARAM proctor@32473 outcome: sqlstate needs outcome",
        ),
        (
            '[proctor@32473 actor="' + "a" * 257 + '"]',
            "SD-PARAM proctor@32473 actor: longer than 256 characters",
        ),
    ],
)
def test_mapping_errors_name_the_parameter(sd: str, message: str) -> None:
    good = b"<14>1 - h a - - -"
    bad = b"<14>1 - h a - - " + sd.encode()
    first, error, last = normalize_syslog([good, bad, good], received=RECEIVED)
    checked(first, good, "syslog")
    checked(last, good, "syslog")
    assert str(error) == f"item 1: {message}"


def test_outcome_with_sqlstate_and_a_decision_without_reason() -> None:
    data = (
        b'<14>1 - h a - - [proctor@32473 actor="svc" actor_kind="service" decision="deny" '
        b'outcome="error" sqlstate="28P01"]'
    )
    (event,) = normalize_syslog([data], received=RECEIVED)
    assert isinstance(event, Event)
    assert event.decision is not None and event.decision.reasons == ("reported by syslog: deny",)
    assert event.outcome is not None and event.outcome.sqlstate == "28P01"
    assert event.actor is not None and event.actor.kind == "service"


# --- framing ---------------------------------------------------------------------------


def octets(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def test_octet_counting_and_lf_frames_mix() -> None:
    stream = octets(EXAMPLE_3) + EXAMPLE_2 + b"\n" + octets(b"<0>1 - - - - - -\n") + b"\r\n"
    stream += EXAMPLE_4 + b"\r\n" + octets(EXAMPLE_1)
    expected = [EXAMPLE_3, EXAMPLE_2, b"<0>1 - - - - - -\n", EXAMPLE_4, EXAMPLE_1]
    assert SyslogFramer().feed(stream) == expected
    framer = SyslogFramer()
    one_by_one = [frame for i in range(len(stream)) for frame in framer.feed(stream[i : i + 1])]
    assert one_by_one == expected
    framer.end()


def test_frame_limits() -> None:
    framer = SyslogFramer(max_frame=100)
    assert framer.feed(octets(b"<0>1 " + b"x" * 95)) == [b"<0>1 " + b"x" * 95]
    with pytest.raises(IngestError) as caught:
        framer.feed(b"101 ")
    assert str(caught.value) == "frame: frame longer than 100 octets (at byte 104)"
    with pytest.raises(IngestError, match="already failed"):
        framer.feed(b"<0>1 - - - - - -\n")

    framer = SyslogFramer(max_frame=100)
    with pytest.raises(IngestError, match="frame longer than 100 octets"):
        framer.feed(b"1000")  # a fourth digit is over the limit before the SP comes
    framer = SyslogFramer(max_frame=100)
    framer.feed(b"<0>1 " + b"x" * 96)  # 101 octets: could still end with CR LF
    with pytest.raises(IngestError, match="frame longer than 100 octets"):
        framer.feed(b"y")
    framer = SyslogFramer(max_frame=100)
    with pytest.raises(IngestError, match="frame longer than 100 octets"):
        framer.feed(b"<0>1 " + b"x" * 96 + b"\n")


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"0 ", "frame: a frame starts with neither a length nor '<' (at byte 0)"),
        (b"12x", "frame: expected MSG-LEN digits and SP (at byte 2)"),
    ],
)
def test_framing_errors(stream: bytes, message: str) -> None:
    with pytest.raises(IngestError) as caught:
        SyslogFramer().feed(stream)
    assert str(caught.value) == message


@pytest.mark.parametrize("tail", [b"12", b"12 <0>1", b"<0>1 - -"])
def test_a_stream_that_ends_inside_a_frame(tail: bytes) -> None:
    framer = SyslogFramer()
    framer.feed(octets(EXAMPLE_2) + tail)
    with pytest.raises(IngestError, match="the stream ended while"):
        framer.end()


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_proctor_errors(data: bytes) -> None:
    with contextlib.suppress(IngestError):
        parse_syslog(data)
    for result in normalize_syslog([data], received=RECEIVED):
        assert isinstance(result, Event | IngestError)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=10))
def test_random_streams_frame_or_fail_cleanly(data: bytes, cuts: list[int]) -> None:
    framer = SyslogFramer(max_frame=64)
    try:
        pos = 0
        for cut in [*cuts, len(data)]:
            for frame in framer.feed(data[pos : pos + cut]):
                assert len(frame) <= 64
            pos += cut
        framer.end()
    except IngestError as exc:
        assert exc.field == "frame"


@settings(max_examples=200)
@given(
    st.lists(st.binary(min_size=1, max_size=80), max_size=8),
    st.lists(st.integers(1, 50), max_size=20),
)
def test_octet_counted_frames_come_back_exactly(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(octets(m) for m in messages)
    framer = SyslogFramer()
    out: list[bytes] = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        out += framer.feed(stream[pos : pos + cut])
        pos += cut
    framer.end()
    assert out == messages
