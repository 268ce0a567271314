"""Shared inputs: the example events, hostile variants of them, and real ledgers."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from proctor.events import Event, canonical_bytes, decode_event
from proctor.ledger.ledger import Ledger, load_signer
from proctor.ledger.note import Signer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PATH = ROOT / "examples" / "events.jsonl"
EXAMPLES: list[Event] = [
    decode_event(line) for line in EXAMPLES_PATH.read_text().splitlines() if line.strip()
]

# Everything an attacker who controls a user name, a statement or an application name would
# try against line-, pipe-, key=value- and bracket-delimited formats.
HOSTILE = (
    'evil\nCEF:0|x|y|1|sig|name|10|src=6.6.6.6 \r\n<13>1 - - - - - [x@1 a="b"] forged'
    ' | pipe = equals \\ backslash ] bracket " quote \\" \\] \\\\ \x00 \x1b[31m \u2028 \u0085 é'
)


def example(kind: str, n: int = 0) -> Event:
    """The ``n``-th example event of a kind."""
    return [e for e in EXAMPLES if e.kind == kind][n]


def hostile(event: Event, text: str = HOSTILE) -> Event:
    """``event`` with ``text`` in every free-text field it has."""
    r = msgspec.structs.replace
    if event.actor is not None:
        event = r(event, actor=r(event.actor, id=text[:256], display_name=text[:256]))
    if event.session is not None:
        event = r(event, session=r(event.session, client=text[:256]))
    if event.target is not None:
        event = r(event, target=r(event.target, name=text[:256], objects=(text[:256],)))
    if event.action is not None:
        event = r(event, action=r(event.action, statement=text, operation=text[:64]))
    if event.decision is not None:
        event = r(event, decision=r(event.decision, reasons=(text,), policies=(text[:256],)))
    if event.outcome is not None:
        event = r(event, outcome=r(event.outcome, message=text))
    if event.source is not None:
        event = r(event, source=r(event.source, gateway=text[:256]))
    return event


def make_ledger(d: Path, entries: list[bytes] | None = None) -> Path:
    """A ledger in ``d`` (signer key kept beside it) holding ``entries``, or the examples."""
    Ledger.init(d, Signer.generate("test.example/exports"), keep_signer=True)
    with Ledger(d, signer=load_signer(d / "signer.key")) as lg:
        lg.append_raw(entries if entries is not None else [canonical_bytes(e) for e in EXAMPLES])
    return d


def append(d: Path, entries: list[bytes]) -> None:
    """Append raw entries to the ledger in ``d``."""
    with Ledger(d, signer=load_signer(d / "signer.key")) as lg:
        lg.append_raw(entries)


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    """A ledger holding the example events at indexes 0..20."""
    return make_ledger(tmp_path / "ledger")
