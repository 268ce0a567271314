"""Shared helpers: ledgers filled with events of chosen kinds and ages, rules, hold stores."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from proctor.events import Action, Actor, Clock, Decision, Event, Outcome, Session, Target
from proctor.events.ids import _uuid7, format_time, now_ns
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.retention.config import RetentionRule
from proctor.retention.holds import HOLDS_NAME, HoldStore

DAY = 86_400 * 1_000_000_000
SESSION = "4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
OTHER_SESSION = "9e8d7c6b-5a49-4382-9716-0f1e2d3c4b5a"

RULES = (
    RetentionRule(name="sessions-7y", kinds=("session.*",), keep_days=2555),
    RetentionRule(name="queries-400d", kinds=("query", "decision", "outcome"), keep_days=400),
    RetentionRule(name="restricted-10y", sensitivity=("restricted",), keep_days=3650),
)


def event(
    kind: str = "query",
    *,
    age_days: float = 0,
    actor: str = "u-1",
    session: str = SESSION,
    sensitivity: str | None = None,
) -> Event:
    """An event of ``kind`` recorded ``age_days`` ago (its time and its id's mint time)."""
    t = now_ns() - int(age_days * DAY)
    parts: dict[str, object] = {}
    if kind == "query":
        parts = {
            "action": Action(class_="read", operation="SELECT"),
            "target": Target(type="postgres", name="db1", sensitivity=sensitivity),
        }
    elif kind == "decision":
        parts = {"decision": Decision(effect="allow", reasons=("ok",))}
    elif kind in ("outcome", "auth.failed"):
        parts = {"outcome": Outcome(status="ok")}
    return Event(
        id=_uuid7(t // 1_000_000, int.from_bytes(os.urandom(1)), int.from_bytes(os.urandom(8))),
        kind=kind,  # type: ignore[arg-type]
        time=format_time(t),
        clock=Clock(source="system"),
        actor=Actor(id=actor, kind="human"),
        session=Session(id=session),
        **parts,  # type: ignore[arg-type]
    )


@pytest.fixture
def signer() -> Signer:
    return Signer.generate("retention.test/ledger")


@pytest.fixture
def ledger_dir(tmp_path: Path, signer: Signer) -> Path:
    d = tmp_path / "ledger"
    Ledger.init(d, signer)
    return d


def fill(d: Path, signer: Signer, events: Sequence[Event]) -> None:
    """Append ``events`` and sign a checkpoint."""
    with Ledger(d, signer=signer) as lg:
        lg.append_many(events)
        lg.checkpoint()


@pytest.fixture
def holds(ledger_dir: Path) -> Iterator[HoldStore]:
    store = HoldStore(ledger_dir / HOLDS_NAME)
    yield store
    store.close()
