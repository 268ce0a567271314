"""Verification of retention prunes: each range pruned by design, accounted for by its event.

The ``prunes`` table says which entry bodies are gone on purpose. Each row must chain on from
the one before (``first`` is where the previous range ended), and the newest one, which sets
the floor, must be recorded by a ``retention.pruned`` event that names the same range, rule and
archive and is covered by a signed checkpoint. Such a range is reported for information
(``pruned``); anything else is ``unrecorded-prune``, a failure: someone moved the floor to hide
entries. An older prune's own event may lie below a later floor (pruned itself, kept in that
later archive); the chain up to the newest, recorded prune accounts for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proctor.errors import EventError
from proctor.events.canonical import decode_event
from proctor.ledger.store import Prune, SqliteStore

if TYPE_CHECKING:
    from proctor.ledger.verify import Report

__all__ = ["check_prunes", "prune_attributes"]

SUBMITTED_BY = "proctor.submitted_by"
"""The attribute the audit service puts on every event pushed to it (docs/service.md)."""


def prune_attributes(prune: Prune) -> dict[str, str]:
    """The attributes a ``retention.pruned`` event must carry to record ``prune``."""
    return {
        "retention.first_index": str(prune.first),
        "retention.below_index": str(prune.below),
        "retention.rule": prune.rule,
        "retention.archive": prune.archive,
        "retention.archive_sha256": prune.archive_sha256,
    }


def _event_problem(store: SqliteStore, prune: Prune, signed_size: int) -> str | None:
    """Why the entry at ``prune.event_index`` does not record ``prune``, or None."""
    i = prune.event_index
    data = store.entry(i)
    if data is None:
        return f"its event at index {i} is missing"
    try:
        event = decode_event(data)
    except EventError as exc:
        return f"the entry at index {i} is not an event ({exc})"
    diffs = [
        f"{key} {event.attributes.get(key)!r} (the floor says {value!r})"
        for key, value in prune_attributes(prune).items()
        if event.attributes.get(key) != value
    ]
    if event.kind != "retention.pruned":
        why = f"the entry at index {i} is a {event.kind} event, not retention.pruned"
    elif SUBMITTED_BY in event.attributes:  # pushed through the API (which refuses the kind)
        why = f"the event at index {i} was submitted from outside, not written by retention"
    elif diffs:
        why = f"its event at index {i} records another prune: " + ", ".join(diffs)
    elif i >= signed_size:
        why = f"its event at index {i} is not covered by a signed checkpoint"
    else:
        return None
    return why


def check_prunes(store: SqliteStore, prunes: list[Prune], size: int, report: Report) -> None:
    """Report each pruned range: ``pruned`` when recorded as it should be, else a failure.

    Runs after the roots are checked: ``report.verified_size`` is the signed size.
    """
    if not prunes:
        return
    floor = prunes[-1].below
    leftover = store.rows_below_floor()
    previous = 0
    for p in prunes:
        problems: list[str] = []
        if p.first != previous:
            problems.append(f"it starts at {p.first}, the prune before ended at {previous}")
        if not p.first < p.below <= p.event_index < size:
            problems.append(
                f"its range [{p.first}, {p.below}) and event index {p.event_index} do not fit "
                f"a ledger of {size} entries"
            )
        elif p.event_index >= floor and (why := _event_problem(store, p, report.verified_size)):
            problems.append(why)
        last = p.below - 1
        if problems:
            report.add(
                "unrecorded-prune",
                p.first,
                last,
                f"entries {p.first}–{last} are absent as if pruned, but " + "; ".join(problems),
            )
        else:
            where = (
                f"at index {p.event_index}"
                if p.event_index >= floor
                else f"at index {p.event_index} (that event is pruned too, by a later prune)"
            )
            note = (
                f"; {leftover} bodies below the floor are still stored (an interrupted "
                "sweep: the next retention run deletes them)"
                if leftover and p is prunes[-1]
                else ""
            )
            report.add(
                "pruned",
                p.first,
                last,
                f"entries {p.first}–{last} pruned by retention rule {p.rule} {where} "
                f"(archive {p.archive}, sha256 {p.archive_sha256}){note}",
            )
        previous = p.below
