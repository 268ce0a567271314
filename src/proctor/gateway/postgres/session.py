"""One client session after login: every statement decided and recorded before it runs.

What the client sends goes through :meth:`Session.on_client`, a generator of commands
(``commands.py``): a statement is analysed (pglast), decided (risk + policy), its decision
event is recorded durably (``Record``) and only then forwarded (``SendUpstream``). What the
upstream answers goes through :meth:`Session.on_upstream`, which follows the replies
(``replies.py``) to enforce obligations and to write each statement's outcome event.

Refusing a statement without breaking the conversation: the upstream may still owe replies
to messages sent before it, and PostgreSQL's own rules say an error aborts the transaction
and, in the extended protocol, skips everything up to Sync. So a refused statement is never
answered out of turn; instead a *sentinel* goes upstream in its place, a statement that fails
while being parsed and so runs nothing (``PROCTOR REFUSED``). Its ErrorResponse arrives exactly
where the refused statement's would have, with PostgreSQL's own transaction semantics, and is
replaced by Proctor's error (42501 with the policy's reason, 42601, 25006, 58000 …).

Extended protocol: statements are analysed at Parse and authorized at Execute. What a name
(prepared statement or portal) holds is believed in two cases only:

* it was defined in the *current* batch (since the last Sync): if that definition fails
  upstream, PostgreSQL skips everything up to Sync, the Execute that relies on it included;
* PostgreSQL confirmed it (ParseComplete, BindComplete) and no later definition is still
  unanswered.

A name redefined in an earlier batch whose answer has not arrived yet is waited for
(``WaitReplies``): otherwise a Parse that fails upstream (a duplicate name, say) would leave
Proctor believing the new text while PostgreSQL still runs the old one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from proctor.decision import Decided, Decider
from proctor.events.context import (
    ActionInfo,
    Activity,
    NetworkInfo,
    Principal,
    RequestContext,
    Resource,
)
from proctor.events.ids import format_time, new_event_id, now_ns
from proctor.events.schema import Action, Actor, Event, Links, Outcome, Risk, Source
from proctor.gateway.postgres import sqlstate
from proctor.gateway.postgres.commands import Command, Record, SendUpstream, WaitCopy, WaitReplies
from proctor.gateway.postgres.obligations import (
    NO_OBLIGATIONS,
    Obligations,
    parse_obligations,
)
from proctor.gateway.postgres.protocol import (
    Bind,
    Close,
    Describe,
    Execute,
    FrontendMessage,
    Parse,
    ProtocolError,
    Query,
    Raw,
    Sync,
    Terminate,
    error_response,
)
from proctor.gateway.postgres.replies import Expect, Portal, Prepared, Replies, Run
from proctor.gateway.postgres.sql import Analyzer, SqlError, Statement
from proctor.policy.engine import Decision

__all__ = ["SENTINEL_SQL", "Identity", "Session"]

log = logging.getLogger(__name__)

SENTINEL_SQL: Final = "PROCTOR REFUSED"
"""Sent upstream in place of a refused statement: a syntax error, so it runs nothing."""
_FORWARDED: Final = frozenset({b"d", b"c", b"f", b"H"})  # CopyData/Done/Fail, Flush
_COPY_END: Final = frozenset({b"c", b"f"})
PINNED_SETTINGS: Final = frozenset(
    {"client_encoding", "standard_conforming_strings", "search_path", "*"}
)
"""Settings a session may not change: how SQL text is read and what unqualified names mean
(``*``: a set_config whose name is not a constant)."""
_MAX_STATEMENT: Final = 65536  # Action.statement's bound in the event schema


@dataclass(frozen=True)
class Identity:
    """Who the session is, where it connects from and to (fixed at login)."""

    principal: Principal
    client_ip: str | None
    client_address: str
    upstream: str
    database: str
    gateway: str
    application: str | None = None
    expires: float | None = None
    """When the login's token expires (Unix seconds): the session is cut then."""


@dataclass
class _Stats:
    """What the session did, for ``proctor sessions list`` and the activity signals."""

    statements: int = 0
    rows: int = 0
    denied: int = 0
    last_risk: int = 0
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=600))


class Session:
    """The statement pipeline of one logged-in session."""

    def __init__(
        self,
        identity: Identity,
        decider: Decider,
        analyzer: Analyzer,
        *,
        session_id: str,
        started_ns: int,
    ) -> None:
        self.identity = identity
        self.decider = decider
        self.analyzer = analyzer
        self.id = session_id
        self.started_ns = started_ns
        self.stats = _Stats()
        self.replies = Replies(self)
        self.outbox: list[Event] = []
        """Events to record without holding the conversation up (outcomes)."""
        self.prepared: dict[str, Prepared] = {}
        """Prepared statements PostgreSQL confirmed."""
        self.portals: dict[str, Portal] = {}
        """Portals PostgreSQL confirmed (all gone when a transaction ends)."""
        self.pending_prepared: dict[str, tuple[int, Prepared | None]] = {}
        """Definitions (None: a Close) forwarded and not answered yet, with their batch."""
        self.pending_portals: dict[str, tuple[int, Portal | None]] = {}
        self.batch = 0
        """Batches forwarded so far (a Sync or a simple Query ends one)."""
        self.closing = False
        self.connect: Decided | None = None
        """The connect decision in force (re-made by :meth:`recheck`)."""
        self.key: tuple[int, bytes] = (0, b"")
        """The BackendKeyData Proctor gave the client (cancel requests quote it)."""
        self.upstream_key: tuple[int, bytes] | None = None
        """The upstream's own BackendKeyData, where cancel requests are sent."""

    # -- contexts and events -------------------------------------------------------------------

    def context(self, action: ActionInfo, *, session_start: bool = False) -> RequestContext:
        """The request context of one action in this session, at this moment."""
        idn = self.identity
        objects = action.sql.objects if action.sql is not None else ()
        name, label = self.decider.risk.most_sensitive(idn.database, objects)
        now = time.monotonic_ns()
        recent = self.stats.recent
        while recent and now - recent[0] > 60_000_000_000:
            recent.popleft()
        return RequestContext(
            principal=idn.principal,
            action=action,
            resource=Resource(
                type="table" if name else "database",
                name=name or idn.upstream,
                database=idn.database,
                objects=objects,
                sensitivity=label,
            ),
            time=format_time(now_ns()),
            network=NetworkInfo(ip=idn.client_ip),
            activity=Activity(session_rows=self.stats.rows, statements_per_minute=len(recent)),
            session_start=session_start,
            session_id=self.id,
        )

    def decide(self, ctx: RequestContext, statement: Statement | None = None) -> Decided:
        """Decide one request; any failure inside is a deny (fail closed)."""
        try:
            decided = self.decider.evaluate(ctx)
        except Exception as exc:
            log.exception("decision failed for session %s", self.id)
            decided = self._failed(ctx, f"the decision could not be made: {type(exc).__name__}")
        if statement is not None:
            action = msgspec.structs.replace(
                decided.event.action or Action(class_=ctx.action.class_),
                statement=statement.redacted[:_MAX_STATEMENT] or None,
                fingerprint=statement.fingerprint or None,
            )
            event = msgspec.structs.replace(decided.event, action=action)
            decided = Decided(decided.context, decided.risk, decided.decision, event)
        self.stats.last_risk = decided.risk.score
        return decided

    def _failed(self, ctx: RequestContext, reason: str) -> Decided:
        try:
            risk = self.decider.risk.assess(ctx)
        except Exception:  # the deny is recorded even when the risk cannot be scored
            log.exception("risk assessment failed for session %s", self.id)
            risk = Risk(score=100, level="critical", model="unavailable")
        decision = Decision(effect="deny", policies=(), reasons=(reason,))
        return Decided(ctx, risk, decision, self.decider.event(ctx, risk, decision))

    def event(self, kind: Any, **parts: Any) -> Event:
        """An event of this session (actor, source and session link filled in)."""
        stamp, clock = self.decider.clock.now()
        p = self.identity.principal
        links = parts.pop("links", None) or Links(session_id=self.id)
        return Event(
            id=new_event_id(),
            kind=kind,
            time=format_time(stamp),
            clock=clock,
            actor=Actor(
                id=p.id, kind=p.kind, roles=p.roles, groups=p.groups, ip=self.identity.client_ip
            ),
            source=Source(
                system="proctor",
                gateway=self.identity.gateway,
                address=self.identity.client_address,
            ),
            links=links,
            **parts,
        )

    def outcome(self, run: Run, status: Any, *, rows: int | None, state: str | None) -> None:
        """Queue the outcome event of a statement that ran (or never did)."""
        duration = (time.monotonic_ns() - run.started_ns) // 1000
        d = run.decided
        self.outbox.append(
            self.event(
                "outcome",
                action=Action(class_=d.context.action.class_, operation=d.context.action.operation),
                outcome=Outcome(status=status, rows=rows, duration_us=duration, sqlstate=state),
                links=Links(session_id=self.id, decision_id=d.event.id),
            )
        )
        if status == "ok":
            self.stats.rows += rows or 0
            try:
                self.decider.risk.learn(d.context, rows=rows)
            except Exception:  # a baseline that cannot learn does not stop the session
                log.exception("risk baselines could not learn")

    def recheck(self, principal: Principal | None = None) -> Decided:
        """Decide the connection again now, with an updated principal when given."""
        if principal is not None:
            self.identity = dataclasses.replace(self.identity, principal=principal)
        decided = self.decide(self.context(ActionInfo(class_="connect", operation="CONNECT")))
        self.connect = decided
        return decided

    # -- client → upstream ---------------------------------------------------------------------

    def on_client(self, msg: FrontendMessage) -> Generator[Command, Any, None]:
        """Handle one client message: decide, record, then forward or refuse."""
        if not isinstance(msg, Terminate) and not (isinstance(msg, Raw) and msg.type in _FORWARDED):
            ignored = yield from self._outside_copy(msg)
            if ignored:
                return
        if self.replies.skipping and not isinstance(msg, Sync | Terminate):
            # After an error PostgreSQL discards everything up to Sync: nothing is decided,
            # forwarded or answered (forwarding it would leave a reply expected forever).
            return
        if isinstance(msg, Query):
            yield from self._query(msg.sql)
        elif isinstance(msg, Parse):
            yield from self._parse(msg)
        elif isinstance(msg, Bind):
            prepared = yield from self._resolve(self.pending_prepared, self.prepared, msg.statement)
            if self.replies.skipping:  # an earlier message failed meanwhile: see _refuse_extended
                return
            portal = Portal(prepared, columns=prepared.columns) if prepared is not None else None
            self.pending_portals[msg.portal] = (self.batch, portal)
            self._expect(Expect("2", portal_name=msg.portal, portal=portal))
            yield SendUpstream(Raw(b"B", msg.raw).encode())
        elif isinstance(msg, Describe):
            self._expect(Expect("describe", target=(msg.kind, msg.name)))
            yield SendUpstream(_describe(msg.kind, msg.name))
        elif isinstance(msg, Execute):
            yield from self._execute(msg)
        elif isinstance(msg, Close):
            pending = self.pending_prepared if msg.kind == b"S" else self.pending_portals
            pending[msg.name] = (self.batch, None)
            self._expect(Expect("3", target=(msg.kind, msg.name)))
            yield SendUpstream(Raw(b"C", msg.kind + _cstr(msg.name)).encode())
        elif isinstance(msg, Sync):
            self.replies.skipping = False
            self._expect(Expect("Z"))
            self.batch += 1
            yield SendUpstream(b"S\x00\x00\x00\x04")
        elif isinstance(msg, Terminate):
            self.closing = True
        elif isinstance(msg, Raw) and msg.type in _FORWARDED:
            if msg.type in _COPY_END:
                self.replies.copy_ended()
            yield SendUpstream(msg.encode())
        elif isinstance(msg, Raw) and msg.type == b"F":
            # FunctionCall runs a function by OID, outside SQL: nothing to analyse, refused.
            yield from self._refuse_simple(
                sqlstate.FEATURE_NOT_SUPPORTED, "the FunctionCall message is not allowed"
            )
        else:
            raise ProtocolError(f"unexpected message {type(msg).__name__} after startup")

    def _outside_copy(self, msg: FrontendMessage) -> Generator[Command, Any, bool]:
        """A message other than COPY data or Flush: True when PostgreSQL ignores it.

        During COPY IN PostgreSQL takes only CopyData, CopyDone, CopyFail, Flush and Sync, and
        ignores the last two (protocol docs, "COPY Operations"). If a COPY FROM forwarded may
        still start, its answer is waited for first (it never needs the client). Then a Sync in
        COPY IN is dropped here, as the server would drop it (no ReadyForQuery answers it); any
        other message breaks the protocol: PostgreSQL fails the COPY and, the message read
        half-way, ends the connection (FATAL 08P01 "protocol synchronization was lost"), and
        so does the session.
        """
        if self.replies.copy_may_start():
            yield WaitCopy()
        if not self.replies.copy_in:
            return False
        if isinstance(msg, Sync):
            return True
        raise ProtocolError(f"unexpected {type(msg).__name__} message during COPY from stdin")

    def _query(self, sql: str) -> Generator[Command, Any, None]:
        try:
            analysis = self.analyzer.analyze(sql)
            infos = [s.action_info for s in analysis.statements]
        except SqlError as exc:
            yield from self._unparsable(str(exc), simple=True)
            return
        decided = [
            self.decide(self.context(info), s)
            for s, info in zip(analysis.statements, infos, strict=True)
        ]
        refusal = yield from self._record_and_check(decided, analysis.statements)
        if refusal is not None:
            yield from self._refuse_simple(*refusal)
            return
        if self.replies.skipping:  # an earlier message failed while this one was recorded
            for d in decided:
                self.outcome(Run(d, NO_OBLIGATIONS), "cancelled", rows=None, state=None)
            return
        if any(s.redefines for s in analysis.statements):
            self._forget_names()
        runs = [
            Run(
                d,
                _obligations(d),
                copy_from=s.operation == "COPY FROM",
                copy_to=s.operation == "COPY TO",
            )
            for d, s in zip(decided, analysis.statements, strict=True)
        ]
        self._expect(Expect("Q", runs=runs))
        self.batch += 1
        yield SendUpstream(Raw(b"Q", _cstr(sql)).encode())

    def _parse(self, msg: Parse) -> Generator[Command, Any, None]:
        try:
            statements = self.analyzer.analyze(msg.sql).statements
            if len(statements) > 1:
                raise SqlError("cannot insert multiple commands into a prepared statement")
        except SqlError as exc:
            yield from self._unparsable(str(exc), simple=False)
            return
        prepared = Prepared(msg.sql, statements)
        self.pending_prepared[msg.name] = (self.batch, prepared)
        self._expect(Expect("1", prepared=(msg.name, prepared)))
        yield SendUpstream(_parse_message(msg))

    def _resolve(
        self, pending: dict[str, tuple[int, Any]], confirmed: dict[str, Any], name: str
    ) -> Generator[Command, Any, Any]:
        """What ``name`` holds, by the rules in the module docstring (None: nothing known)."""
        waited = False
        while True:
            entry = pending.get(name)
            if entry is None:
                return confirmed.get(name)
            batch, value = entry
            if batch == self.batch:
                return value
            if waited:  # its batch was answered and it is still open: know nothing
                return None
            yield WaitReplies(self.batch)
            waited = True

    def _forget_names(self) -> None:
        """SQL PREPARE, DEALLOCATE, DECLARE, CLOSE or DISCARD shares the extended protocol's
        names: after one, no name is believed until it is defined again."""
        self.prepared.clear()
        self.portals.clear()
        for pending in (self.pending_prepared, self.pending_portals):
            for name in pending:
                pending[name] = (pending[name][0], None)

    def _expect(self, item: Expect) -> None:
        item.batch = self.batch
        self.replies.expect(item)

    def _execute(self, msg: Execute) -> Generator[Command, Any, None]:
        portal = yield from self._resolve(self.pending_portals, self.portals, msg.portal)
        if self.replies.skipping:  # an earlier message failed while this one waited
            return
        if portal is None:
            # A portal Proctor did not see bound (e.g. over a statement PREPAREd in SQL):
            # what it runs is unknown, so it does not run.
            yield from self._refuse_extended(
                sqlstate.INSUFFICIENT_PRIVILEGE,
                f"portal {msg.portal!r} is not known to the gateway: prepare it with Parse",
            )
            return
        stmts = portal.prepared.statements
        if not stmts:  # an empty query string: nothing runs, PostgreSQL answers EmptyQuery
            self._expect(Expect("E", portal=portal))
            yield SendUpstream(_execute_message(msg))
            return
        decided = [self.decide(self.context(stmts[0].action_info), stmts[0])]
        refusal = yield from self._record_and_check(decided, stmts)
        if refusal is not None:
            yield from self._refuse_extended(*refusal)
            return
        if self.replies.skipping:  # an earlier message failed while this one was recorded
            self.outcome(Run(decided[0], NO_OBLIGATIONS), "cancelled", rows=None, state=None)
            return
        if stmts[0].redefines:
            self._forget_names()
        operation = stmts[0].operation
        run = Run(
            decided[0],
            _obligations(decided[0]),
            copy_from=operation == "COPY FROM",
            copy_to=operation == "COPY TO",
        )
        if run.obligations.mask and portal.columns is None:
            # Masking needs the column names: ask for them, and keep the answer to ourselves.
            # The answer describes this portal whatever its name means by then (a SQL
            # PREPARE/DECLARE… handled meanwhile forgets every name), so it goes to the portal.
            self._expect(Expect("describe", target=(b"P", msg.portal), swallow=True, portal=portal))
            yield SendUpstream(_describe(b"P", msg.portal))
        self._expect(Expect("E", runs=[run], portal=portal))
        yield SendUpstream(_execute_message(msg))

    def _record_and_check(
        self, decided: Sequence[Decided], statements: Sequence[Statement]
    ) -> Generator[Command, Any, tuple[str, str, str] | None]:
        """Record the decisions (no log, no access), then the first refusal, if any."""
        if not decided:  # an empty query string ('', ';', a comment): nothing runs, nothing to log
            return None
        self.stats.statements += len(decided)
        self.stats.recent.extend([time.monotonic_ns()] * len(decided))
        try:
            yield Record(tuple(d.event for d in decided))
        except Exception as exc:
            log.error("ledger refused session %s's decisions: %s", self.id, exc)
            return (
                sqlstate.AUDIT_UNAVAILABLE,
                "the audit ledger is unavailable, so nothing runs (no log, no access)",
                "",
            )
        for d, s in zip(decided, statements, strict=True):
            refusal = _refusal(d, s)
            if refusal is not None:
                self.stats.denied += 1
                return refusal
        return None

    def _unparsable(self, reason: str, *, simple: bool) -> Generator[Command, Any, None]:
        ctx = self.context(ActionInfo(class_="admin", operation="UNPARSED"))
        decided = self._failed(ctx, f"refused: {reason}")
        try:
            yield Record((decided.event,))
        except Exception as exc:
            log.error("ledger refused session %s's decision: %s", self.id, exc)
        message = f"Proctor refused a statement it cannot parse: {reason}"
        if simple:
            yield from self._refuse_simple(sqlstate.SYNTAX_ERROR, message)
        else:
            yield from self._refuse_extended(sqlstate.SYNTAX_ERROR, message)

    def _refuse_simple(
        self, state: str, message: str, detail: str = ""
    ) -> Generator[Command, Any, None]:
        if self.replies.skipping:  # see _refuse_extended: the server would drop a Query too
            return
        self._expect(Expect("Q", error=error_response(state, message, detail)))
        self.batch += 1
        yield SendUpstream(Raw(b"Q", _cstr(SENTINEL_SQL)).encode())

    def _refuse_extended(
        self, state: str, message: str, detail: str = ""
    ) -> Generator[Command, Any, None]:
        if self.replies.skipping:
            # An earlier message of this batch failed while this one was being decided: the
            # server now discards everything up to Sync, so this one is dropped as the server
            # would drop it (sending it would leave a reply expected that never comes).
            return
        self._expect(Expect("1", error=error_response(state, message, detail)))
        sentinel = Parse(f"proctor_refused_{new_event_id()}", SENTINEL_SQL, ())
        yield SendUpstream(_parse_message(sentinel))

    # -- upstream → client -----------------------------------------------------------------------

    def on_upstream(self, kind: bytes, body: bytes) -> bytes:
        """What the client gets for one upstream message (obligations applied)."""
        return self.replies.handle(kind, body)


def _obligations(decided: Decided) -> Obligations:
    d = decided.decision
    return _parsed_obligations(d.obligations) if d.obligations else NO_OBLIGATIONS


@functools.lru_cache(maxsize=256)
def _parsed_obligations(items: tuple[str, ...]) -> Obligations:
    """Policies carry few distinct obligation lists: parse each once, not per statement."""
    return parse_obligations(items)


def _refusal(decided: Decided, statement: Statement) -> tuple[str, str, str] | None:
    """Why a decided statement must not run: (SQLSTATE, message, detail), or None."""
    d = decided.decision
    reason = "; ".join(d.reasons) or "no policy permits it"
    policies = ", ".join(d.policies)
    detail = f"decision {decided.event.id}" + (f" by {policies}" if policies else "")
    if d.effect == "step_up":
        return sqlstate.STEP_UP, f"Proctor needs a step-up for this statement: {reason}", detail
    if d.effect != "allow":
        return sqlstate.INSUFFICIENT_PRIVILEGE, f"Proctor denied this statement: {reason}", detail
    pinned = sorted(PINNED_SETTINGS.intersection(statement.settings))
    if pinned:
        return (
            sqlstate.INSUFFICIENT_PRIVILEGE,
            f"Proctor pins {', '.join(pinned)}: it reads SQL as the server does only if "
            "neither changes how text is read or what names mean",
            detail,
        )
    refused = _obligation_refusal(_obligations(decided), statement)
    return None if refused is None else (*refused, detail)


def _obligation_refusal(ob: Obligations, statement: Statement) -> tuple[str, str] | None:
    """Why an allowed statement still must not run under its grant's obligations."""
    if ob.forbids(statement.action):
        return sqlstate.READ_ONLY, "Proctor allows this session to read only"
    computed = sorted(ob.mask & statement.computed_columns)
    if ob.mask and (computed or "*" in statement.computed_columns):
        return sqlstate.INSUFFICIENT_PRIVILEGE, _mask_refusal(ob.mask, computed)
    if ob.touches_rows and statement.operation == "COPY TO":
        return (
            sqlstate.FEATURE_NOT_SUPPORTED,
            "COPY TO cannot be cut or masked: use SELECT under this grant's max_rows/mask",
        )
    return None


def _mask_refusal(mask: frozenset[str], computed: list[str]) -> str:
    what = ", ".join(computed) or "a whole row or renamed columns"
    masked = ", ".join(sorted(mask))
    return (
        f"Proctor masks {masked} for this grant, so a statement may only return them as "
        f"plain columns; this one computes with {what} (in a condition, an expression, under "
        "an alias or in a subquery)"
    )


def _cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def _describe(kind: bytes, name: str) -> bytes:
    return Raw(b"D", kind + _cstr(name)).encode()


def _parse_message(msg: Parse) -> bytes:
    types = b"".join(t.to_bytes(4, "big", signed=True) for t in msg.param_types)
    body = _cstr(msg.name) + _cstr(msg.sql) + len(msg.param_types).to_bytes(2, "big") + types
    return Raw(b"P", body).encode()


def _execute_message(msg: Execute) -> bytes:
    return Raw(b"E", _cstr(msg.portal) + msg.max_rows.to_bytes(4, "big", signed=True)).encode()
