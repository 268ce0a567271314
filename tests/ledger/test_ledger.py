"""Ledger directory: init, one writer, events in, proofs out, time-skew flag."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from proctor.errors import UsageError
from proctor.events.canonical import canonical_bytes, decode_event
from proctor.events.ids import format_time, new_event_id, now_ns
from proctor.events.schema import Event
from proctor.ledger.ledger import Ledger, load_signer, write_key_pair
from proctor.ledger.merkle import verify_consistency
from proctor.ledger.note import Signer
from proctor.ledger.receipt import Receipt, verify_receipt

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"


def _events() -> list[Event]:
    return [decode_event(line) for line in EXAMPLES.read_bytes().splitlines() if line.strip()]


def _fresh(event: Event, time_ns: int | None = None) -> Event:
    t = now_ns() if time_ns is None else time_ns
    return msgspec.structs.replace(event, id=new_event_id(), time=format_time(t))


@pytest.fixture
def ledger_dir(tmp_path: Path) -> tuple[Path, Signer]:
    signer = Signer.generate("proctor.test/ledger")
    Ledger.init(tmp_path / "l", signer)
    return tmp_path / "l", signer


def test_events_in_receipts_out(ledger_dir: tuple[Path, Signer]) -> None:
    d, signer = ledger_dir
    events = [_fresh(e) for e in _events()]
    with Ledger(d, signer=signer) as lg:
        assert lg.append_many(events[:5]) == 0
        for e in events[5:]:
            lg.append(e)
        assert lg.size() == len(events)
        receipt = lg.prove(7)  # signs a checkpoint: none covered index 7 yet
        old_root = lg.root(4)
    with Ledger(d) as reader:  # read-only: no key needed
        entry = reader.entry(7)
        assert entry == canonical_bytes(events[7])
        cp = verify_receipt(Receipt.parse(receipt.text()), entry, [signer.verifier])
        assert cp.size == len(events)
        proof = reader.consistency(4, cp.size)
        verify_consistency(4, cp.size, old_root, cp.root, proof)
        with pytest.raises(UsageError, match="read-only"):
            reader.append(events[0])
        with pytest.raises(UsageError, match="no entry at index 999"):
            reader.entry(999)


def test_asyncio_producers(ledger_dir: tuple[Path, Signer]) -> None:
    d, signer = ledger_dir
    base = _events()[1]

    async def run(lg: Ledger) -> list[int]:
        return await asyncio.gather(*(lg.append_async(_fresh(base)) for _ in range(200)))

    with Ledger(d, signer=signer) as lg:
        assert sorted(asyncio.run(run(lg))) == list(range(200))


def test_event_far_from_ledger_time_is_kept_and_flagged(ledger_dir: tuple[Path, Signer]) -> None:
    d, signer = ledger_dir
    base = _events()[1]
    with Ledger(d, signer=signer, max_time_skew_ms=60_000) as lg:
        near = lg.append(_fresh(base, now_ns() - 30 * 10**9))
        far = lg.append(_fresh(base, now_ns() - 3600 * 10**9))
        future = lg.append(_fresh(base, now_ns() + 600 * 10**9))
        got = {i: decode_event(lg.entry(i)).flags for i in (near, far, future)}
    assert got == {near: (), far: ("time_skew",), future: ("time_skew",)}


def test_one_writer_per_ledger(ledger_dir: tuple[Path, Signer]) -> None:
    d, signer = ledger_dir
    with Ledger(d, signer=signer):
        with pytest.raises(UsageError, match="being written by another process"):
            Ledger(d, signer=signer)
        with Ledger(d) as reader:  # readers are always welcome
            assert reader.size() == 0
    with Ledger(d, signer=signer):  # released on close
        pass


def test_wrong_key_and_missing_ledger(tmp_path: Path, ledger_dir: tuple[Path, Signer]) -> None:
    d, _ = ledger_dir
    with pytest.raises(UsageError, match="is not this ledger's key"):
        Ledger(d, signer=Signer.generate("proctor.test/ledger"))
    with pytest.raises(UsageError, match="no ledger in"):
        Ledger(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="already holds a ledger"):
        Ledger.init(d, Signer.generate("x"))


def test_key_files(tmp_path: Path) -> None:
    signer = Signer.generate("audit.example/log")
    skey, vkey = write_key_pair(signer, tmp_path)
    assert skey.name == "audit.example-log.key" and skey.stat().st_mode & 0o777 == 0o600
    assert load_signer(skey).skey == signer.skey
    assert vkey.read_text().strip() == signer.verifier.vkey
    with pytest.raises(UsageError, match="refusing to overwrite"):
        write_key_pair(signer, tmp_path)
    skey.chmod(0o640)
    with pytest.raises(UsageError, match="readable by others"):
        load_signer(skey)


def test_skew_is_measured_against_the_sntp_corrected_clock(
    ledger_dir: tuple[Path, Signer],
) -> None:
    """The system clock is 10 minutes behind the (loopback) NTP server the ledger trusts."""
    from proctor.events.clock import ClockSource
    from tests.events.test_clock import Responder

    server = Responder()
    server.offset_ns = 600 * 10**9
    try:
        clock = ClockSource("127.0.0.1", server.port, samples=2, sample_interval_s=0.0)
        clock.sync()
        d, signer = ledger_dir
        base = _events()[1]
        t_ntp, quality = clock.now()
        assert quality.source == "ntp" and quality.offset_us is not None
        assert abs(quality.offset_us - 600 * 10**6) < 50_000
        stamped = msgspec.structs.replace(_fresh(base, t_ntp), clock=quality)
        with Ledger(d, signer=signer, max_time_skew_ms=60_000, clock=clock) as lg:
            good = lg.append(stamped)
            skewed = lg.append(_fresh(base))  # stamped with the system clock
            flags = {i: decode_event(lg.entry(i)).flags for i in (good, skewed)}
            assert decode_event(lg.entry(good)).clock.source == "ntp"
    finally:
        server.close()
    assert flags == {good: (), skewed: ("time_skew",)}
