"""Hypothesis fuzzing of the session state machine (``session.py``, ``replies.py``), no sockets.

A small driver stands in for ``proxy.py``. It feeds client bytes through the real
``FrontendReader`` to ``Session.on_client``, carries out the commands the session yields
(``Record`` into a real ledger, ``SendUpstream`` into a fake upstream, ``WaitReplies`` by
delivering replies) and feeds the upstream's replies through the real ``BackendReader`` to
``Session.on_upstream``. The proxy runs the two directions as concurrent pumps; here Hypothesis
chooses, at every step, whether a pending upstream reply is handled before the client side
goes on, so replies arrive early, late and in the middle of a decision.

Decisions are real: the example policies, risk engine, ``Decider`` and ledger, opened with
``open_runtime`` on a configuration from ``conftest.write_config``; the risk baselines are kept
from learning, so every example is decided from the same state (Hypothesis replays examples).

The upstream, :class:`FakePostgres`, is a test double: it answers at the protocol level the way
PostgreSQL does (ParseComplete, BindComplete, ParameterDescription, RowDescription, DataRow,
CommandComplete, PortalSuspended, EmptyQueryResponse, ErrorResponse then skip until Sync,
ReadyForQuery with the transaction status, COPY in and out, prepared statements and portals
named by the protocol and by SQL ``PREPARE``/``DECLARE``, transaction blocks), and it notes
every statement it would execute. A double is acceptable here because the real server is
covered elsewhere: ``test_gateway_completeness.py`` runs clients through the gateway against the
machine's PostgreSQL and checks the server's own log.

Properties (each example is one session, of one of the example users):

1. Log before execute: every statement the upstream executes (from a Query other than the
   refusal sentinel, or from an Execute) consumes, in order, a decision event for exactly that
   statement (its normalized text, as the session records it) that a ``Record`` made durable
   in the same ``on_client`` step, before the message that carries it was sent.
2. Nothing denied runs: that decision allows, and the statement breaks none of the
   obligations the session enforces itself (``read_only``, pinned settings, ``COPY TO`` under
   ``max_rows``/``mask``).
3. The session raises nothing but ``ProtocolError`` (the documented error for bad input:
   protocol.py, replies.py), never waits for a reply that cannot come, stays within a step
   bound, and every reply the client gets answers one of its requests (checked by
   :class:`ClientView`, a client's own view of the protocol); when the session ends cleanly the
   client got one ReadyForQuery per Query, FunctionCall and Sync that PostgreSQL's rules answer.
4. Replies that are malformed or out of order (dropped, duplicated, swapped, inserted,
   truncated, badly framed) end the session with ``ProtocolError`` before anything that does
   not fit the conversation reaches the client.

Each bug the fuzzer found has a regression test with a fixed reproducer at the end of this
module (docs/gateway.md lists them). A bug that cannot be fixed at once is pinned there by an
``xfail(strict=True)`` test; where it shows during fuzzing, the driver ends that example
quietly (``Driver.known_bug``, the place marked KNOWN BUG) so the search goes on for new ones.
When a fix makes its xfail test pass, remove the matching guard. None is pinned now.

``PROCTOR_FUZZ_EXAMPLES`` sets the examples per property (200, with a fixed seed, by default).
"""

from __future__ import annotations

import functools
import os
import struct
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import pglast
import pytest
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st
from pglast import ast
from pglast.enums import TransactionStmtKind
from pglast.stream import RawStream
from pglast.visitors import Visitor

from proctor.config import load_config
from proctor.errors import StorageError
from proctor.events.context import Principal
from proctor.events.ids import now_ns
from proctor.events.schema import Event
from proctor.gateway.postgres.commands import (
    Command,
    Record,
    SendClient,
    SendUpstream,
    WaitCopy,
    WaitReplies,
)
from proctor.gateway.postgres.protocol import (
    BackendReader,
    Bind,
    Close,
    Describe,
    Execute,
    FrontendMessage,
    FrontendReader,
    Parse,
    ProtocolError,
    Query,
    Raw,
    Sync,
    Terminate,
)
from proctor.gateway.postgres.session import SENTINEL_SQL, Identity, Session
from proctor.gateway.postgres.sql import Analyzer, redact
from proctor.runtime import Runtime, open_runtime
from tests.gateway.postgres.conftest import DB, write_config

T = TypeVar("T")

MAX_STEPS: Final = 4000
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")

# -- the world the sessions run in -----------------------------------------------------------------

USERS: Final = {
    "alice": (("analyst",), ()),  # reads, max_rows and mask obligations
    "carol": ((), ("contractors",)),  # reads on a read_only session
    "erin": (("engineer",), ()),  # reads and writes
    "bob": (("dba",), ()),  # everything but ddl/admin without MFA
}
TABLES: Final = {
    "t": ("id", "v"),
    "people": ("id", "email", "ssn"),
    "hr.salaries": ("id", "amount"),
}
TABLE_ROWS: Final = 3
PINNED: Final = frozenset({"client_encoding", "standard_conforming_strings", "search_path"})
PREPARED_NAMES: Final = ("", "s1", "s2")
PORTAL_NAMES: Final = ("", "p1", "c1")

STATEMENTS: Final = (
    "SELECT 1",
    "SELECT id, v FROM t",
    "SELECT email, ssn FROM people",
    "SELECT * FROM people WHERE id = 1",
    "SELECT amount FROM hr.salaries",
    "SELECT $$a;b$$ AS x",
    "SELECT 'x; DELETE FROM t' AS s",
    "SELECT * FROM missing",
    "SELECT 1/0 AS boom",
    "SELECT $1::int AS n",
    "SHOW search_path",
    "UPDATE t SET v = 'x' WHERE id = 1",
    "DELETE FROM t",
    "INSERT INTO t VALUES (4, 'd')",
    "EXPLAIN ANALYZE DELETE FROM t WHERE id = 2",
    "WITH d AS (DELETE FROM t WHERE id = 3 RETURNING id) SELECT id FROM d",
    "DROP TABLE t",
    "SET search_path TO evil",
    "SET client_encoding TO 'LATIN1'",
    "SET statement_timeout TO 1000",
    "SELECT set_config('search_path', 'evil', false)",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT a",
    "ROLLBACK TO a",
    "PREPARE s1 AS SELECT 1",
    "PREPARE s1 AS SELECT email FROM people",
    "PREPARE s2 AS DELETE FROM t WHERE id = 1",
    "EXECUTE s1",
    "DEALLOCATE s1",
    "DEALLOCATE ALL",
    "DECLARE p1 CURSOR FOR SELECT email FROM people",
    "DECLARE c1 CURSOR FOR SELECT id, v FROM t",
    "FETCH ALL FROM p1",
    "FETCH 1 FROM c1",
    "CLOSE p1",
    "CLOSE ALL",
    "DISCARD ALL",
    "COPY t FROM STDIN",
    "COPY t TO STDOUT",
    "COPY (SELECT email FROM people) TO STDOUT",
    "COPY t FROM PROGRAM 'id'",
)
ODD_TEXTS: Final = (
    "",
    "  ",
    ";",
    "-- only a comment",
    "SELEC 1",
    SENTINEL_SQL,
    "SELECT 'unterminated",
    "SELECT 1; SELEC 2",
    "SELECT 1; SELECT 2",
)
SEPARATORS: Final = ("; ", ";\n", " /* ; */ ; ", "; -- x;\n", ";;")


class World:
    """The runtime every example shares (one line in Hypothesis's reports)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def __repr__(self) -> str:
        return "World(examples/policies, real decider and ledger)"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The example policies, a real ledger and decider, in a directory of this module's."""
    rt = open_runtime(load_config(write_config(tmp_path_factory.mktemp("fuzz"))))
    # Baselines that learn would make each example's risk depend on the ones before it.
    rt.decider.risk.learn = _no_learning  # type: ignore[method-assign]
    try:
        yield World(rt)
    finally:
        rt.close()


def _no_learning(*_args: Any, **_kw: Any) -> None:
    return None


ANALYZER: Final = Analyzer()


def new_session(rt: Runtime, user: str) -> Session:
    """A logged-in session of ``user``, as startup.handshake leaves it."""
    roles, groups = USERS[user]
    principal = Principal(id=user, kind="human", roles=roles, groups=groups, auth_method="scram")
    identity = Identity(
        principal=principal,
        client_ip="127.0.0.1",
        client_address="127.0.0.1:50000",
        upstream="pg",
        database=DB,
        gateway="proctor-test",
    )
    session = Session(
        identity, rt.decider, ANALYZER, session_id=str(uuid.uuid4()), started_ns=now_ns()
    )
    session.recheck()
    return session


# -- wire helpers ----------------------------------------------------------------------------------


def frame(kind: bytes, body: bytes = b"") -> bytes:
    """One typed message on the wire."""
    return kind + _I32.pack(len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def row_description(columns: tuple[str, ...]) -> bytes:
    cols = b"".join(cstr(c) + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0) for c in columns)
    return _I16.pack(len(columns)) + cols


def data_row(values: tuple[bytes, ...]) -> bytes:
    return _I16.pack(len(values)) + b"".join(_I32.pack(len(v)) + v for v in values)


def error_fields(code: str, message: str, severity: str = "ERROR") -> bytes:
    fields = (("S", severity), ("V", severity), ("C", code), ("M", message))
    return b"".join(k.encode() + cstr(v) for k, v in fields) + b"\x00"


def well_formed_fields(body: bytes) -> bool:
    """An ErrorResponse or NoticeResponse body: code-byte + string pairs, then a NUL."""
    at = 0
    while at < len(body) and body[at] != 0:
        end = body.find(b"\x00", at + 1)
        if end < 0:
            return False
        at = end + 1
    return at == len(body) - 1


def malformed(kind: bytes, body: bytes) -> bool:
    """A ReadyForQuery or ErrorResponse that breaks its format."""
    if kind == b"Z":
        return body not in (b"I", b"T", b"E")
    return kind == b"E" and not well_formed_fields(body)


# -- the fake upstream -----------------------------------------------------------------------------


class PgError(Exception):
    """An error PostgreSQL would answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Walk(Visitor):  # type: ignore[misc]
    """Tables named and the highest $n parameter in one statement tree."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: set[str] = set()
        self.params = 0

    def visit_RangeVar(self, _ancestors: Any, node: ast.RangeVar) -> None:
        self.tables.add(".".join(p for p in (node.schemaname, node.relname) if p))

    def visit_ParamRef(self, _ancestors: Any, node: ast.ParamRef) -> None:
        self.params = max(self.params, node.number)


@dataclass(frozen=True)
class PgStmt:
    """One statement as the server holds it (``node`` None: the empty query)."""

    text: str
    node: Any
    norm: str
    params: int = 0
    tables: frozenset[str] = frozenset()


EMPTY: Final = PgStmt("", None, "")


@functools.cache
def pg_parse(sql: str) -> tuple[PgStmt, ...]:
    """The statements of a query string, or PgError 42601."""
    try:
        out = []
        for text in pglast.split(sql):
            for raw in pglast.parse_sql(text):
                walk = _Walk()
                walk(raw.stmt)
                norm = redact(str(pglast.parser.normalize(text))) or ""  # as recorded
                out.append(PgStmt(text, raw.stmt, norm, walk.params, frozenset(walk.tables)))
        return tuple(out)
    except pglast.parser.ParseError as exc:
        raise PgError("42601", f"syntax error: {exc}") from None


def inner(node: Any) -> PgStmt:
    """The query a PREPARE or DECLARE holds, as the server would run it."""
    return pg_parse(RawStream()(node.query))[0]


def ends_transaction(node: Any) -> bool:
    """What PostgreSQL still runs in an aborted transaction (IsTransactionExitStmt)."""
    return isinstance(node, ast.TransactionStmt) and node.kind in (
        TransactionStmtKind.TRANS_STMT_COMMIT,
        TransactionStmtKind.TRANS_STMT_ROLLBACK,
        TransactionStmtKind.TRANS_STMT_ROLLBACK_TO,
        TransactionStmtKind.TRANS_STMT_PREPARE,
    )


def settings_changed(node: Any) -> set[str]:
    """Settings a statement changes (SET/RESET, set_config; ``*`` for a name not constant)."""
    if isinstance(node, ast.VariableSetStmt):
        return {(node.name or "all").lower()}
    out: set[str] = set()

    class Calls(Visitor):  # type: ignore[misc]
        def visit_FuncCall(self, _ancestors: Any, call: ast.FuncCall) -> None:
            if call.funcname[-1].sval == "set_config":
                first = getattr(getattr(call.args[0], "val", None), "sval", None)
                out.add(first.lower() if isinstance(first, str) else "*")

    Calls()(node)
    return out


def result_columns(node: Any, portals: dict[str, PgPortal]) -> tuple[str, ...] | None:
    """The row shape a statement returns (None: it returns no rows)."""
    if isinstance(node, ast.SelectStmt):
        tables = [
            ".".join(p for p in (r.schemaname, r.relname) if p)
            for r in node.fromClause or ()
            if isinstance(r, ast.RangeVar)
        ]
        cols: list[str] = []
        for target in node.targetList or ():
            val = target.val
            if target.name:
                cols.append(target.name)
            elif isinstance(val, ast.ColumnRef) and isinstance(val.fields[-1], ast.A_Star):
                cols.extend(c for t in tables for c in TABLES.get(t, ()))
            elif isinstance(val, ast.ColumnRef):
                cols.append(val.fields[-1].sval)
            elif isinstance(val, ast.FuncCall):
                cols.append(val.funcname[-1].sval)
            else:
                cols.append("?column?")
        return tuple(cols)
    if isinstance(node, ast.VariableShowStmt):
        return (node.name,)
    if isinstance(node, ast.ExplainStmt):
        return ("QUERY PLAN",)
    if isinstance(node, ast.FetchStmt):
        cursor = portals.get(node.portalname)
        return cursor.columns if cursor is not None else ("?column?",)
    return None  # the statements used here return rows only from SELECT, SHOW, EXPLAIN, FETCH


@dataclass
class PgPortal:
    """A portal: a statement bound, or a cursor DECLAREd."""

    stmt: PgStmt
    columns: tuple[str, ...] | None
    left: int | None = None
    """Rows still to fetch (None: not run yet)."""
    done: bool = False


@dataclass
class Result:
    """What running one statement produced."""

    tag: str
    columns: tuple[str, ...] | None = None
    rows: int = 0
    before: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Messages sent ahead of the rows (ParameterStatus, NoticeResponse)."""
    after: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Messages sent after the rows, before the tag (COPY OUT)."""
    copy_in: bool = False


@dataclass(frozen=True)
class Executed:
    """A statement the server executed, and the message that started it."""

    send: int
    stmt: PgStmt


class FakePostgres:
    """PostgreSQL at the protocol level, for one connection (see the module docstring)."""

    def __init__(self) -> None:
        self.reader = FrontendReader()
        self.reader.started = True
        self.out: list[tuple[bytes, bytes]] = []
        self.executed: list[Executed] = []
        self.prepared: dict[str, PgStmt] = {}
        self.portals: dict[str, PgPortal] = {}
        self.block = "I"
        """Explicit transaction block: none (I), open (T), failed (E)."""
        self.skipping = False
        self.copy: str | None = None
        """COPY FROM STDIN in progress, started by a simple Query or by an Execute."""
        self.copied = 0
        self.rest: list[PgStmt] = []
        """Statements of the current simple Query still to run (after a COPY)."""
        self.origin = 0
        """The message (send index) whose statements are running."""
        self.closed = False
        """The server ended the connection (FATAL)."""

    # -- input -------------------------------------------------------------------------------------

    def receive(self, data: bytes, send: int) -> None:
        """Take bytes the gateway sent; replies accumulate in ``out``."""
        try:
            messages = self.reader.feed(data)
        except ProtocolError as exc:
            raise AssertionError(f"the gateway sent a malformed message upstream: {exc}") from exc
        for msg in messages:
            self._message(msg, send)

    def take(self) -> list[tuple[bytes, bytes]]:
        out, self.out = self.out, []
        return out

    def _emit(self, kind: bytes, body: bytes = b"") -> None:
        self.out.append((kind, body))

    def _error(self, exc: PgError) -> None:
        self._emit(b"E", error_fields(exc.code, str(exc)))
        if self.block == "T":
            self.block = "E"

    def _message(self, msg: FrontendMessage, send: int) -> None:
        if self.closed:
            return
        if self.copy is not None:
            self._copy_message(msg)
            return
        if isinstance(msg, Sync):
            self.skipping = False
            self._end_transaction_if_implicit()
            self._emit(b"Z", self.block.encode())
            return
        if self.skipping or (isinstance(msg, Raw) and msg.type in (b"d", b"c", b"f", b"H")):
            return  # skipped until Sync; stray COPY data and Flush are ignored
        if isinstance(msg, Query):
            self.origin = send
            self._query(msg.sql)
            return
        try:
            if isinstance(msg, Parse):
                self._parse(msg.name, msg.sql)
            elif isinstance(msg, Bind):
                self._bind(msg)
            elif isinstance(msg, Describe):
                self._describe(msg.kind, msg.name)
            elif isinstance(msg, Execute):
                self.origin = send
                self._execute(msg.portal, msg.max_rows)
            elif isinstance(msg, Close):
                (self.prepared if msg.kind == b"S" else self.portals).pop(msg.name, None)
                self._emit(b"3")
            else:
                raise AssertionError(f"the gateway forwarded {msg!r}")
        except PgError as exc:
            self._error(exc)
            self.skipping = True

    def _end_transaction_if_implicit(self) -> None:
        if self.block == "I":
            self.portals.clear()

    # -- simple query ------------------------------------------------------------------------------

    def _query(self, sql: str) -> None:
        self.prepared.pop("", None)  # exec_simple_query drops the unnamed statement
        try:
            stmts = pg_parse(sql)
        except PgError as exc:
            self._error(exc)
            self._end_query()
            return
        if not stmts:
            self._emit(b"I")
            self._end_query()
            return
        self.rest = list(stmts)
        self._continue_query()

    def _continue_query(self) -> None:
        while self.rest:
            stmt = self.rest.pop(0)
            self.portals.pop("", None)  # each statement runs in the unnamed portal
            try:
                if stmt.params and not isinstance(stmt.node, ast.PrepareStmt):
                    raise PgError("42P02", "there is no parameter $1")
                result = self._run(stmt)
            except PgError as exc:
                self._error(exc)
                self.rest = []
                break
            if result.copy_in:
                self.copy, self.copied = "simple", 0
                self._emit(b"G", b"\x00" + _I16.pack(0))
                return
            self.out.extend(result.before)
            if result.columns is not None:
                self._emit(b"T", row_description(result.columns))
            for i in range(result.rows):
                self._emit(b"D", data_row(tuple(f"v{i}".encode() for _ in result.columns or ())))
            self.out.extend(result.after)
            self._emit(b"C", cstr(result.tag.format(n=result.rows)))
        self._end_query()

    def _end_query(self) -> None:
        self._end_transaction_if_implicit()
        self._emit(b"Z", self.block.encode())

    def _copy_message(self, msg: FrontendMessage) -> None:
        if isinstance(msg, Raw) and msg.type == b"d" and not msg.body.startswith(b"bad"):
            self.copied += 1
            return
        if isinstance(msg, Sync) or (isinstance(msg, Raw) and msg.type == b"H"):
            return  # ignored during COPY IN
        mode, self.copy = self.copy, None
        if isinstance(msg, Raw) and msg.type == b"c":
            self._emit(b"C", cstr(f"COPY {self.copied}"))
            if mode == "simple":
                self._continue_query()
            return
        if not (isinstance(msg, Raw) and msg.type in b"df"):
            # Any other message fails the COPY half-read: PostgreSQL gives up on the connection.
            self._error(PgError("08P01", "unexpected message type during COPY from stdin"))
            lost = "terminating connection because protocol synchronization was lost"
            self._emit(b"E", error_fields("08P01", lost, "FATAL"))
            self.closed = True
            return
        if msg.type == b"d":  # a row that does not parse: the COPY fails, later data is dropped
            self._error(PgError("22P02", "invalid input syntax for type integer"))
        else:
            self._error(PgError("57014", "COPY from stdin failed"))
        if mode == "simple":
            self.rest = []
            self._end_query()
        else:
            self.skipping = True

    # -- statements --------------------------------------------------------------------------------

    def _run(self, stmt: PgStmt) -> Result:
        """Run one statement (checks first; once past them it counts as executed)."""
        node = stmt.node
        if self.block == "E" and not ends_transaction(node):
            raise PgError("25P02", "current transaction is aborted")
        if "missing" in stmt.tables:
            raise PgError("42P01", 'relation "missing" does not exist')
        self.executed.append(Executed(self.origin, stmt))  # past parse analysis: it runs
        if isinstance(node, ast.DeclareCursorStmt) and self.block != "T":
            raise PgError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
        if isinstance(node, ast.DiscardStmt) and self.block != "I":
            raise PgError("25001", "DISCARD ALL cannot run inside a transaction block")
        if "1/0" in stmt.text:
            raise PgError("22012", "division by zero")
        columns = result_columns(node, self.portals)
        if isinstance(node, ast.FetchStmt):
            return self._fetch(node)
        if columns is not None:
            rows = 1 if getattr(node, "whereClause", None) or not node_tables(node) else TABLE_ROWS
            tag = {ast.VariableShowStmt: "SHOW", ast.ExplainStmt: "EXPLAIN"}.get(type(node))
            return Result(tag or "SELECT {n}", columns, rows)
        return self._command(node)

    def _fetch(self, node: Any) -> Result:
        cursor = self.portals.get(node.portalname)
        if cursor is None:
            raise PgError("34000", f'cursor "{node.portalname}" does not exist')
        if cursor.left is None:
            cursor.left = TABLE_ROWS
        n = min(node.howMany, cursor.left)
        cursor.left -= n
        return Result("FETCH {n}", cursor.columns or ("?column?",), n)

    def _command(self, node: Any) -> Result:  # noqa: PLR0911
        if isinstance(node, ast.TransactionStmt):
            return self._transaction(node)
        if isinstance(node, ast.VariableSetStmt):
            return self._set(node)
        if isinstance(node, ast.PrepareStmt):
            if node.name in self.prepared:
                raise PgError("42P05", f'prepared statement "{node.name}" already exists')
            self.prepared[node.name] = inner(node)
            return Result("PREPARE")
        if isinstance(node, ast.DeallocateStmt):
            if node.isall:
                for name in [n for n in self.prepared if n]:
                    del self.prepared[name]
                return Result("DEALLOCATE ALL")
            if self.prepared.pop(node.name, None) is None:
                raise PgError("26000", f'prepared statement "{node.name}" does not exist')
            return Result("DEALLOCATE")
        if isinstance(node, ast.DeclareCursorStmt):
            if node.portalname in self.portals:
                raise PgError("42P03", f'cursor "{node.portalname}" already exists')
            query = inner(node)
            self.portals[node.portalname] = PgPortal(query, result_columns(query.node, {}))
            return Result("DECLARE CURSOR")
        if isinstance(node, ast.ClosePortalStmt):
            if node.portalname is None:
                self.portals.clear()
                return Result("CLOSE CURSOR ALL")
            if self.portals.pop(node.portalname, None) is None:
                raise PgError("34000", f'cursor "{node.portalname}" does not exist')
            return Result("CLOSE CURSOR")
        if isinstance(node, ast.DiscardStmt):
            self.prepared.clear()
            self.portals.clear()
            return Result("DISCARD ALL")
        if isinstance(node, ast.ExecuteStmt):
            if node.name not in self.prepared:
                raise PgError("26000", f'prepared statement "{node.name}" does not exist')
            return Result("EXECUTE")
        if isinstance(node, ast.CopyStmt):
            if node.is_from and not node.is_program:
                return Result("COPY {n}", copy_in=True)
            out = [(b"H", b"\x00" + _I16.pack(0))]
            out += [(b"d", b"row\n")] * TABLE_ROWS + [(b"c", b"")]
            return Result(f"COPY {TABLE_ROWS}", after=out)
        if isinstance(node, ast.InsertStmt):
            return Result("INSERT 0 1")
        if isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
            verb = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE"
            return Result(f"{verb} {1 if node.whereClause else TABLE_ROWS}")
        return Result(type(node).__name__.removesuffix("Stmt").upper())

    def _transaction(self, node: Any) -> Result:
        kind = node.kind
        if kind in (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START):
            notice = [] if self.block == "I" else [(b"N", error_fields("25001", "already"))]
            self.block = "T" if self.block == "I" else self.block
            return Result("BEGIN", before=notice)
        if kind in (
            TransactionStmtKind.TRANS_STMT_SAVEPOINT,
            TransactionStmtKind.TRANS_STMT_RELEASE,
        ):
            if self.block == "I":
                raise PgError("25P01", "SAVEPOINT can only be used in transaction blocks")
            return Result(kind.name.removeprefix("TRANS_STMT_"))
        if kind == TransactionStmtKind.TRANS_STMT_ROLLBACK_TO:
            if self.block == "I":
                raise PgError("25P01", "ROLLBACK TO SAVEPOINT outside a transaction block")
            self.block = "T"  # cursors opened before the savepoint stay open
            return Result("ROLLBACK")
        tag = "ROLLBACK" if self.block == "E" else kind.name.removeprefix("TRANS_STMT_")
        self.block = "I"
        self.portals.clear()
        return Result(tag)

    def _set(self, node: Any) -> Result:
        name = (node.name or "").lower()
        status = []
        if name in ("client_encoding", "standard_conforming_strings"):
            value = (
                node.args[0].val.sval if node.args else {"client_encoding": "UTF8"}.get(name, "on")
            )
            status = [(b"S", cstr(name) + cstr(str(value)))]
        return Result("SET", before=status)

    # -- extended query ----------------------------------------------------------------------------

    def _parse(self, name: str, sql: str) -> None:
        if name == "":
            self.prepared.pop("", None)  # dropped before the new text is even parsed
        stmts = pg_parse(sql)
        if len(stmts) > 1:
            raise PgError("42601", "cannot insert multiple commands into a prepared statement")
        stmt = stmts[0] if stmts else EMPTY
        if self.block == "E" and not ends_transaction(stmt.node):
            raise PgError("25P02", "current transaction is aborted")
        if "missing" in stmt.tables:
            raise PgError("42P01", 'relation "missing" does not exist')
        if name and name in self.prepared:
            raise PgError("42P05", f'prepared statement "{name}" already exists')
        self.prepared[name] = stmt
        self._emit(b"1")

    def _bind(self, msg: Bind) -> None:
        params = bind_parameters(msg.raw)
        stmt = self.prepared.get(msg.statement)
        if stmt is None:
            raise PgError("26000", f'prepared statement "{msg.statement}" does not exist')
        if params != stmt.params:
            raise PgError("08P01", f"bind message supplies {params} parameters")
        if self.block == "E" and not (ends_transaction(stmt.node) and params == 0):
            raise PgError("25P02", "current transaction is aborted")
        if msg.portal and msg.portal in self.portals:
            raise PgError("42P03", f'cursor "{msg.portal}" already exists')
        self.portals[msg.portal] = PgPortal(stmt, result_columns(stmt.node, self.portals))
        self._emit(b"2")

    def _describe(self, kind: bytes, name: str) -> None:
        if kind == b"S":
            stmt = self.prepared.get(name)
            if stmt is None:
                raise PgError("26000", f'prepared statement "{name}" does not exist')
            self._emit(b"t", _I16.pack(stmt.params) + _I32.pack(23) * stmt.params)
            columns = result_columns(stmt.node, self.portals)
        else:
            portal = self.portals.get(name)
            if portal is None:
                raise PgError("34000", f'portal "{name}" does not exist')
            columns = portal.columns
        if self.block == "E" and columns is not None:
            raise PgError("25P02", "current transaction is aborted")
        if columns is None:
            self._emit(b"n")
        else:
            self._emit(b"T", row_description(columns))

    def _execute(self, name: str, max_rows: int) -> None:
        portal = self.portals.get(name)
        if portal is None:
            raise PgError("34000", f'portal "{name}" does not exist')
        stmt = portal.stmt
        if stmt.node is None:
            self._emit(b"I")
            return
        if self.block == "E" and not ends_transaction(stmt.node):
            raise PgError("25P02", "current transaction is aborted")
        if portal.done:
            raise PgError("55000", f'portal "{name}" cannot be run')
        if portal.left is None:
            result = self._run(stmt)
            if result.copy_in:
                portal.done = True
                self.copy, self.copied = "extended", 0
                self._emit(b"G", b"\x00" + _I16.pack(0))
                return
            self.out.extend(result.before)
            if result.columns is None:
                portal.done = True
                self.out.extend(result.after)
                self._emit(b"C", cstr(result.tag.format(n=result.rows)))
                return
            portal.left = result.rows
            tag = result.tag
        else:
            self.executed.append(Executed(self.origin, stmt))  # fetching more runs it again
            tag = "SELECT {n}"
        n = portal.left if max_rows <= 0 else min(max_rows, portal.left)
        portal.left -= n
        width = len(portal.columns or ())
        for i in range(n):
            self._emit(b"D", data_row(tuple(f"v{i}".encode() for _ in range(width))))
        if 0 < max_rows == n:
            self._emit(b"s")
        else:
            self._emit(b"C", cstr(tag.format(n=n)))


def node_tables(node: Any) -> list[Any]:
    return list(getattr(node, "fromClause", None) or ())


def bind_parameters(body: bytes) -> int:
    """How many parameters a Bind body carries (PgError 08P01 when it is malformed)."""
    try:
        at = body.index(b"\x00") + 1
        at = body.index(b"\x00", at) + 1
        (formats,) = _I16.unpack_from(body, at)
        at += 2 + 2 * formats
        (params,) = _I16.unpack_from(body, at)
        at += 2
        for _ in range(params):
            (size,) = _I32.unpack_from(body, at)
            at += 4 + max(size, 0)
        (results,) = _I16.unpack_from(body, at)
        at += 2 + 2 * results
    except (ValueError, struct.error):
        raise PgError("08P01", "insufficient data left in message") from None
    if at != len(body) or formats < 0 or params < 0 or results < 0:
        raise PgError("08P01", "invalid message format")
    return params


# -- the client's view -----------------------------------------------------------------------------


@dataclass(eq=False)
class Item:
    """A request the client sent and still expects an answer to."""

    kind: str  # Q (query), F (function call), P, B, DS/DP (describe), E, C (close), S (sync)
    described: bool = False
    failed: bool = False
    """A Query or FunctionCall got its ErrorResponse: only ReadyForQuery may follow."""
    copy_scan: int | None = None
    """Where its next COPY IN starts reading what the client sent: after the last one ended
    (a query string may hold several COPY statements)."""


_ITEM: Final = {b"Q": "Q", b"F": "F", b"P": "P", b"B": "B", b"E": "E", b"C": "C", b"S": "S"}
_ANSWERS: Final = {b"1": "P", b"2": "B", b"3": "C", b"s": "E"}
_CYCLES: Final = frozenset({"Q", "F", "S"})


def message_kind(msg: FrontendMessage) -> bytes:
    """The type byte a decoded client message had."""
    if isinstance(msg, Raw):
        return msg.type
    kinds: dict[type, bytes] = {
        Query: b"Q",
        Parse: b"P",
        Bind: b"B",
        Describe: b"D",
        Execute: b"E",
        Close: b"C",
        Sync: b"S",
        Terminate: b"X",
    }
    return kinds[type(msg)]


class ClientView:
    """What a client that keeps to the protocol expects back, from what it sent.

    Written from the protocol's "Message Flow" chapter, independently of replies.py: the
    replies it accepts for each request, PostgreSQL skipping everything up to Sync after an
    error in the extended protocol, and COPY IN ignoring Sync and Flush (any other message but
    COPY data breaks the protocol: PostgreSQL then closes the connection).
    """

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        self.sent: list[tuple[bytes, Item | None]] = []
        self.skipping = False
        self.copy_in = False
        self.cycles = 0
        """Query, FunctionCall and Sync messages sent: each is answered by one ReadyForQuery..."""
        self.discarded = 0
        """...unless PostgreSQL's rules drop it (skipped after an error, ignored in COPY IN)."""
        self.ready = 0
        self.violated = False
        """The client broke the protocol (a message other than COPY data during COPY IN)."""
        self.ledger_errors = 0
        """Refusals the client got saying the ledger cannot record (SQLSTATE 58000)."""

    def send(self, msg: FrontendMessage) -> None:
        kind = message_kind(msg)
        name = "DS" if isinstance(msg, Describe) and msg.kind == b"S" else _ITEM.get(kind)
        name = "DP" if isinstance(msg, Describe) and msg.kind == b"P" else name
        self.cycles += name in _CYCLES
        item = None
        if self.copy_in:
            if kind in (b"S", b"H"):
                self.discarded += kind == b"S"
            elif kind in (b"c", b"f"):
                self.copy_in = False
                self.items[0].copy_scan = len(self.sent) + 1  # the COPY's request is oldest
            elif kind not in (b"d", b"X"):
                self.copy_in = False  # the server gives up on the connection
                self.violated = True
                self.discarded += name in _CYCLES
        elif self.skipping and kind != b"S":
            self.discarded += name in _CYCLES
        elif name is not None:
            self.skipping = False
            item = Item(name)
            self.items.append(item)
        self.sent.append((kind, item))

    def receive(self, kind: bytes, body: bytes) -> None:  # noqa: PLR0911
        if kind == b"E":
            assert well_formed_fields(body), f"malformed ErrorResponse reached the client: {body!r}"
            self.ledger_errors += b"C58000\x00" in body
        if kind in (b"N", b"S", b"A"):
            return
        if not self.items:
            assert kind == b"E", f"the client got {kind!r} when it had asked nothing"
            return
        head = self.items[0]
        if kind == b"E":
            self._error(head)
            return
        if kind == b"Z":
            assert body in (b"I", b"T", b"E"), f"ReadyForQuery {body!r} reached the client"
            assert head.kind in _CYCLES, f"ReadyForQuery reached the client for {head.kind}"
            self.items.popleft()
            self.ready += 1
            self.copy_in = False
            return
        if kind in _ANSWERS:
            assert head.kind == _ANSWERS[kind], f"{kind!r} reached the client for {head.kind}"
            self.items.popleft()
            return
        if kind == b"t":
            assert head.kind == "DS" and not head.described, f"{kind!r} for {head.kind}"
            head.described = True
            return
        if kind in (b"T", b"n") and head.kind in ("DS", "DP"):
            self.items.popleft()
            return
        assert head.kind in ("Q", "E"), f"{kind!r} reached the client for {head.kind}"
        assert not head.failed, f"{kind!r} reached the client after the query's error"
        if kind == b"T":
            assert head.kind == "Q", "RowDescription reached the client for an Execute"
        elif kind in (b"C", b"I"):
            if head.kind == "E":
                self.items.popleft()
        elif kind == b"G":
            self._copy_started(head)
        else:
            assert kind in (b"D", b"H", b"d", b"c"), f"{kind!r} reached the client"

    def _error(self, head: Item) -> None:
        self.copy_in = False
        if head.kind in _CYCLES:
            head.failed = head.kind != "S"
            return  # the query (or sync) goes on to its ReadyForQuery
        while self.items and self.items[0].kind != "S":
            self.discarded += self.items.popleft().kind in _CYCLES
        if not self.items:
            self.skipping = True

    def _copy_started(self, head: Item) -> None:
        at = head.copy_scan
        if at is None:
            at = next(i for i, (_, item) in enumerate(self.sent) if item is head) + 1
        for offset, (kind, item) in enumerate(self.sent[at:]):
            if kind in (b"d", b"X"):
                continue
            if kind in (b"S", b"H"):
                if item is not None:
                    self.items.remove(item)
                    self.discarded += 1
                continue
            if kind not in (b"c", b"f"):
                self.violated = True  # sent during COPY IN: the server gives up
                if item is not None:
                    self.items.remove(item)
                    self.discarded += item.kind in _CYCLES
            head.copy_scan = at + offset + 1  # ended by a CopyDone/CopyFail sent ahead
            return
        self.copy_in = True


# -- the driver ------------------------------------------------------------------------------------


class Stop(Exception):
    """The conversation ended (ProtocolError, Terminate, the end of the script); says why."""


BOOLEANS: Final = st.booleans()
MID_STEP: Final = st.integers(0, 7)
LEDGER_DOWN: Final = st.integers(0, 15)
FAULTS: Final = st.integers(0, 19)
WAIT: Final = b""
"""In a script: the client waits until every reply so far has reached it."""


@dataclass
class Driver:
    """proxy.py's two pumps, stepped one at a time in an order ``draw`` chooses.

    ``draw`` is Hypothesis's (``data.draw``) or a fixed Schedule. At each step a pending
    upstream reply is handled (``BOOLEANS`` between client steps, ``MID_STEP`` while one waits
    on a command) or the client side goes on: the next command of the current ``on_client``
    step (Record, SendUpstream, WaitReplies), or the next client message. ``LEDGER_DOWN``
    drawing 9 fails a Record; in fault mode ``FAULTS`` picks what happens to each reply.

    ``tolerate_known_bugs`` ends an example quietly where a bug already pinned by an xfail test
    below shows (each place is marked KNOWN BUG), so the fuzzer looks for new ones; the
    regression tests run with it off.
    """

    runtime: Runtime
    user: str
    draw: Any
    faults: bool = False
    tolerate_known_bugs: bool = True

    def __post_init__(self) -> None:
        self.session = new_session(self.runtime, self.user)
        self.pg = FakePostgres()
        self.client = ClientView()
        self.frontend = FrontendReader()
        self.frontend.started = True
        self.backend = BackendReader()
        self.client_side = BackendReader()
        self.frames: deque[bytes] = deque()
        self.inbox: deque[FrontendMessage] = deque()
        self.wire: deque[bytes] = deque()
        self.gen: Iterator[Command] | None = None
        self.cmd: Command | None = None
        self.call_auth: deque[Event] = deque()
        """Decisions made durable in the current on_client step, in order."""
        self.send_auth: list[deque[Event]] = []
        """For each message sent upstream, the decisions recorded before it (shared per step)."""
        self.recorded: set[str] = set()
        self.checked = 0
        self.executions = 0
        self.ledger_down = 0
        self.faulted = False
        self.epilogue = False
        self.why = ""
        self.trace: list[str] = []

    def known_bug(self, what: str) -> None:
        """End the example quietly: a bug pinned by its own xfail test showed."""
        if currently_in_test_context():
            event(f"known bug: {what}")
        self.why = what
        raise Stop("known bug")

    # -- running -----------------------------------------------------------------------------------

    def run(self, frames: list[bytes]) -> str:
        """Run the conversation; why it ended."""
        self.frames.extend(frames)
        try:
            try:
                for _ in range(MAX_STEPS):
                    self._step()
                raise AssertionError(f"no end after {MAX_STEPS} steps: the session loops")
            except Stop as stop:
                ended = str(stop)
            self.trace.append(f"ended: {ended} {self.why}")
            if ended == "done" and not (self.faulted or self.client.violated):
                self._check_end()
            return ended
        except AssertionError:
            if currently_in_test_context():
                note("\n".join(self.trace))
            raise

    def _step(self) -> None:
        if self.pg.closed and not self.wire:
            raise Stop("upstream closed")  # the proxy's upstream pump sees EOF: the session ends
        if self._blocked():
            if not self.wire:
                self._stalled()
            self._deliver()
        elif self.wire and (self._waiting() or self._interleave()):
            self._deliver()
        elif self.cmd is not None:
            self._perform(self.cmd)
        elif not self._start_next():
            if self.wire:
                self._deliver()
            elif self.pg.copy is not None and not self.pg.closed:
                self.frames.append(frame(b"c"))  # end each COPY left open, as a client would
            elif not self.epilogue:
                self.epilogue = True  # then leave with a Sync
                self.frames.append(SYNC)
            else:
                raise Stop("done")

    def _blocked(self) -> bool:
        """Whether the session waits for replies (as proxy._do does for the Wait commands)."""
        replies = self.session.replies
        if isinstance(self.cmd, WaitReplies):
            return replies.owed_before(self.cmd.batch)
        return isinstance(self.cmd, WaitCopy) and replies.copy_may_start()

    def _interleave(self) -> bool:
        """Whether a reply is handled now; less often in the middle of a client step."""
        if self.cmd is None:
            return bool(self.draw(BOOLEANS))
        if isinstance(self.cmd, SendUpstream | SendClient):
            return False  # proxy._do writes these before it first awaits: nothing comes between
        return self.draw(MID_STEP) == 1

    def _waiting(self) -> bool:
        return self.cmd is None and bool(self.frames) and self.frames[0] == WAIT

    def _stalled(self) -> None:
        if self.faulted:
            raise Stop("stalled")  # a reply was lost: the proxy would wait on the socket
        raise AssertionError("deadlock: the session waits for replies that cannot come")

    def _start_next(self) -> bool:
        while not self.inbox and self.frames:
            try:
                self.inbox.extend(self.frontend.feed(self.frames.popleft()))
            except ProtocolError:
                raise Stop("client protocol error") from None
        if not self.inbox:
            return False
        msg = self.inbox.popleft()
        self.trace.append(f"client sends {msg!r}")
        self.client.send(msg)
        self.call_auth = deque()
        self.gen = self.session.on_client(msg)
        self._advance(None, None)
        return True

    def _advance(self, value: Any, error: BaseException | None) -> None:
        assert self.gen is not None
        try:
            if error is not None:
                self.cmd = self.gen.throw(error)  # type: ignore[attr-defined]
            else:
                self.cmd = self.gen.send(value)  # type: ignore[attr-defined]
        except StopIteration:
            self.gen = self.cmd = None
            if self.session.closing:
                raise Stop("terminated") from None
        except ProtocolError:
            raise Stop("client protocol error") from None
        except Exception as exc:
            raise AssertionError(f"on_client raised {exc!r}, not ProtocolError") from exc

    def _perform(self, cmd: Command) -> None:
        self.trace.append(f"  session: {_describe_command(cmd)}")
        if isinstance(cmd, Record):
            self._record(cmd)
        elif isinstance(cmd, SendUpstream):
            if self.session.replies.skipping and cmd.data[:1] != b"S":
                raise AssertionError("forwarded while PostgreSQL skips to Sync")
            if cmd.data[:1] == b"S" and not self.faulted:
                # PostgreSQL ignores a Sync during COPY IN: one forwarded then is never answered.
                assert self.pg.copy is None, "a Sync was forwarded during COPY IN"
            self.send_auth.append(self.call_auth)
            self.pg.receive(cmd.data, len(self.send_auth) - 1)
            self.wire.extend(frame(kind, body) for kind, body in self.pg.take())
            self._check_executions()
            self._advance(None, None)
        elif isinstance(cmd, WaitReplies | WaitCopy):
            self._advance(None, None)  # what it waited for has come
        else:
            raise AssertionError(f"the session asked for {cmd!r} after login")

    def _record(self, cmd: Record) -> None:
        if self.draw(LEDGER_DOWN) == 9:  # not 0: Hypothesis favours it
            self.ledger_down += 1
            self._advance(None, StorageError("the ledger is down (injected)"))
            return
        try:
            index = self.runtime.ledger.append_many(cmd.events)
        except Exception as exc:  # as proxy._drive: the step's error goes to the session
            self._advance(None, exc)
            return
        self.recorded.update(e.id for e in cmd.events)
        self.call_auth.extend(cmd.events)
        self._advance(index, None)

    def _deliver(self) -> None:
        data = self.wire.popleft()
        if self.faults:
            data = self._fault(data)
        self.trace.append(f"  upstream replies {data[:60]!r}")
        try:
            out = b"".join(self.session.on_upstream(k, b) for k, b in self.backend.frames(data))
        except ProtocolError as exc:
            self.why = str(exc)
            # A faithful upstream and a client that keeps to the protocol never end a session.
            if not (self.faulted or self.client.violated):
                raise AssertionError(f"the session failed: {exc}") from None
            raise Stop("upstream protocol error") from None
        except Exception as exc:
            raise AssertionError(f"on_upstream raised {exc!r}, not ProtocolError") from exc
        for kind, body in self.client_side.frames(out):
            assert not malformed(kind, body), f"a malformed {kind!r} reached the client: {body!r}"
            self.client.receive(kind, body)
        assert self.client.ledger_errors <= self.ledger_down, "58000 with the ledger up"
        for ev in self.session.outbox:
            if ev.kind == "outcome":
                assert ev.links is not None
                assert ev.links.decision_id in self.recorded, "outcome of no recorded decision"
        self.session.outbox.clear()

    # -- faults ------------------------------------------------------------------------------------

    def _fault(self, data: bytes) -> bytes:  # noqa: PLR0911
        which = self.draw(FAULTS) - 10  # 0 (no fault) is where examples shrink to
        if not 0 <= which <= 6:
            return data
        kind, body = data[:1], data[5:]
        if kind == b"G" and which == 1:
            return data  # a forged CopyInResponse would fool ClientView's reading of COPY IN
        self.faulted = True
        if which == 0:  # lost
            return b""
        if which == 1:  # duplicated
            return data + data
        if which == 2 and self.wire:  # swapped with the next one
            return self.wire.popleft() + data
        if which == 3:  # something nobody asked for, before it
            return bytes(self.draw(st.sampled_from(STRAY_REPLIES))) + data
        if which == 4:  # body cut short
            cut = self.draw(st.integers(0, max(len(body) - 1, 0)))
            return frame(kind, body[:cut])
        if which == 5:  # body with junk after it
            return frame(kind, body + b"\xff\x00junk")
        return kind + _I32.pack(self.draw(st.sampled_from((0, 3, -1, 1 << 30)))) + body

    # -- properties --------------------------------------------------------------------------------

    def _check_executions(self) -> None:
        """Properties 1 and 2, for what the upstream ran since the last check."""
        for run in self.pg.executed[self.checked :]:
            self.checked += 1
            self.executions += 1
            if self.faulted:
                continue  # a lying upstream may fool any gateway; property 4 covers it
            self._check_execution(run)

    def _check_execution(self, run: Executed) -> None:
        auth = self.send_auth[run.send]
        what = f"upstream ran {run.stmt.text!r}"
        assert auth, f"{what} with no decision recorded before it was sent"
        decision = auth.popleft()
        assert decision.action is not None and decision.decision is not None
        assert decision.action.statement == run.stmt.norm, (
            f"{what} but the decision recorded before it is for {decision.action.statement!r}"
        )
        d = decision.decision
        assert d.effect == "allow", f"{what}, which was decided {d.effect}: {d.reasons}"
        if "read_only" in d.obligations:
            assert decision.action.class_ not in ("write", "ddl", "admin"), f"{what}: read_only"
        changed = settings_changed(run.stmt.node) & (PINNED | {"*"})
        assert not changed, f"{what}: it changes the pinned {changed}"
        copy_to = isinstance(run.stmt.node, ast.CopyStmt) and not run.stmt.node.is_from
        cuts = any(o.startswith(("max_rows", "mask")) for o in d.obligations)
        assert not (copy_to and cuts), f"{what} under {d.obligations}"

    def _check_end(self) -> None:
        """Property 3 at a clean end: every request answered, one ReadyForQuery per cycle."""
        c = self.client
        assert not self.wire and self.pg.copy is None
        assert not self.session.replies.queue, f"still expected: {self.session.replies.queue}"
        assert not c.items, f"the client still waits for {[i.kind for i in c.items]}"
        assert c.ready == c.cycles - c.discarded, (
            f"{c.ready} ReadyForQuery for {c.cycles} Query/FunctionCall/Sync, "
            f"{c.discarded} of them dropped by PostgreSQL's rules"
        )


def _describe_command(cmd: Command) -> str:
    if isinstance(cmd, Record):
        parts = [
            (e.action and e.action.statement, e.decision and e.decision.effect) for e in cmd.events
        ]
        return "Record " + ", ".join(f"{text!r}:{effect}" for text, effect in parts)
    if isinstance(cmd, SendUpstream):
        return f"SendUpstream {cmd.data[:60]!r}"
    return repr(cmd)


STRAY_REPLIES: Final = (
    frame(b"1"),
    frame(b"2"),
    frame(b"3"),
    frame(b"n"),
    frame(b"s"),
    frame(b"I"),
    frame(b"Z", b"I"),
    frame(b"Z", b"T"),
    frame(b"C", cstr("SELECT 1")),
    frame(b"D", data_row((b"x",))),
    frame(b"T", row_description(("email",))),
    frame(b"t", _I16.pack(0)),
    frame(b"H", b"\x00" + _I16.pack(0)),
    frame(b"E", error_fields("XX000", "stray")),
    frame(b"V", _I32.pack(-1)),
    frame(b"K", _I32.pack(1) + _I32.pack(2)),
    frame(b"N", error_fields("01000", "notice")),
)


# -- what clients send -----------------------------------------------------------------------------


def parse_frame(name: str, sql: str) -> bytes:
    return frame(b"P", cstr(name) + cstr(sql) + _I16.pack(0))


def bind_frame(portal: str, statement: str, params: int = 0, tail: bytes = b"") -> bytes:
    values = b"".join(_I32.pack(1) + b"7" for _ in range(params))
    body = cstr(portal) + cstr(statement) + _I16.pack(0) + _I16.pack(params) + values
    return frame(b"B", body + _I16.pack(0) + tail)


def execute_frame(portal: str, max_rows: int = 0) -> bytes:
    return frame(b"E", cstr(portal) + _I32.pack(max_rows))


def describe_frame(kind: bytes, name: str) -> bytes:
    return frame(b"D", kind + cstr(name))


def close_frame(kind: bytes, name: str) -> bytes:
    return frame(b"C", kind + cstr(name))


def query_frame(sql: str) -> bytes:
    return frame(b"Q", cstr(sql))


SYNC: Final = frame(b"S")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of the strategies, each ``weight`` times as likely."""
    table = [s for weight, s in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


COMMON: Final = (
    "SELECT 1",
    "SELECT id, v FROM t",
    "SELECT email, ssn FROM people",
    "UPDATE t SET v = 'x' WHERE id = 1",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "PREPARE s1 AS SELECT 1",
    "DEALLOCATE s1",
    "DECLARE p1 CURSOR FOR SELECT email FROM people",
    "DECLARE c1 CURSOR FOR SELECT id, v FROM t",
    "FETCH 1 FROM c1",
    "CLOSE p1",
    "COPY t FROM STDIN",
)
"""Statements most users may run, so that conversations go on long enough to matter."""
statements = weighted((2, st.sampled_from(COMMON)), (1, st.sampled_from(STATEMENTS)))


@st.composite
def query_texts(draw: Any) -> str:
    """A simple-query string: statements mixed with comments, quotes, and odd texts."""
    if draw(st.integers(0, 9)) == 0:
        return str(draw(st.sampled_from(ODD_TEXTS)))
    parts = [draw(statements)]
    while len(parts) < 3 and draw(st.integers(0, 2)) == 0:
        parts.append(draw(statements))
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + part
    return str(draw(st.sampled_from(("", "", "/* lead; */ ", "-- lead\n"))) + text)


prepared_names = st.sampled_from(PREPARED_NAMES)
portal_names = st.sampled_from(PORTAL_NAMES)
parse_texts = weighted((6, statements), (1, st.sampled_from(ODD_TEXTS)))


@st.composite
def pipelines(draw: Any) -> list[bytes]:
    """Parse, Bind, [Describe], Execute, [Sync] over one name: a driver's usual batch."""
    name, portal = draw(prepared_names), draw(portal_names)
    out = [parse_frame(name, draw(parse_texts))] if draw(st.integers(0, 3)) else []
    out.append(bind_frame(portal, name))
    if draw(st.booleans()):
        kind = draw(st.sampled_from((b"S", b"P")))
        out.append(describe_frame(kind, name if kind == b"S" else portal))
    out.append(execute_frame(portal, draw(st.integers(0, 2))))
    if draw(st.integers(0, 3)):
        out.append(SYNC)
    return out


def _one(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    return strategy.map(lambda f: [f])


garbage = st.one_of(
    st.builds(frame, st.sampled_from((b"p", b"Z", b"?", b"\x00", b"x")), st.binary(max_size=8)),
    st.sampled_from(
        (
            frame(b"E", b"\x00"),  # Execute cut short
            frame(b"P", b"s1\x00SELECT 1"),  # string not terminated
            frame(b"D", b"Xs1\x00"),  # Describe of neither S nor P
            frame(b"Q", b"SELECT \xff\x00"),  # not UTF-8
            b"Q\x00\x00\x00\x02",  # length below 4
        )
    ),
)
any_name = portal_names | prepared_names
client_messages = weighted(
    (8, _one(query_texts().map(query_frame))),
    (10, pipelines()),
    (2, _one(st.builds(parse_frame, prepared_names, parse_texts))),
    (2, _one(st.builds(bind_frame, portal_names, prepared_names, st.integers(0, 1)))),
    (1, _one(st.builds(bind_frame, portal_names, prepared_names, st.just(0), st.just(b"\x01")))),
    (1, _one(st.builds(describe_frame, st.sampled_from((b"S", b"P")), any_name))),
    (3, _one(st.builds(execute_frame, portal_names, st.integers(0, 2)))),
    (1, _one(st.builds(close_frame, st.sampled_from((b"S", b"P")), any_name))),
    (4, _one(st.just(SYNC))),
    (1, _one(st.just(frame(b"H")))),  # Flush
    (2, _one(st.sampled_from((frame(b"d", b"4\td\n"), frame(b"c"), frame(b"f", cstr("no")))))),
    (1, _one(st.just(frame(b"d", b"bad\tx\n")))),  # COPY data the server fails on
    (1, _one(st.just(frame(b"F", _I32.pack(1234) + _I16.pack(0) * 3)))),  # FunctionCall
)
rare_messages = st.one_of(_one(st.just(frame(b"X"))), _one(garbage))  # Terminate, garbage
scripts = st.tuples(
    st.lists(client_messages, min_size=3, max_size=16),
    st.integers(0, 7),
    st.integers(0, 14),
    rare_messages,
).map(lambda parts: _flatten(*parts))


def _flatten(groups: list[list[bytes]], rare: int, at: int, group: list[bytes]) -> list[bytes]:
    if rare == 5:  # one script in eight ends early
        groups.insert(min(at, len(groups)), group)
    return [f for group in groups for f in group]


users = st.sampled_from(tuple(USERS))

FUZZ_EXAMPLES: Final = int(os.environ.get("PROCTOR_FUZZ_EXAMPLES", "200"))
"""Examples per property: 200 with a fixed seed in CI; set more for a longer search, which
then draws at random (a failure prints the blob to reproduce it with @reproduce_failure)."""
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=FUZZ_EXAMPLES <= 200,
    print_blob=True,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the properties --------------------------------------------------------------------------------


@FUZZ
@given(user=users, script=scripts, data=st.data())
def test_statements_run_only_after_an_allowing_decision_is_recorded(
    world: World, user: str, script: list[bytes], data: st.DataObject
) -> None:
    """Properties 1, 2 and 3 over arbitrary conversations and reply timings."""
    driver = Driver(world.runtime, user, data.draw)
    event(f"ended: {driver.run(script)}")
    event(f"statements run: {min(driver.executions, 4)}")


@FUZZ
@given(user=users, script=scripts, data=st.data())
def test_upstream_replies_out_of_order_or_malformed_end_the_session(
    world: World, user: str, script: list[bytes], data: st.DataObject
) -> None:
    """Property 4 (and 3): a faulty upstream never makes the session pass on what does not fit."""
    driver = Driver(world.runtime, user, data.draw, faults=True)
    event(f"ended: {driver.run(script)}")


# -- fixed conversations: the harness itself, then the bugs the fuzzer found ---------------------


class Schedule:
    """A fixed ``draw`` for Driver: the ledger is up, no faults, the client runs ahead, replies
    are handled at WAIT (or when the session waits for them), and ``mid_step`` says whether a
    reply is handled in the middle of a client step."""

    def __init__(self, mid_step: Callable[[Driver], bool] | None = None) -> None:
        self.mid_step = mid_step
        self.driver: Driver | None = None

    def __call__(self, strategy: st.SearchStrategy[Any]) -> Any:
        if strategy is MID_STEP:
            assert self.driver is not None
            return int(self.mid_step is not None and self.mid_step(self.driver))
        return False if strategy is BOOLEANS else 0


def scripted(world: World, user: str, mid_step: Callable[[Driver], bool] | None = None) -> Driver:
    """A driver on a fixed schedule that stops at no known bug."""
    schedule = Schedule(mid_step)
    driver = Driver(world.runtime, user, schedule, tolerate_known_bugs=False)
    schedule.driver = driver
    return driver


def extended(sql: str, name: str = "", portal: str = "", max_rows: int = 0) -> list[bytes]:
    """What libpq sends for one statement with parameters: Parse, Bind, Describe, Execute."""
    return [
        parse_frame(name, sql),
        bind_frame(portal, name),
        describe_frame(b"P", portal),
        execute_frame(portal, max_rows),
    ]


def run_unnamed(sql: str) -> list[bytes]:
    """Parse, Bind and Execute of the unnamed statement and portal (no Describe, no Sync)."""
    return [parse_frame("", sql), bind_frame("", ""), execute_frame("")]


ORDINARY: Final = {
    "simple query": ("alice", [query_frame("SELECT 1; SELECT id, v FROM t")], 2),
    "psycopg statement": ("erin", [*extended("UPDATE t SET v = 'x' WHERE id = 1"), SYNC], 1),
    "transaction": (
        "carol",
        [query_frame("BEGIN"), *extended("SELECT id, v FROM t"), SYNC, query_frame("COMMIT")],
        3,
    ),
    "portal fetched in pieces": (
        "alice",
        [
            *extended("SELECT email, ssn FROM people", "s1", "p1", 2),
            SYNC,
            WAIT,
            query_frame("BEGIN"),
            *extended("SELECT id FROM t", "", "c1", 1),
            SYNC,
            WAIT,
            execute_frame("c1", 1),
            SYNC,
            WAIT,
            query_frame("ROLLBACK"),
        ],
        5,
    ),
    "COPY IN, with a Sync the server ignores": (
        "erin",
        [query_frame("COPY t FROM STDIN; SELECT 1"), SYNC, frame(b"d", b"5\tx\n"), frame(b"c")],
        2,
    ),
    "cursor in SQL": (
        "alice",
        [
            query_frame("BEGIN; DECLARE c1 CURSOR FOR SELECT id, v FROM t; FETCH 1 FROM c1"),
            query_frame("CLOSE c1; COMMIT"),
        ],
        3,
    ),
    "refusals": (
        "carol",
        [query_frame("SELECT 1; DELETE FROM t"), *extended("DROP TABLE t"), SYNC],
        0,
    ),
}


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_conversations_meet_every_property(world: World, name: str) -> None:
    """The harness agrees with itself: fake upstream, client view and session on usual flows."""
    user, script, runs = ORDINARY[name]
    driver = scripted(world, user)
    assert driver.run(script) == "done"
    assert driver.executions == runs


def test_the_harness_sees_a_statement_sent_before_its_decision_is_recorded(world: World) -> None:
    driver = scripted(world, "alice")

    def record_nothing(_decided: Any, _statements: Any) -> Iterator[Command]:
        return None
        yield  # a generator, like the method it replaces

    driver.session._record_and_check = record_nothing  # type: ignore[method-assign,assignment]
    with pytest.raises(AssertionError, match="with no decision recorded before it was sent"):
        driver.run([query_frame("SELECT 1")])


def test_the_harness_sees_a_denied_statement_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("proctor.gateway.postgres.session._refusal", lambda _d, _s: None)
    with pytest.raises(AssertionError, match="which was decided deny"):
        scripted(world, "alice").run([query_frame("DELETE FROM t WHERE id = 1")])


@pytest.mark.parametrize("sql", ["", ";", "-- only a comment"])
def test_an_empty_query_is_not_refused_as_ledger_unavailable(world: World, sql: str) -> None:
    driver = scripted(world, "alice")
    assert driver.run([query_frame(sql)]) == "done"


def _while_recording(driver: Driver) -> bool:
    return isinstance(driver.cmd, Record)


def test_a_message_decided_while_an_error_arrives_is_not_forwarded(world: World) -> None:
    driver = scripted(world, "erin", mid_step=_while_recording)
    assert driver.run([*extended("SELECT * FROM missing WHERE id = $1"), SYNC]) == "done"


@pytest.mark.parametrize("sql", ["SELECT 1", "DROP TABLE t", "SELEC 1"])  # allowed, refused
def test_a_query_decided_while_an_error_arrives_is_not_forwarded(world: World, sql: str) -> None:
    """PostgreSQL skips a Query too until Sync after an extended-protocol error."""
    driver = scripted(world, "erin", mid_step=_while_recording)
    assert driver.run([bind_frame("", "s2"), query_frame(sql), SYNC]) == "done"


BAD_ROW: Final = frame(b"d", b"bad\tx\n")


@pytest.mark.parametrize("wait", [True, False])
def test_copy_data_the_server_fails_on(world: World, wait: bool) -> None:
    """The error ends COPY IN: a Sync sent once it arrived is answered. One sent before it
    arrived is dropped, as the server drops one sent before it failed (the client cannot tell
    them apart, so the one ReadyForQuery fewer is the server's own race)."""
    script = [*run_unnamed("COPY t FROM STDIN"), SYNC, WAIT, BAD_ROW]
    script += [WAIT] * wait + [SYNC, frame(b"d", b"1\tx\n"), frame(b"c"), SYNC]
    assert scripted(world, "erin").run(script) == "done"


def test_a_query_string_with_several_copies(world: World) -> None:
    """After the first COPY of a string ends, a Sync waits for the second's CopyInResponse and
    is then ignored like any Sync during COPY IN."""
    copies = query_frame("COPY t FROM STDIN; COPY t FROM STDIN; SELECT 1")
    script = [copies, WAIT, frame(b"c"), SYNC, frame(b"d", b"1\tx\n"), frame(b"c"), SYNC]
    assert scripted(world, "erin").run(script) == "done"


def test_a_message_sent_before_a_later_copy_starts_does_not_wait_forever(world: World) -> None:
    """A Query waiting to know whether a COPY starts stops waiting when the first one does
    (the second one of the string cannot start before the client ends the first)."""
    script = [query_frame("SELECT 1; COPY t FROM STDIN; COPY t FROM STDIN"), query_frame("")]
    assert scripted(world, "erin").run(script) == "client protocol error"


def test_a_message_waiting_for_a_copy_that_fails_is_not_forwarded(world: World) -> None:
    """A message that waited for a COPY's answer is dropped if that answer was an error that
    started PostgreSQL's skip to Sync."""
    copy = [parse_frame("", "COPY missing FROM STDIN"), bind_frame("", ""), execute_frame("")]
    script = [*copy, parse_frame("s1", "SELECT 1"), SYNC]  # the Parse fails, the rest skipped
    assert scripted(world, "erin").run(script) == "done"


STALE: Final = {
    # libpq pipeline mode (psycopg conn.pipeline()); through the real gateway the ledger
    # records 'SELECT $1' (allow) and PostgreSQL runs the DELETE.
    "prepared statement, DEALLOCATE + PREPARE": (
        "bob",
        [
            parse_frame("s1", "SELECT 1"),
            *extended("DEALLOCATE s1"),
            *extended("PREPARE s1 AS DELETE FROM t WHERE id = 1"),
            parse_frame("s1", "SELECT 2"),  # fails upstream (s1 exists): clears the pending entry
            SYNC,
            WAIT,
            bind_frame("", "s1"),
            describe_frame(b"P", ""),
            execute_frame(""),
            SYNC,
        ],
    ),
    # An analyst (mask:email), raw protocol: through the real gateway she gets the cursor's
    # email column unmasked, and the ledger records 'SELECT $1' for it.
    "portal, COMMIT + DECLARE": (
        "alice",
        [
            parse_frame("s1", "SELECT 1"),
            describe_frame(b"S", "s1"),
            SYNC,
            WAIT,
            query_frame("BEGIN"),
            WAIT,
            bind_frame("p1", "s1"),
            *run_unnamed("COMMIT"),
            *run_unnamed("BEGIN"),
            *run_unnamed("DECLARE p1 CURSOR FOR SELECT email FROM people"),
            SYNC,
            WAIT,
            query_frame("SAVEPOINT a"),
            bind_frame("p1", "s2"),  # fails upstream (no s2): clears the pending entry
            SYNC,
            WAIT,
            query_frame("ROLLBACK TO a"),
            execute_frame("p1"),
            SYNC,
        ],
    ),
}


@pytest.mark.parametrize("name", STALE)
def test_a_definition_forgotten_by_sql_is_not_believed_later(world: World, name: str) -> None:
    user, script = STALE[name]
    scripted(world, user).run(script)


def _session_expecting(world: World, script: list[bytes], user: str = "alice") -> Session:
    """A session of ``user``'s that sent ``script`` and has had no reply yet."""
    driver = scripted(world, user)
    driver.frames.extend(script)
    while driver.cmd is not None or driver._start_next():
        if driver.cmd is not None:
            driver._perform(driver.cmd)
    return driver.session


ROW: Final = (b"T", row_description(("email",)))
MALFORMED: Final = {
    "ReadyForQuery without a status": ([SYNC], [(b"Z", b"")]),
    "ReadyForQuery with a bad status": ([SYNC], [(b"Z", b"X")]),
    "ErrorResponse without its terminator": ([query_frame("SELECT 1")], [(b"E", b"")]),
    "ErrorResponse with a field cut short": ([query_frame("SELECT 1")], [(b"E", b"C4250")]),
    "RowDescription cut short (mask)": (
        [query_frame("SELECT email FROM people")],
        [(b"T", b"\x00\x01em")],
    ),
    "DataRow cut short (mask)": (
        [query_frame("SELECT email FROM people")],
        [ROW, (b"D", b"\x00\x01")],
    ),
    "EmptyQueryResponse after a query's error": (
        [query_frame("SELECT 1")],
        [(b"E", error_fields("22012", "division by zero")), (b"I", b"")],
    ),
    "EmptyQueryResponse for a refused query's sentinel": (
        [query_frame("DELETE FROM t WHERE id = 1")],
        [(b"I", b"")],
    ),
    "ParameterDescription twice": (
        [parse_frame("s1", "SELECT 1"), describe_frame(b"S", "s1"), SYNC],
        [(b"1", b""), (b"t", b"\x00\x00"), (b"t", b"\x00\x00")],
    ),
    "ParameterDescription for a portal": (
        [*extended("SELECT 1"), SYNC],
        [(b"1", b""), (b"2", b""), (b"t", b"\x00\x00")],
    ),
    "RowDescription for a statement without its ParameterDescription": (
        [parse_frame("s1", "SELECT 1"), describe_frame(b"S", "s1"), SYNC],
        [(b"1", b""), ROW],
    ),
    "DataRow cut short (no column masked)": (
        [query_frame("SELECT 1")],
        [(b"T", row_description(("n",))), (b"D", b"\x00\x01")],
    ),
    "DataRow before its RowDescription": ([query_frame("SELECT 1")], [(b"D", data_row((b"1",)))]),
    "CommandComplete without its terminator": (
        [query_frame("BEGIN")],
        [(b"C", b"BEGIN")],
    ),
    "ParameterStatus without its value": ([query_frame("SELECT 1")], [(b"S", cstr("x"))]),
    "a second ErrorResponse for one query": (
        [query_frame("SELECT 1")],
        [(b"E", error_fields("22012", "division by zero"))] * 2,
    ),
    "ReadyForQuery before the second statement's result": (
        [query_frame("BEGIN; COMMIT")],
        [(b"C", cstr("BEGIN")), (b"Z", b"T")],
    ),
    "CopyInResponse for a SELECT": ([query_frame("SELECT 1")], [(b"G", b"\x00\x00\x00")]),
    "CopyOutResponse for a SELECT": ([query_frame("SELECT 1")], [(b"H", b"\x00\x00\x00")]),
    "PortalSuspended before any row": (
        [*run_unnamed("SELECT 1"), SYNC],
        [(b"1", b""), (b"2", b""), (b"T", row_description(("n",))), (b"s", b"")],  # T: masking
    ),
    "an ErrorResponse nobody asked for": ([], [(b"E", error_fields("XX000", "stray"))]),
    "a reply after a FATAL error": (
        [query_frame("SELECT 1")],
        [(b"E", error_fields("57P01", "terminating", "FATAL")), (b"Z", b"I")],
    ),
}


MALFORMED_USER: Final = {"DataRow before its RowDescription": "erin"}  # alice's would be masked


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_upstream_replies_end_the_session(world: World, name: str) -> None:
    """A reply that breaks its format, or comes where PostgreSQL sends none, is a ProtocolError
    (the session ends with 08P01), never passed on or raised as another exception."""
    script, replies = MALFORMED[name]
    session = _session_expecting(world, script, MALFORMED_USER.get(name, "alice"))
    with pytest.raises(ProtocolError):
        for kind, body in replies:
            session.on_upstream(kind, body)


def test_a_sync_sent_during_copy_in_is_not_awaited(world: World) -> None:
    """PostgreSQL ignores a Sync during COPY IN: one sent after CopyInResponse (as one sent
    with the Execute, before it) is not awaited."""
    script = [*run_unnamed("COPY t FROM STDIN"), WAIT, SYNC, frame(b"d", b"1\tx\n"), frame(b"c")]
    assert scripted(world, "erin").run([*script, SYNC, WAIT, query_frame("SELECT 1")]) == "done"


def test_a_masked_portal_keeps_its_description(world: World) -> None:
    """The Describe sent for masking answers for the portal being executed, even when a SQL
    PREPARE handled before its answer made the session forget every name."""
    script = [parse_frame("", "SELECT email FROM people"), bind_frame("", ""), WAIT]
    script += [execute_frame(""), query_frame("PREPARE s1 AS SELECT 1"), SYNC]
    assert scripted(world, "alice").run(script) == "done"


def test_a_client_that_breaks_copy_in_does_not_hang_its_session(world: World) -> None:
    """A message other than COPY data, Flush or Sync sent while a COPY FROM STDIN may start
    waits for the COPY's answer (which needs no client data), then ends the session as
    PostgreSQL ends the connection; nothing of it is forwarded."""
    script = [parse_frame("s1", "SELECT 1"), query_frame("COPY t FROM STDIN"), bind_frame("", "s1")]
    driver = scripted(world, "erin")
    assert driver.run(script) == "client protocol error"
    assert driver.pg.copy == "simple" and not driver.pg.closed  # the Bind never reached it
