"""Tests for the SNTP codec (``events/_sntp.py``) and the event clock (``events/clock.py``).

The clock talks to a real SNTP responder on 127.0.0.1 whose answers each test can bend: a
clock offset, network hold-ups, a bad header field, a forged originate timestamp, a
kiss-o'-death, a truncated packet, or silence.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proctor.errors import FormatError, InputError, UsageError
from proctor.events._sntp import (
    PACKET_SIZE,
    Sample,
    build_request,
    from_ntp64,
    parse_response,
    to_ntp64,
)
from proctor.events.clock import ClockSource
from proctor.events.schema import Clock

NS = 1_000_000_000
MS = 1_000_000
UNIX_TO_NTP_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
ERA1_UNIX_S = 2**32 - UNIX_TO_NTP_S  # 2036-02-07 06:28:16 UTC, where NTP seconds wrap


def ntp64(unix_ns: int) -> int:
    """Reference conversion, written independently of the codec: 2**-32 s since 1900, wrapped."""
    return (((unix_ns + UNIX_TO_NTP_S * NS) << 32) // NS) % 2**64


def reply(
    *,
    origin: bytes,
    receive: int,
    transmit: int,
    leap: int = 0,
    version: int = 4,
    mode: int = 4,
    stratum: int = 1,
    root_delay: int = 0,
    root_dispersion: int = 0,
    ref_id: bytes = b"GPS\0",
) -> bytes:
    """A server packet laid out by hand (RFC 5905 §7.3, Figure 8)."""
    head = struct.pack(
        "!BBbbII4s",
        (leap << 6) | (version << 3) | mode,
        stratum,
        6,  # poll
        -20,  # precision
        root_delay,
        root_dispersion,
        ref_id,
    )
    return head + bytes(8) + origin + struct.pack("!QQ", receive, transmit)


class Responder:
    """A loopback SNTP server; attributes set by a test shape the next answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.02)
        self.port: int = self.sock.getsockname()[1]
        self.offset_ns = 0
        self.behaviour = "ok"  # ok | silent | short | wrong_origin
        self.header: dict[str, Any] = {}
        self.hold_s: list[float] = []  # per request: delay before the request "arrives"
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request, peer = self.sock.recvfrom(1024)
            except TimeoutError:
                continue
            self.requests += 1
            answer = self._answer(request)
            if answer is not None:
                self.sock.sendto(answer, peer)

    def _answer(self, request: bytes) -> bytes | None:
        if self.behaviour == "silent":
            return None
        if self.hold_s:
            time.sleep(self.hold_s.pop(0))  # an outbound leg slower than the return leg
        receive = ntp64(time.time_ns() + self.offset_ns)
        origin = request[40:48]
        if self.behaviour == "wrong_origin":
            origin = bytes(b ^ 0xFF for b in origin)
        packet = reply(
            origin=origin,
            receive=receive,
            transmit=ntp64(time.time_ns() + self.offset_ns),
            **self.header,
        )
        return packet[:40] if self.behaviour == "short" else packet


@pytest.fixture
def responder() -> Iterator[Responder]:
    server = Responder()
    yield server
    server.close()


def source(server: Responder, **kwargs: Any) -> ClockSource:
    kwargs.setdefault("samples", 3)
    kwargs.setdefault("sample_interval_s", 0.0)
    return ClockSource("127.0.0.1", server.port, **kwargs)


# --- the clock against a live responder -------------------------------------------------------


def test_sync_measures_the_servers_offset(responder: Responder) -> None:
    responder.offset_ns = 250 * MS
    clock = source(responder)

    measured = clock.sync()

    assert measured.source == "ntp"
    assert measured.server == f"127.0.0.1:{responder.port}"
    assert measured.offset_us is not None
    assert measured.uncertainty_us is not None
    assert abs(measured.offset_us - 250_000) < 5_000
    assert 0 < measured.uncertainty_us < 5_000
    assert responder.requests == 3

    t, record = clock.now()
    assert isinstance(t, int)
    assert abs(t - (time.time_ns() + 250 * MS)) < 5 * MS
    assert record.source == "ntp"
    assert record.server == measured.server
    assert isinstance(record.offset_us, int)
    assert abs(record.offset_us - 250_000) < 5_000
    assert isinstance(record.uncertainty_us, int)
    assert record.uncertainty_us >= measured.uncertainty_us


def test_sync_keeps_the_sample_with_the_smallest_delay(responder: Responder) -> None:
    # Held requests look like a slow outbound path: their offsets are off by half the hold.
    responder.offset_ns = -40 * MS
    responder.hold_s = [0.08, 0.0, 0.08]
    measured = source(responder).sync()

    assert measured.offset_us is not None
    assert measured.uncertainty_us is not None
    assert abs(measured.offset_us + 40_000) < 5_000
    assert measured.uncertainty_us < 20_000


def test_uncertainty_grows_at_15_ppm_and_expires(responder: Responder) -> None:
    responder.offset_ns = 250 * MS
    skew = [0]
    clock = source(
        responder,
        max_uncertainty_us=50_000,
        mono_ns=lambda: time.monotonic_ns() + skew[0],
    )
    measured = clock.sync()
    assert measured.uncertainty_us is not None

    skew[0] = 1_000 * NS  # our monotonic clock says 1000 s went by: 15 ms of possible drift
    t, record = clock.now()
    assert record.source == "ntp"
    assert record.uncertainty_us is not None
    assert 15_000 <= record.uncertainty_us - measured.uncertainty_us <= 15_100
    # The corrected time follows the monotonic clock, not the (unskewed) system clock.
    assert abs(t - (time.time_ns() + 250 * MS + 1_000 * NS)) < 5 * MS

    skew[0] = 4_000 * NS  # 60 ms of drift is past the 50 ms ceiling: back to system time
    t, record = clock.now()
    assert record == Clock(source="system")
    assert abs(t - time.time_ns()) < 5 * MS


def test_drift_rate_is_configurable(responder: Responder) -> None:
    skew = [0]
    clock = source(responder, drift_ppm=100, mono_ns=lambda: time.monotonic_ns() + skew[0])
    measured = clock.sync()
    assert measured.uncertainty_us is not None
    skew[0] = 100 * NS  # 100 s at 100 ppm: 10 ms
    record = clock.now()[1]
    assert record.uncertainty_us is not None
    assert 10_000 <= record.uncertainty_us - measured.uncertainty_us <= 10_100


def test_without_server_now_is_system_time() -> None:
    clock = ClockSource()
    t, record = clock.now()
    assert record == Clock(source="system", server=None, offset_us=None, uncertainty_us=None)
    assert abs(t - time.time_ns()) < 5 * MS
    assert not clock.sync_due()
    with pytest.raises(UsageError, match="no NTP server"):
        clock.sync()


def test_silent_server_times_out_and_now_falls_back(responder: Responder) -> None:
    responder.offset_ns = 250 * MS
    clock = source(responder, timeout_s=0.1, samples=2)
    clock.sync()
    assert clock.now()[1].source == "ntp"

    responder.behaviour = "silent"
    started = time.monotonic()
    with pytest.raises(InputError, match=r"no answer from NTP server 127\.0\.0\.1:\d+"):
        clock.sync()
    assert time.monotonic() - started < 1.0

    t, record = clock.now()
    assert record == Clock(source="system")
    assert abs(t - time.time_ns()) < 5 * MS


BAD_ANSWERS = [
    pytest.param("short", {}, r"40 bytes, shorter than the 48-byte header", id="short"),
    pytest.param("wrong_origin", {}, r"does not answer our request", id="wrong-origin"),
    pytest.param("ok", {"stratum": 0, "ref_id": b"RATE"}, r"kiss-o'-death.*'RATE'", id="kiss"),
    pytest.param("ok", {"stratum": 0, "ref_id": b"\x00\x00\x00\x00"}, r"unreadable", id="s0"),
    pytest.param("ok", {"stratum": 16}, r"unsynchronized \(stratum 16", id="stratum16"),
    pytest.param("ok", {"leap": 3}, r"unsynchronized \(leap indicator 3\)", id="leap3"),
    pytest.param("ok", {"mode": 3}, r"mode 3, expected 4", id="mode3"),
    pytest.param("ok", {"version": 2}, r"version 2, expected 3 or 4", id="version2"),
]


@pytest.mark.parametrize(("behaviour", "header", "message"), BAD_ANSWERS)
def test_bad_answers_are_rejected(
    responder: Responder, behaviour: str, header: dict[str, Any], message: str
) -> None:
    clock = source(responder)
    clock.sync()  # a good sync first, so the fallback below is observable

    responder.behaviour = behaviour
    responder.header = header
    responder.requests = 0
    with pytest.raises(FormatError, match=message) as caught:
        clock.sync()
    assert f"127.0.0.1:{responder.port}" in str(caught.value)
    assert responder.requests == 1  # a bad answer ends the round: no further requests
    assert clock.now()[1] == Clock(source="system")


def test_too_imprecise_server_is_refused(responder: Responder) -> None:
    responder.header = {"root_dispersion": 0x0000_1000}  # 1/16 s = 62.5 ms
    clock = source(responder, max_uncertainty_us=50_000)
    with pytest.raises(InputError, match="too imprecise"):
        clock.sync()
    assert clock.now()[1] == Clock(source="system")


def test_sync_due_counts_attempts_and_refresh_interval(responder: Responder) -> None:
    skew = [0]
    clock = source(responder, refresh_s=64.0, mono_ns=lambda: time.monotonic_ns() + skew[0])
    assert clock.sync_due()
    clock.sync()
    assert not clock.sync_due()
    skew[0] = 64 * NS
    assert clock.sync_due()

    responder.behaviour = "silent"
    clock = source(responder, timeout_s=0.05, samples=1)
    with pytest.raises(InputError):
        clock.sync()
    assert not clock.sync_due()  # failed attempts back off too


def test_now_is_safe_while_syncing(responder: Responder) -> None:
    responder.offset_ns = 250 * MS
    responder.hold_s = [0.01] * 10
    clock = source(responder, samples=5)
    results: list[tuple[int, Clock]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            results.append(clock.now())
            time.sleep(0.0001)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        clock.sync()
        time.sleep(0.01)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert results
    assert all(isinstance(t, int) and isinstance(c, Clock) for t, c in results)
    assert {c.source for _, c in results} <= {"system", "ntp"}
    assert results[-1][1].source == "ntp"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": ""},
        {"port": 0},
        {"port": 65536},
        {"timeout_s": 0},
        {"refresh_s": -1.0},
        {"refresh_s": float("inf")},
        {"sample_interval_s": float("nan")},
        {"max_uncertainty_us": 0},
        {"samples": 0},
        {"drift_ppm": -1},
        {"max_uncertainty_us": 2**53},
        {"server": "a" * 257},
    ],
)
def test_bad_configuration_is_usage_error(kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("server", "127.0.0.1")
    with pytest.raises(UsageError):
        ClockSource(**kwargs)


def test_server_label() -> None:
    assert ClockSource("pool.ntp.org").server == "pool.ntp.org"
    assert ClockSource("::1", port=1123).server == "[::1]:1123"
    assert ClockSource().server is None


# --- the codec, with hand-built packets -------------------------------------------------------

T1 = 1_700_000_000 * NS  # 2023-11-14


def exchange(
    *,
    t1: int = T1,
    offset: int = 250 * MS,
    outbound: int = 10 * MS,
    held: int = 1 * MS,
    back: int = 10 * MS,
    **header: Any,
) -> tuple[bytes, bytes, int, int]:
    """A consistent exchange: (request, reply, t1, t4) for a server ``offset`` ahead of us."""
    request = build_request(t1)
    t2 = t1 + outbound + offset
    t3 = t2 + held
    t4 = t1 + outbound + held + back
    packet = reply(origin=request[40:48], receive=ntp64(t2), transmit=ntp64(t3), **header)
    return request, packet, t1, t4


def test_request_layout() -> None:
    request = build_request(T1)
    assert len(request) == PACKET_SIZE
    assert request[0] == 0b00_100_011  # LI 0, version 4, mode 3 (client)
    assert request[1:40] == bytes(39)
    assert int.from_bytes(request[40:48], "big") == ntp64(T1)


def test_timestamp_conversions() -> None:
    assert to_ntp64(0) == 0x83AA7E80 << 32  # the Unix epoch is 2208988800 s after 1900
    assert to_ntp64(NS // 2) == (0x83AA7E80 << 32) | 0x8000_0000
    assert to_ntp64(ERA1_UNIX_S * NS) == 0  # NTP seconds wrap on 2036-02-07
    assert to_ntp64(ERA1_UNIX_S * NS - NS) == 0xFFFF_FFFF << 32
    with pytest.raises(UsageError, match="integer nanoseconds"):
        to_ntp64(1.5)  # type: ignore[arg-type]


def test_era_is_the_one_nearest_the_local_clock() -> None:
    day = 86_400 * NS
    # Timestamp 0 is both 1900-01-01 (era 0) and 2036-02-07 (era 1).
    assert from_ntp64(0, near_ns=ERA1_UNIX_S * NS + day) == ERA1_UNIX_S * NS
    assert from_ntp64(0, near_ns=-UNIX_TO_NTP_S * NS + day) == -UNIX_TO_NTP_S * NS
    # A 2023 timestamp read in 2023 stays in era 0; the same bits read in 2100 move to era 1.
    assert from_ntp64(ntp64(T1), near_ns=T1) == T1
    assert from_ntp64(ntp64(T1), near_ns=4_102_444_800 * NS) == T1 + 2**32 * NS


HALF_ERA_NS = 2**31 * NS  # 68 years: beyond it the nearest era is the wrong one


@given(
    st.integers(-UNIX_TO_NTP_S * NS, 2**33 * NS),
    st.integers(-HALF_ERA_NS + NS, HALF_ERA_NS - NS),
)
def test_timestamp_round_trip_within_68_years(unix_ns: int, distance_ns: int) -> None:
    assert abs(from_ntp64(to_ntp64(unix_ns), near_ns=unix_ns + distance_ns) - unix_ns) <= 1


def test_offset_delay_and_uncertainty_are_exact() -> None:
    root_delay = 0x0290  # 656/65536 s = 10.009765625 ms
    root_dispersion = 0x0148  # 328/65536 s = 5.0048828125 ms
    request, packet, t1, t4 = exchange(root_delay=root_delay, root_dispersion=root_dispersion)

    sample = parse_response(packet, request[40:48], t1, t4)

    # θ = ((T2−T1) + (T3−T4)) / 2 = (260 ms + 240 ms) / 2; δ = 21 ms − 1 ms held.
    # Bound = δ/2 + root_delay/2 + root_dispersion = 10 + 5.0048828125 + 5.0048828125 ms.
    assert sample == Sample(
        offset_ns=250 * MS,
        delay_ns=20 * MS,
        root_delay_ns=10_009_766,
        root_dispersion_ns=5_004_883,
        uncertainty_us=20_010,
        stratum=1,
        leap=0,
        version=4,
    )
    as_int = parse_response(packet, int.from_bytes(request[40:48], "big"), t1, t4)
    assert as_int == sample


def test_asymmetric_path_moves_the_offset_within_the_bound() -> None:
    request, packet, t1, t4 = exchange(offset=0, outbound=30 * MS, back=0, held=0)
    sample = parse_response(packet, request[40:48], t1, t4)
    assert sample.offset_ns == 15 * MS  # half the asymmetry shows up as offset ...
    assert sample.uncertainty_us == 15_000  # ... and the bound covers it exactly


@pytest.mark.parametrize(
    ("t1", "offset"),
    [
        pytest.param(ERA1_UNIX_S * NS - NS, 2 * NS, id="server-past-2036-rollover"),
        pytest.param(ERA1_UNIX_S * NS + NS, -2 * NS, id="client-past-2036-rollover"),
        pytest.param(2_208_988_800 * NS, -3 * NS, id="2040"),
    ],
)
def test_offset_across_the_era_boundary(t1: int, offset: int) -> None:
    request, packet, t1, t4 = exchange(t1=t1, offset=offset)
    sample = parse_response(packet, request[40:48], t1, t4)
    assert sample.offset_ns == offset
    assert sample.delay_ns == 20 * MS


def test_extension_fields_after_the_header_are_ignored() -> None:
    request, packet, t1, t4 = exchange()
    sample = parse_response(packet + bytes(20), request[40:48], t1, t4)
    assert sample.offset_ns == 250 * MS


def _patched(packet: bytes, at: int, value: bytes) -> bytes:
    return packet[:at] + value + packet[at + len(value) :]


GOOD_REQUEST, GOOD_REPLY, GOOD_T1, GOOD_T4 = exchange()

MALFORMED = [
    pytest.param(b"", r"0 bytes, shorter", id="empty"),
    pytest.param(GOOD_REPLY[:47], r"47 bytes, shorter than the 48-byte header", id="47-bytes"),
    pytest.param(_patched(GOOD_REPLY, 0, b"\x23"), r"mode 3, expected 4", id="mode-client"),
    pytest.param(_patched(GOOD_REPLY, 0, b"\x25"), r"mode 5, expected 4", id="mode-broadcast"),
    pytest.param(_patched(GOOD_REPLY, 0, b"\x14"), r"version 2, expected", id="version-2"),
    pytest.param(_patched(GOOD_REPLY, 0, b"\x2c"), r"version 5, expected", id="version-5"),
    pytest.param(_patched(GOOD_REPLY, 0, b"\xe4"), r"leap indicator 3", id="leap-3"),
    pytest.param(_patched(GOOD_REPLY, 1, b"\x10"), r"stratum 16", id="stratum-16"),
    pytest.param(_patched(GOOD_REPLY, 1, b"\xff"), r"stratum 255", id="stratum-255"),
    pytest.param(
        _patched(_patched(GOOD_REPLY, 1, b"\x00"), 12, b"DENY"),
        r"kiss-o'-death \(stratum 0\), code 'DENY': access denied",
        id="kiss-deny",
    ),
    pytest.param(
        _patched(_patched(GOOD_REPLY, 1, b"\x00"), 12, b"XYZ\0"),
        r"code 'XYZ': unknown code",
        id="kiss-unknown",
    ),
    pytest.param(
        _patched(GOOD_REPLY, 24, bytes(8)), r"originate timestamp 0000000000000000", id="origin-0"
    ),
    pytest.param(
        _patched(GOOD_REPLY, 31, bytes([GOOD_REPLY[31] ^ 1])), r"does not answer", id="origin+1"
    ),
    pytest.param(_patched(GOOD_REPLY, 32, bytes(8)), r"zero receive timestamp", id="receive-0"),
    pytest.param(_patched(GOOD_REPLY, 40, bytes(8)), r"zero transmit timestamp", id="transmit-0"),
]


@pytest.mark.parametrize(("packet", "message"), MALFORMED)
def test_malformed_replies_are_rejected(packet: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_response(packet, GOOD_REQUEST[40:48], GOOD_T1, GOOD_T4)


def test_version_3_reply_is_accepted() -> None:
    packet = _patched(GOOD_REPLY, 0, b"\x1c")  # LI 0, version 3, mode 4
    assert parse_response(packet, GOOD_REQUEST[40:48], GOOD_T1, GOOD_T4).version == 3


def test_server_sending_before_receiving_is_rejected() -> None:
    request, packet, t1, t4 = exchange(held=-1 * MS)
    with pytest.raises(FormatError, match=r"sent 1000000 ns before the request arrived"):
        parse_response(packet, request[40:48], t1, t4)


def test_server_held_longer_than_the_round_trip_is_rejected() -> None:
    request, packet, t1, _ = exchange(held=50 * MS)
    with pytest.raises(FormatError, match=r"negative round-trip delay"):
        parse_response(packet, request[40:48], t1, t1 + 30 * MS)


@pytest.mark.parametrize("sent", [b"1234567", bytes(9), -1, 2**64])
def test_bad_request_transmit_is_usage_error(sent: bytes | int) -> None:
    with pytest.raises(UsageError, match="request transmit timestamp"):
        parse_response(GOOD_REPLY, sent, GOOD_T1, GOOD_T4)


@given(
    st.binary(max_size=96),
    st.binary(min_size=8, max_size=8),
    st.integers(-(2**62), 2**62),
    st.integers(0, 10 * NS),
)
def test_random_bytes_only_raise_format_error(
    data: bytes, sent: bytes, t1: int, elapsed: int
) -> None:
    with contextlib.suppress(FormatError):
        parse_response(data, sent, t1, t1 + elapsed)


@st.composite
def well_formed_replies(draw: st.DrawFn) -> bytes:
    """Replies that pass the header checks and echo our request, with arbitrary times."""
    first = draw(st.sampled_from([0x1C, 0x24, 0x64, 0xA4]))  # LI 0-2, version 3 or 4, mode 4
    stratum = draw(st.integers(1, 15))
    root_delay, root_dispersion = draw(st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=2))
    receive, transmit = draw(st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=2))
    header = struct.pack("!BBbbII4s", first, stratum, 0, 0, root_delay, root_dispersion, b"GPS\0")
    return header + bytes(8) + GOOD_REQUEST[40:48] + struct.pack("!QQ", receive, transmit)


@given(well_formed_replies(), st.integers(0, 2**40))
def test_well_formed_headers_give_a_sample_or_format_error(packet: bytes, elapsed: int) -> None:
    try:
        sample = parse_response(packet, GOOD_REQUEST[40:48], GOOD_T1, GOOD_T1 + elapsed)
    except FormatError:
        return
    assert sample.delay_ns >= 0
    assert sample.uncertainty_us >= 0
    assert all(isinstance(v, int) for v in (sample.offset_ns, sample.delay_ns))
