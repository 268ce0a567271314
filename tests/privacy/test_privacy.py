"""privacy/: seal and unseal, the key store, and erasure against a real ledger that verifies."""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
from pathlib import Path

import msgspec
import pytest

from proctor.errors import UsageError, VerificationError
from proctor.events import Original, canonical_bytes, decode_event, original_bytes
from proctor.ledger.ledger import DB_NAME, Ledger
from proctor.ledger.note import Signer
from proctor.ledger.receipt import verify_receipt
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import verify_ledger
from proctor.privacy import (
    DEFAULT_FIELDS,
    KeyStore,
    Sealer,
    erase_subject,
    read_master_key,
    unseal,
)
from proctor.privacy.seal import original_digest

EXAMPLES = Path(__file__).parents[2] / "examples" / "events.jsonl"
EVENTS = [decode_event(line) for line in EXAMPLES.read_bytes().splitlines()]
MASTER = bytes(range(32))


def _with_actor_data() -> list[object]:
    return [e for e in EVENTS if e.actor is not None and (e.actor.email or e.actor.ip or e.input)]


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    store = KeyStore(tmp_path / "keys.sqlite", MASTER)
    yield store
    store.close()


# --- sealing --------------------------------------------------------------------------------


@pytest.mark.parametrize("event", _with_actor_data(), ids=lambda e: e.kind)
def test_sealed_fields_leave_the_event_and_come_back(event, keys: KeyStore) -> None:  # type: ignore[no-untyped-def]
    sealed = Sealer(keys.key_for, DEFAULT_FIELDS)(event)
    assert sealed.sealed is not None and sealed.id == event.id
    stored = canonical_bytes(sealed)
    for secret in (event.actor.email, event.actor.display_name, event.actor.ip):
        if secret:
            assert secret.encode() not in stored
    assert decode_event(stored) == sealed  # the sealed form is a valid event
    opened = unseal(decode_event(stored), keys.key)
    assert opened.state == "unsealed"
    assert msgspec.structs.replace(opened.event, sealed=None) == event


def test_a_sealed_original_has_a_keyed_digest_and_unseals_to_the_same_bytes(keys: KeyStore) -> None:
    event = next(e for e in EVENTS if e.kind == "ingest" and e.actor is not None)
    raw = b"AUDIT: SESSION,1,1,READ,SELECT,,,select * from t where ssn='123-45-6789',<none>"
    event = msgspec.structs.replace(
        event,
        original=Original(format="pgaudit", data=raw.decode()),
        source=msgspec.structs.replace(
            event.source, original_sha256=hashlib.sha256(raw).hexdigest()
        ),
    )
    sealed = Sealer(keys.key_for, ["original"])(event)
    assert sealed.original is None
    _, key = keys.key_for(event.actor.id)
    assert sealed.source.original_sha256 == original_digest(key, raw)
    assert b"123-45-6789" not in canonical_bytes(sealed)
    opened = unseal(sealed, keys.key)
    assert original_bytes(opened.event.original) == raw


def test_a_ciphertext_moved_to_another_event_does_not_open(keys: KeyStore) -> None:
    a, b = (Sealer(keys.key_for, DEFAULT_FIELDS)(e) for e in _with_actor_data()[:2])
    assert a.actor.id == b.actor.id
    swapped = msgspec.structs.replace(b, sealed=a.sealed)
    with pytest.raises(VerificationError, match="do not open"):
        unseal(swapped, keys.key)
    relabelled = msgspec.structs.replace(
        a, sealed=msgspec.structs.replace(a.sealed, fields=("actor.ip",))
    )
    with pytest.raises(VerificationError, match="do not open"):
        unseal(relabelled, keys.key)


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(UsageError, match=r"cannot seal actor\.id"):
        Sealer(lambda s: ("0" * 32, b"k" * 32), ["actor.id"])


def test_events_without_an_actor_or_personal_data_pass_unchanged(keys: KeyStore) -> None:
    sealer = Sealer(keys.key_for, DEFAULT_FIELDS)
    for event in EVENTS:
        if event.actor is None:
            assert sealer(event) is event


# --- the key store --------------------------------------------------------------------------


def test_keys_are_wrapped_and_the_master_key_is_checked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite", MASTER)
    key_id, key = store.key_for("u-1042")
    assert store.key_for("u-1042") == (key_id, key)
    store.close()
    assert key not in (tmp_path / "keys.sqlite").read_bytes()
    again = KeyStore(tmp_path / "keys.sqlite", MASTER)
    assert again.key("u-1042", key_id) == key
    again.close()
    with pytest.raises(UsageError, match="the master key does not open"):
        KeyStore(tmp_path / "keys.sqlite", secrets.token_bytes(32))


def test_master_key_sources(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(MASTER)
    path.chmod(0o600)
    assert read_master_key(file=path) == MASTER
    path.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        read_master_key(file=path)
    assert read_master_key(env_value=base64.b64encode(MASTER).decode()) == MASTER
    with pytest.raises(UsageError, match="must be 32 bytes"):
        read_master_key(env_value="c2hvcnQ=")


# --- erasure on a real ledger ---------------------------------------------------------------


def test_erasure_makes_the_subject_unreadable_and_the_ledger_still_verifies(tmp_path: Path) -> None:
    signer = Signer.generate("privacy.test/ledger")
    directory = tmp_path / "ledger"
    Ledger.init(directory, signer)
    keys = KeyStore(directory / "keys.sqlite", MASTER)
    ledger = Ledger(directory, signer=signer, sealer=Sealer(keys.key_for, DEFAULT_FIELDS))
    events = _with_actor_data()
    first = ledger.append_many(events)
    ledger.checkpoint()
    receipt = ledger.prove(first)
    subject = events[0].actor.id
    db = sqlite3.connect(directory / "keys.sqlite")
    wrapped = [
        bytes(r[0]) for r in db.execute("SELECT wrapped FROM keys WHERE subject = ?", (subject,))
    ]
    db.close()
    assert wrapped

    done = erase_subject(
        keys, ledger.append, subject, reason="GDPR art. 17 request #88", by="dpo", instance="t"
    )
    assert done.index == first + len(events)
    erasure = decode_event(ledger.entry(done.index))
    assert erasure.kind == "erasure"
    assert erasure.attributes["erasure.key_id"] == ",".join(done.key_ids)
    assert erasure.attributes["erasure.subject"] == subject

    for i, event in enumerate(events):
        stored = decode_event(ledger.entry(first + i))
        state = unseal(stored, keys.key).state
        assert state == ("erased" if event.actor.id == subject else "unsealed")
    # the entry bytes, their proofs and the whole ledger are unchanged and verify
    verify_receipt(receipt, ledger.entry(first), [ledger.verifier])
    ledger.checkpoint()
    store = SqliteStore(directory / DB_NAME, readonly=True)
    report = verify_ledger(store, [ledger.verifier], ledger.origin)
    store.close()
    assert report, report.to_dict()
    # the wrapped key's bytes left the file (secure_delete + WAL truncated)
    keys.close()
    ledger.close()
    after = (directory / "keys.sqlite").read_bytes()
    assert (
        not Path(f"{directory / 'keys.sqlite'}-wal").exists()
        or not Path(f"{directory / 'keys.sqlite'}-wal").read_bytes()
    )
    store = KeyStore(directory / "keys.sqlite", MASTER)
    assert store.key_ids(subject) == ()
    store.close()
    assert all(blob not in after for blob in wrapped)


def test_a_failed_erasure_event_erases_nothing(tmp_path: Path, keys: KeyStore) -> None:
    key_id, key = keys.key_for("u-1")

    def failing(event: object) -> int:
        raise OSError("the ledger is down")

    with pytest.raises(OSError):
        erase_subject(keys, failing, "u-1", reason="r", by="dpo", instance="t")
    assert keys.key("u-1", key_id) == key
    with pytest.raises(UsageError, match="no keys held"):
        erase_subject(keys, failing, "nobody", reason="r", by="dpo", instance="t")


def test_an_interrupted_erasure_finishes_when_the_store_opens(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite", MASTER)
    key_id, _ = store.key_for("u-7")
    store.begin_erasure("u-7", "request 12")  # then the process dies before the event
    store.close()
    reopened = KeyStore(tmp_path / "keys.sqlite", MASTER)
    assert [(p.subject, p.key_ids, p.reason) for p in reopened.completed] == [
        ("u-7", (key_id,), "request 12")
    ]
    assert reopened.key("u-7", key_id) is None
    reopened.close()
