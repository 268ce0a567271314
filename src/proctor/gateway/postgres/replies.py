"""Following the upstream's replies: which request each answers, obligations, outcomes.

Every message forwarded upstream that PostgreSQL answers leaves an :class:`Expect` in a FIFO
(PostgreSQL answers in order). Each reply is matched to the head of the FIFO:

=============  ===========================================================================
expect         replies (PostgreSQL docs, "Message Flow")
=============  ===========================================================================
``Q``          simple query: per statement RowDescription, DataRow…, CommandComplete (or
               EmptyQueryResponse, COPY traffic), then ReadyForQuery ends the cycle
``1``/``2``    Parse → ParseComplete; Bind → BindComplete
``describe``   Describe → [ParameterDescription] then RowDescription or NoData
``E``          Execute → DataRow…, then CommandComplete, EmptyQueryResponse or PortalSuspended
``3``          Close → CloseComplete
``Z``          Sync → ReadyForQuery
=============  ===========================================================================

After an ErrorResponse in the extended protocol PostgreSQL skips every message up to Sync, so
those expectations are dropped (their statements never ran: outcome ``cancelled``).
NoticeResponse, ParameterStatus and NotificationResponse may come at any time and pass.

The server is trusted less than fully. Every message's body is checked against its format
first (``protocol.check_backend``), and each reply must come where the message flow puts it:
within one statement's result RowDescription before DataRow, CopyOutResponse before COPY data,
CopyInResponse only for a COPY FROM; after a simple query's ErrorResponse only ReadyForQuery
(PostgreSQL drops the rest of the string); one ParameterDescription for a statement's
Describe, none for a portal's; a refused statement's sentinel answers with its error only;
nothing after a FATAL error. A reply that fits no expectation means Proctor and the server
disagree about the conversation: ProtocolError, and the session ends (fail closed).

COPY FROM STDIN: whether a COPY statement starts copying in is known only from its answer
(CopyInResponse, or an error, or the statement's end without one). :meth:`Replies.copy_may_start`
says whether that is still open, :attr:`Replies.copy_in` whether PostgreSQL now reads COPY data
from the client (protocol docs, "COPY Operations": then it takes only CopyData, CopyDone,
CopyFail, Flush and Sync).
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from proctor.decision import Decided
from proctor.gateway.postgres.obligations import Obligations, column_names, mask_row
from proctor.gateway.postgres.protocol import (
    ProtocolError,
    check_backend,
    notice_response,
    response_fields,
)
from proctor.gateway.postgres.sql import Statement

if TYPE_CHECKING:
    from proctor.gateway.postgres.session import Session

__all__ = ["Expect", "Portal", "Prepared", "Replies", "Run"]

_ASYNC: Final = frozenset({b"N", b"S", b"A"})
_COMPLETES: Final = frozenset({b"", b"T", b"G", b"c"})
"""Result phases a CommandComplete may end (not amid COPY OUT data)."""
_FATAL: Final = frozenset({"FATAL", "PANIC"})
_INT32 = struct.Struct("!i")
_CUT_TAGS: Final = ("SELECT ", "FETCH ")
_REPLY: Final = {"1": b"1", "2": b"2", "3": b"3", "Z": b"Z"}  # ParseComplete … ReadyForQuery


@dataclass
class Prepared:
    """A prepared statement as PostgreSQL confirmed it."""

    sql: str
    statements: tuple[Statement, ...]
    columns: tuple[str, ...] | None = None


@dataclass
class Portal:
    """A bound portal: its statement and the rows already sent from it."""

    prepared: Prepared
    columns: tuple[str, ...] | None = None
    rows: int = 0


@dataclass(eq=False)
class Run:
    """One allowed statement on its way through the upstream."""

    decided: Decided
    obligations: Obligations
    started_ns: int = field(default_factory=time.monotonic_ns)
    sent: int = 0
    cut: bool = False
    masked: frozenset[int] | None = None
    """Result positions to mask, once the row shape is known."""
    copy_from: bool = False
    """A COPY FROM statement whose answer has not shown yet whether it copies in."""
    copy_to: bool = False
    """A COPY TO statement: it may send COPY data out."""


@dataclass(eq=False)
class Expect:
    """A forwarded message the upstream will answer, and what to do with the answer."""

    kind: str
    runs: list[Run] = field(default_factory=list)
    error: bytes | None = None
    """A refusal: the ErrorResponse that replaces the sentinel's."""
    portal: Portal | None = None
    portal_name: str = ""
    statement: str = ""
    prepared: tuple[str, Prepared] | None = None
    target: tuple[bytes, str] | None = None
    swallow: bool = False
    """An answer Proctor asked for itself (Describe for masking): not the client's."""
    index: int = 0
    batch: int = 0
    answered: bool = False
    """A query string without statements got its EmptyQueryResponse; a statement's Describe
    its ParameterDescription."""
    failed: bool = False
    """A simple query or a Sync got its ErrorResponse: only ReadyForQuery may follow."""
    phase: bytes = b""
    """Where the current statement's result is: ``T`` rows, ``G`` COPY IN, ``H`` COPY OUT
    data, ``c`` COPY OUT done (nothing yet: empty)."""


class Replies:
    """The FIFO of expectations of one session, and the handling of each reply."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.queue: deque[Expect] = deque()
        self.status = b"I"
        """The last ReadyForQuery status: idle, in a transaction, or in a failed one."""
        self.skipping = False
        """PostgreSQL is discarding messages until the client's next Sync."""
        self.ended = False
        """The upstream sent a FATAL (or PANIC) error: the connection is ending."""
        self.copy_in = False
        """PostgreSQL reads COPY data from the client: CopyInResponse came, nothing ended it."""
        self._maybe_copy = False
        """A COPY FROM was forwarded since :meth:`copy_may_start` last found none open."""
        self._ends_ahead = 0
        """CopyDone/CopyFail forwarded before the COPY they end had started."""

    def expect(self, item: Expect) -> None:
        """Note a message just forwarded."""
        self.queue.append(item)
        if any(run.copy_from for run in item.runs):
            self._maybe_copy = True

    def copy_may_start(self) -> bool:
        """Whether a COPY FROM forwarded may still start copying in, none doing so now (a later
        COPY of the same string cannot start before the client ends this one). Its answer
        never needs the client: PostgreSQL flushes CopyInResponse and errors at once."""
        if self._maybe_copy and not self.copy_in:
            self._maybe_copy = any(r.copy_from for e in self.queue for r in e.runs[e.index :])
            if not self._maybe_copy:
                self._ends_ahead = 0  # they ended nothing: PostgreSQL dropped them
        return self._maybe_copy and not self.copy_in

    def copy_ended(self) -> None:
        """The client's CopyDone or CopyFail was forwarded."""
        if self.copy_in:
            self.copy_in = False
        elif self.copy_may_start():
            self._ends_ahead += 1  # sent ahead: it ends the COPY about to start

    def owed_before(self, batch: int) -> bool:
        """True while answers to batches before ``batch`` are still to come."""
        return bool(self.queue) and self.queue[0].batch < batch

    def _settle(self, e: Expect, ok: bool, *, ran: bool = True) -> None:
        """A definition (Parse, Bind, Close) succeeded (``ok``), failed, or was skipped after
        an earlier error (``ran=False``)."""
        s = self.session
        # A definition is believed only while it is still the latest the gateway sent for
        # its name: one superseded since, or forgotten by a SQL PREPARE/DECLARE/DEALLOCATE…
        # (pending set to None), may no longer be what the server holds under that name.
        if e.kind == "1" and e.prepared is not None:
            name, prepared = e.prepared
            latest = s.pending_prepared.get(name, (None, None))[1] is prepared
            if latest:
                del s.pending_prepared[name]
            if ok and latest:
                s.prepared[name] = prepared
            elif ok or (name == "" and ran):
                s.prepared.pop(name, None)  # stale, or the old unnamed statement dropped
        elif e.kind == "2":
            name = e.portal_name
            latest = s.pending_portals.get(name) == (e.batch, e.portal)
            if latest:
                del s.pending_portals[name]
            if ok and latest and e.portal is not None:
                s.portals[name] = e.portal
            elif (ok or name == "") and ran:
                s.portals.pop(name, None)  # unbound, stale, or the old unnamed portal dropped
        elif e.kind == "3" and e.target is not None:
            which, name = e.target
            pending = s.pending_prepared if which == b"S" else s.pending_portals
            if pending.get(name) == (e.batch, None):
                del pending[name]
            if ok:
                (s.prepared if which == b"S" else s.portals).pop(name, None)

    def _ready(self, status: bytes) -> None:  # status checked by check_backend
        self.status = status
        if status == b"I":  # the transaction ended, and every portal with it
            self.session.portals.clear()

    def handle(self, kind: bytes, body: bytes) -> bytes:
        """The bytes the client gets for one upstream message."""
        check_backend(kind, body)
        if self.ended:
            raise ProtocolError(f"upstream sent {kind!r} after ending the session (FATAL)")
        raw = kind + _INT32.pack(len(body) + 4) + body
        if kind == b"S":
            _check_parameter(body)
        if kind in _ASYNC:
            return raw
        if not self.queue:
            if kind == b"E" and self._fatal(body):  # e.g. the server shuts down
                return raw
            raise ProtocolError(f"upstream sent {kind!r} when nothing was asked")
        head = self.queue[0]
        if kind == b"E":
            return self._error(head, body, raw)
        if head.kind == "Q":
            return self._query(head, kind, body, raw)
        if head.kind == "E":
            return self._execute(head, kind, body, raw)
        return self._simple_reply(head, kind, body, raw)

    def _fatal(self, body: bytes) -> bool:
        """Whether an ErrorResponse ends the session (FATAL, PANIC): nothing may follow it."""
        fields = response_fields(body)
        if fields.get("V", fields.get("S")) in _FATAL:
            self.ended = True
        return self.ended

    # -- simple query --------------------------------------------------------------------------

    def _query(self, head: Expect, kind: bytes, body: bytes, raw: bytes) -> bytes:
        if kind == b"Z":  # the statements all answered, or one failed and ended the query
            done = head.index == len(head.runs) and (bool(head.runs) or head.answered)
            if not (done or head.failed) or head.phase:
                raise ProtocolError("upstream ended a query it did not answer")
            self.queue.popleft()
            self._ready(body)
            for rest in head.runs[head.index :]:
                self.session.outcome(rest, "cancelled", rows=None, state=None)
            return raw
        if head.failed or head.error is not None:
            # After an error PostgreSQL sends only ReadyForQuery; a refusal's sentinel fails.
            raise ProtocolError(f"upstream sent {kind!r} where only ReadyForQuery fits")
        if kind == b"I":  # EmptyQueryResponse: for a query string without statements only
            if head.runs or head.answered:
                raise ProtocolError("upstream sent EmptyQueryResponse for a query with statements")
            head.answered = True
            return raw
        if head.index == len(head.runs):
            raise ProtocolError(f"upstream sent {kind!r} past the query's last statement")
        run = head.runs[head.index]
        if kind == b"T" and not head.phase:
            head.phase = b"T"
            if run.obligations.mask:
                run.masked = _masked(body, run.obligations)
            return raw
        if kind == b"C" and head.phase in _COMPLETES:
            head.phase = b""
            head.index += 1
            return self._complete(run, None, body, raw)
        return self._result(head, run, kind, body, raw)

    def _result(self, head: Expect, run: Run, kind: bytes, body: bytes, raw: bytes) -> bytes:
        """Rows and COPY traffic of one statement, each only where it fits (Message Flow)."""
        phase = head.phase
        if kind == b"D" and phase == b"T":
            return self._row(run, head.portal, body, raw)
        if kind == b"G" and not phase:  # CopyInResponse
            self._copy_started(run)
            head.phase = b"G"
            return raw
        if kind == b"H" and not phase and run.copy_to:  # CopyOutResponse, then data
            head.phase = b"H"
            return raw
        if kind == b"d" and phase == b"H":
            return raw
        if kind == b"c" and phase == b"H":
            head.phase = b"c"
            return raw
        where = "Execute" if head.kind == "E" else "a simple query"
        raise ProtocolError(f"upstream sent {kind!r} out of turn in answer to {where}")

    # -- extended query ------------------------------------------------------------------------

    def _execute(self, head: Expect, kind: bytes, body: bytes, raw: bytes) -> bytes:
        if not head.runs:  # an empty statement: PostgreSQL answers EmptyQueryResponse
            if kind != b"I":
                raise ProtocolError(f"upstream sent {kind!r} in answer to an empty statement")
            self.queue.popleft()
            return raw
        run = head.runs[0]
        if kind == b"D" and head.phase in (b"", b"T"):  # no RowDescription before an Execute's
            head.phase = b"T"
            return self._row(run, head.portal, body, raw)
        if kind == b"C" and head.phase in _COMPLETES:
            self.queue.popleft()
            return self._complete(run, head.portal, body, raw)
        if kind == b"s" and head.phase == b"T":  # PortalSuspended: the rest comes later
            self.queue.popleft()
            self._finish(run, head.portal, run.sent)
            return raw
        return self._result(head, run, kind, body, raw)

    def _copy_started(self, run: Run) -> None:
        """CopyInResponse: PostgreSQL now reads COPY data, unless the client already ended it."""
        if not run.copy_from:
            raise ProtocolError("upstream started a COPY FROM STDIN that was not sent")
        run.copy_from = False
        if self._ends_ahead:
            self._ends_ahead -= 1
        else:
            self.copy_in = True

    def _simple_reply(self, head: Expect, kind: bytes, body: bytes, raw: bytes) -> bytes:
        if head.kind == "describe":
            return self._described(head, kind, body, raw)
        want = _REPLY[head.kind]
        if kind != want or head.error is not None:
            raise ProtocolError(f"upstream sent {kind!r}, expected {want!r}")
        self._settle(head, True)
        self.queue.popleft()
        if kind == b"Z":
            self._ready(body)
        return raw

    def _described(self, head: Expect, kind: bytes, body: bytes, raw: bytes) -> bytes:
        """Describe: a statement's ParameterDescription, then RowDescription or NoData."""
        s = self.session
        assert head.target is not None
        which, name = head.target
        if kind == b"t" and which == b"S" and not head.answered:
            head.answered = True
            return b"" if head.swallow else raw
        if kind not in (b"T", b"n") or (which == b"S" and not head.answered):
            raise ProtocolError(f"upstream sent {kind!r} out of turn in answer to Describe")
        self.queue.popleft()
        columns = column_names(body) if kind == b"T" else ()
        if head.portal is not None:  # the portal an Execute runs (masking asked)
            head.portal.columns = columns
        elif which == b"S" and name in s.prepared:
            s.prepared[name].columns = columns
        elif which == b"P" and name in s.portals:
            s.portals[name].columns = columns
        return b"" if head.swallow else raw

    # -- errors ----------------------------------------------------------------------------------

    def _error(self, head: Expect, body: bytes, raw: bytes) -> bytes:
        s = self.session
        fatal = self._fatal(body)
        self.copy_in = False  # an error ends COPY IN; later COPY data is dropped by the server
        if head.kind in ("Q", "Z"):
            # A query's error ends it (the rest of the string is not run); a Sync's (its
            # implicit COMMIT failed) comes before its ReadyForQuery. Only FATAL may follow.
            if head.failed and not fatal:
                raise ProtocolError("upstream sent a second error for one query or Sync")
            if head.failed or head.kind == "Z":
                head.failed = True
                return raw
            head.failed = True
            head.phase = b""
            if head.error is not None:
                return head.error  # the sentinel's error, replaced by the refusal
            if head.index < len(head.runs):
                s.outcome(head.runs[head.index], "error", rows=None, state=_sqlstate(body))
                head.index += 1
            return raw
        out = head.error if head.error is not None else raw
        if head.kind == "E":
            for run in head.runs:
                s.outcome(run, "error", rows=None, state=_sqlstate(body))
        self._settle(head, False)
        self.queue.popleft()
        while self.queue and self.queue[0].kind != "Z":  # skipped until Sync
            skipped = self.queue[0]
            self._settle(skipped, False, ran=False)
            self.queue.popleft()
            for run in skipped.runs:
                s.outcome(run, "cancelled", rows=None, state=None)
        if not self.queue:  # the Sync that ends the skipping is still to come from the client
            self.skipping = True
        return out

    # -- rows ----------------------------------------------------------------------------------

    def _row(self, run: Run | None, portal: Portal | None, body: bytes, raw: bytes) -> bytes:
        if run is None:
            return raw
        ob = run.obligations
        if ob.max_rows is not None:
            before = portal.rows if portal is not None else 0
            if before + run.sent >= ob.max_rows:
                if run.cut:
                    return b""
                run.cut = True
                return notice_response(
                    f"Proctor cut this result at {ob.max_rows} rows (max_rows obligation)"
                )
        run.sent += 1
        if ob.mask and run.masked is None:
            if portal is None or portal.columns is None:  # cannot tell which to mask: stop
                raise ProtocolError("rows to mask arrived before their description")
            run.masked = frozenset(i for i, n in enumerate(portal.columns) if n in ob.mask)
        if run.masked:
            body = mask_row(body, run.masked)
            return b"D" + _INT32.pack(len(body) + 4) + body
        return raw

    def _complete(self, run: Run | None, portal: Portal | None, body: bytes, raw: bytes) -> bytes:
        if run is None:
            return raw
        tag = body[:-1].decode(errors="replace")
        last = tag.rsplit(" ", 1)[-1]
        rows = int(last) if " " in tag and last.isdigit() else None
        if run.cut and tag.startswith(_CUT_TAGS):
            tag = f"{tag.rsplit(' ', 1)[0]} {run.sent}"
            body = tag.encode() + b"\x00"
            raw = b"C" + _INT32.pack(len(body) + 4) + body
            rows = run.sent
        self._finish(run, portal, rows)
        return raw

    def _finish(self, run: Run, portal: Portal | None, rows: int | None) -> None:
        if portal is not None:
            portal.rows += run.sent
        self.session.outcome(run, "ok", rows=rows, state=None)


def _masked(row_description: bytes, ob: Obligations) -> frozenset[int]:
    names = column_names(row_description)
    return frozenset(i for i, n in enumerate(names) if n in ob.mask)


_PINNED: Final = {
    "client_encoding": frozenset({"UTF8", "UNICODE"}),
    "standard_conforming_strings": frozenset({"on"}),
}


def _check_parameter(body: bytes) -> None:
    """ParameterStatus: a pinned setting that changed anyway (e.g. in a function) ends the
    session, because SQL would no longer be read the way Proctor reads it."""
    name, _, rest = body.partition(b"\x00")
    value = rest.split(b"\x00", 1)[0].decode(errors="replace")
    allowed = _PINNED.get(name.decode(errors="replace"))
    if allowed is not None and value.upper() not in {a.upper() for a in allowed}:
        raise ProtocolError(f"the server's {name.decode()} changed to {value!r}")


def _sqlstate(body: bytes) -> str | None:
    code = response_fields(body).get("C", "")
    return code if len(code) == 5 and code.isalnum() else None
