"""Erasing a subject: the intent, the ``erasure`` event, then the keys (each step durable).

After it, every sealed field of the subject's events is unreadable; the entries, their leaf
hashes and every proof are unchanged, so the ledger still verifies. The event records who
asked, why, the subject and the destroyed key ids, never the erased data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from proctor.events import Actor, Clock, Decision, Event, Source, format_time, new_event_id, now_ns
from proctor.privacy.keys import KeyStore

__all__ = ["Erased", "erase_subject", "erase_subject_async", "erasure_event"]


@dataclass(frozen=True)
class Erased:
    """One finished erasure: the subject, the keys destroyed, the ledger index of its event."""

    subject: str
    key_ids: tuple[str, ...]
    index: int


def erasure_event(
    subject: str, key_ids: tuple[str, ...], *, reason: str, by: str, instance: str
) -> Event:
    """The ``erasure`` event for destroying ``key_ids`` of ``subject``."""
    return Event(
        id=new_event_id(),
        kind="erasure",
        time=format_time(now_ns()),
        clock=Clock(source="system"),
        actor=Actor(id=by, kind="human"),
        decision=Decision(effect="allow", reasons=(reason,)),
        source=Source(system="proctor", gateway=instance),
        attributes={
            "erasure.subject": subject,
            "erasure.key_id": ",".join(key_ids),
        },
    )


@contextlib.contextmanager
def _erasing(
    keys: KeyStore, subject: str, *, reason: str, by: str, instance: str
) -> Iterator[tuple[Event, tuple[str, ...]]]:
    """The intent (durable), then the caller appends the event; then the keys go. If the
    append fails the intent is dropped: no event, no erasure."""
    key_ids = keys.begin_erasure(subject, reason)
    try:
        yield erasure_event(subject, key_ids, reason=reason, by=by, instance=instance), key_ids
    except BaseException:
        keys.cancel_erasure(subject)
        raise
    keys.finish_erasure(subject)


def erase_subject(
    keys: KeyStore,
    append: Callable[[Event], int],
    subject: str,
    *,
    reason: str,
    by: str,
    instance: str,
) -> Erased:
    """Erase ``subject``: intent recorded, event appended (durable), keys destroyed."""
    with _erasing(keys, subject, reason=reason, by=by, instance=instance) as (event, key_ids):
        index = append(event)
    return Erased(subject, key_ids, index)


async def erase_subject_async(
    keys: KeyStore,
    append: Callable[[Event], Awaitable[int]],
    subject: str,
    *,
    reason: str,
    by: str,
    instance: str,
) -> Erased:
    """``erase_subject`` for asyncio code (the append is awaited)."""
    with _erasing(keys, subject, reason=reason, by=by, instance=instance) as (event, key_ids):
        index = await append(event)
    return Erased(subject, key_ids, index)
