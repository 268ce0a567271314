"""Ledger directory: init, one writer, events in, proofs out, time-skew flag."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proctor.errors import EventError, UsageError, VerificationError
from proctor.events.canonical import canonical_bytes, decode_event
from proctor.events.ids import _MAX_NS, _MIN_NS, format_time, new_event_id, now_ns, parse_time
from proctor.events.schema import Event
from proctor.ledger.ledger import (
    DB_NAME,
    ENTRIES_CHUNK,
    Ledger,
    _time_ns,
    load_signer,
    write_key_pair,
)
from proctor.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from proctor.ledger.note import Signer
from proctor.ledger.receipt import Receipt, verify_receipt
from proctor.ledger.store import SqliteStore
from tests.ledger.conftest import tamper

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


@given(st.integers(_MIN_NS, _MAX_NS))
def test_stamp_reads_event_times_like_parse_time(ns: int) -> None:
    text = format_time(ns)
    assert _time_ns(text) == parse_time(text) == ns


@pytest.mark.parametrize(
    "bad", ["2026-11-23T09:12:04.21873451xZ", "2026-02-30T00:00:00.000000000Z", "yesterday", ""]
)
def test_stamp_refuses_times_parse_time_refuses(bad: str) -> None:
    with pytest.raises(EventError):
        _time_ns(bad)


def _raw(start: int, count: int) -> list[bytes]:
    return [b'{"n":%d}' % i for i in range(start, start + count)]


def test_proofs_stay_exact_while_the_ledger_grows_across_tiles(
    ledger_dir: tuple[Path, Signer],
) -> None:
    """One writer's Ledger (one tile cache, one remembered checkpoint) proves after each append;
    a reader without a cache must give the same hashes, and every proof must verify.

    The sizes straddle level-0 tile boundaries (256, 512) and the first full level-1 tile
    (65,536 leaves), so full tiles get cached and partial ones grow between proofs.
    """
    d, signer = ledger_dir
    rng = random.Random(6962)
    sizes = [1, 256, 257, 511, 513, 800, 65_535, 65_536, 65_537, 66_000]
    with Ledger(d, signer=signer) as lg, Ledger(d, cache_tiles=0) as plain:
        at, older = 0, [0]
        for size in sizes:
            for first in range(at, size, 5000):
                lg.append_raw(_raw(first, min(5000, size - first)))
            at = size
            lg.checkpoint()
            cp = lg.latest_checkpoint()
            assert cp is not None and cp.size == size
            picks = {0, size - 1, size // 2, 255, 256, 65_535, rng.randrange(size)}
            for index in sorted(i for i in picks if i < size):
                receipt = lg.prove(index)
                assert receipt.checkpoint == lg.checkpoint()  # the new checkpoint, not the last
                assert receipt == plain.prove(index), index
                verify_receipt(receipt, lg.entry(index), [signer.verifier])
            for old in older:
                proof = lg.consistency(old, size)
                assert proof == plain.consistency(old, size), (old, size)
                assert lg.root(old) == plain.root(old)
                verify_consistency(old, size, lg.root(old), cp.root, proof)
            older.append(size)
        assert len(lg._tile_cache) > 0  # the first level-1 tile and the full level-0 tiles


def test_prove_verifies_a_changed_checkpoint_note_again(ledger_dir: tuple[Path, Signer]) -> None:
    """The checkpoint signature check is skipped only for the very note verified last."""
    d, signer = ledger_dir
    with Ledger(d, signer=signer) as lg:
        lg.append_raw(_raw(0, 10))
        note = lg.checkpoint()
    run = tamper(d / DB_NAME)
    with Ledger(d) as reader:
        assert reader.prove(3).checkpoint == reader.prove(4).checkpoint == note
        assert reader.latest_checkpoint() is reader.latest_checkpoint()  # verified once
        lines = note.split("\n")
        lines[1] = "11"  # claims one more entry, keeps the signature
        run("UPDATE checkpoints SET note = ? WHERE size = 10", ("\n".join(lines),))
        with pytest.raises(VerificationError, match="bad signature"):
            reader.prove(3)
        with pytest.raises(VerificationError, match="bad signature"):
            reader.latest_checkpoint()
        run("UPDATE checkpoints SET note = ? WHERE size = 10", (note,))
        receipt = reader.prove(3)
        assert receipt.checkpoint == note
        verify_receipt(receipt, reader.entry(3), [signer.verifier])


def test_entries_are_read_in_chunks_under_the_read_lock(ledger_dir: tuple[Path, Signer]) -> None:
    d, signer = ledger_dir
    data = _raw(0, 2 * ENTRIES_CHUNK + 5)
    with Ledger(d, signer=signer) as lg:
        lg.append_raw(data)
        got = []
        for i, e in lg.entries():
            got.append(e)
            if i % 1000 == 0:  # other reads between chunks: the lock is not held by the caller
                assert lg.entry(i) == e
                assert lg.size() == len(data)
        assert got == data
        assert list(lg.entries(4090, 4100)) == list(enumerate(data))[4090:4100]
        assert [i for i, _ in lg.entries(ENTRIES_CHUNK - 1)] == list(
            range(ENTRIES_CHUNK - 1, len(data))
        )
        assert list(lg.entries(5, 5)) == []
        assert list(lg.entries(len(data), 10**12)) == []
        # The entries as of the first chunk: one appended meanwhile comes in the next call.
        it = lg.entries()
        assert next(it) == (0, data[0])
        lg.append_raw([b"late"])
        assert len(list(it)) == len(data) - 1
        assert list(lg.entries(len(data)))[-1] == (len(data), b"late")


def test_entries_waits_for_the_read_lock(ledger_dir: tuple[Path, Signer]) -> None:
    """entries() reads the shared connection only while holding the lock the other reads take."""
    d, signer = ledger_dir
    with Ledger(d, signer=signer) as lg:
        lg.append_raw(_raw(0, 3))
    with Ledger(d) as reader:
        got: list[tuple[int, bytes]] = []
        thread = threading.Thread(target=lambda: got.extend(reader.entries()))
        with reader._read_lock:  # another read in progress
            thread.start()
            thread.join(0.3)
            assert thread.is_alive() and got == []
        thread.join()
        assert got == list(enumerate(_raw(0, 3)))


def test_entries_show_gaps_like_the_store(ledger_dir: tuple[Path, Signer]) -> None:
    d, signer = ledger_dir
    with Ledger(d, signer=signer) as lg:
        lg.append_raw(_raw(0, ENTRIES_CHUNK + 10))
    run = tamper(d / DB_NAME)
    for gone in (0, 100, ENTRIES_CHUNK - 1, ENTRIES_CHUNK, ENTRIES_CHUNK + 9):
        run("DELETE FROM entries WHERE idx = ?", (gone,))
    store = SqliteStore(d / DB_NAME, readonly=True)
    try:
        with Ledger(d) as reader:
            assert list(reader.entries()) == list(store.entries())
            assert list(reader.entries(50, ENTRIES_CHUNK + 5)) == list(
                store.entries(50, ENTRIES_CHUNK + 5)
            )
    finally:
        store.close()


def test_reads_from_many_threads_share_one_connection_safely(
    ledger_dir: tuple[Path, Signer],
) -> None:
    d, signer = ledger_dir
    data = _raw(0, ENTRIES_CHUNK + 300)
    with Ledger(d, signer=signer) as lg:
        lg.append_raw(data)
        lg.checkpoint()
    errors: list[BaseException] = []
    with Ledger(d) as reader:
        cp = reader.latest_checkpoint()
        assert cp is not None

        def work(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(3):
                    assert [e for _, e in reader.entries()] == data
                    for _ in range(20):
                        i = rng.randrange(len(data))
                        r = reader.prove(i)
                        verify_inclusion(i, cp.size, leaf_hash(data[i]), r.hashes, cp.root)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
