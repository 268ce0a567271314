"""What a SQL string does, read with PostgreSQL's own parser (pglast), never with patterns.

:func:`analyze` splits a query string into its statements and, for each, finds the action
class (``read``, ``write``, ``ddl``, ``admin``, ``transaction``, ``utility``), a readable
operation (``SELECT``, ``DROP TABLE``), the tables it names, the functions it calls, whether an
UPDATE or DELETE anywhere in it (CTEs included) lacks a WHERE, whether a CTE hides a write,
whether it runs ``COPY … PROGRAM``, and its fingerprint (the same for statements that differ
only in constants). :class:`Analyzer` caches analyses by exact text, and by shape where no
constant can change them.

Fail closed: a string that does not parse raises :class:`SqlError` (the gateway refuses it),
and a statement kind this module does not know is classed ``admin``, the class policies
guard most.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import re
import threading
from dataclasses import dataclass
from typing import Any, Final

import pglast
from pglast import ast, enums
from pglast.visitors import Visitor

from proctor._lru import Lru
from proctor.errors import InputError
from proctor.events.context import ActionClass, ActionInfo, SqlFeatures

__all__ = ["Analysis", "Analyzer", "SqlError", "Statement", "analyze"]

# Class order, least to most guarded: a multi-statement string takes its most guarded class.
_RANK: Final[dict[ActionClass, int]] = {
    "transaction": 0,
    "utility": 1,
    "read": 2,
    "connect": 2,
    "write": 3,
    "ddl": 4,
    "admin": 5,
}

_CLASS: Final[dict[str, ActionClass]] = {
    # reads
    "SelectStmt": "read",
    "VariableShowStmt": "read",
    "DeclareCursorStmt": "read",  # refined from its query below
    "FetchStmt": "read",
    # writes
    "InsertStmt": "write",
    "UpdateStmt": "write",
    "DeleteStmt": "write",
    "MergeStmt": "write",
    "LockStmt": "write",
    "RefreshMatViewStmt": "write",
    "CallStmt": "write",
    # schema changes
    "CreateStmt": "ddl",
    "CreateTableAsStmt": "ddl",
    "AlterTableStmt": "ddl",
    "DropStmt": "ddl",
    "TruncateStmt": "ddl",
    "IndexStmt": "ddl",
    "ViewStmt": "ddl",
    "RenameStmt": "ddl",
    "CommentStmt": "ddl",
    "CreateSchemaStmt": "ddl",
    "CreateSeqStmt": "ddl",
    "AlterSeqStmt": "ddl",
    "CreateFunctionStmt": "ddl",
    "AlterFunctionStmt": "ddl",
    "CreateTrigStmt": "ddl",
    "CreateEnumStmt": "ddl",
    "CompositeTypeStmt": "ddl",
    "CreateDomainStmt": "ddl",
    "DefineStmt": "ddl",
    "AlterEnumStmt": "ddl",
    "RuleStmt": "ddl",
    "ClusterStmt": "ddl",
    "ReindexStmt": "ddl",
    # administration
    "GrantStmt": "admin",
    "GrantRoleStmt": "admin",
    "CreateRoleStmt": "admin",
    "AlterRoleStmt": "admin",
    "AlterRoleSetStmt": "admin",
    "DropRoleStmt": "admin",
    "AlterOwnerStmt": "admin",
    "AlterSystemStmt": "admin",
    "AlterDatabaseStmt": "admin",
    "AlterDatabaseSetStmt": "admin",
    "CreatedbStmt": "admin",
    "DropdbStmt": "admin",
    "CreateExtensionStmt": "admin",
    "AlterExtensionStmt": "admin",
    "CreateFdwStmt": "admin",
    "CreateForeignServerStmt": "admin",
    "CreateUserMappingStmt": "admin",
    "LoadStmt": "admin",
    "DoStmt": "admin",  # an anonymous code block can do anything
    "ExecuteStmt": "admin",  # runs a statement prepared elsewhere in SQL: unknown here
    "CheckPointStmt": "admin",
    "VacuumStmt": "admin",
    "CreatePolicyStmt": "admin",
    "AlterPolicyStmt": "admin",
    "SecLabelStmt": "admin",
    "ReassignOwnedStmt": "admin",
    "DropOwnedStmt": "admin",
    # transactions and session utilities
    "TransactionStmt": "transaction",
    "VariableSetStmt": "utility",
    "DiscardStmt": "utility",
    "ListenStmt": "utility",
    "UnlistenStmt": "utility",
    "NotifyStmt": "utility",
    "DeallocateStmt": "utility",
    "ClosePortalStmt": "utility",
    "ConstraintsSetStmt": "utility",
}

_OPERATION: Final[dict[str, str]] = {
    "SelectStmt": "SELECT",
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
    "CopyStmt": "COPY",
    "TruncateStmt": "TRUNCATE",
    "CreateStmt": "CREATE TABLE",
    "CreateTableAsStmt": "CREATE TABLE AS",
    "IndexStmt": "CREATE INDEX",
    "ViewStmt": "CREATE VIEW",
    "AlterTableStmt": "ALTER TABLE",
    "GrantRoleStmt": "GRANT ROLE",
    "CreateRoleStmt": "CREATE ROLE",
    "AlterRoleStmt": "ALTER ROLE",
    "DropRoleStmt": "DROP ROLE",
    "VariableSetStmt": "SET",
    "VariableShowStmt": "SHOW",
    "ExplainStmt": "EXPLAIN",
    "DoStmt": "DO",
    "CallStmt": "CALL",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreateFunctionStmt": "CREATE FUNCTION",
    "CreateExtensionStmt": "CREATE EXTENSION",
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
}
_DML: Final = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
PRIVILEGED_FUNCTIONS: Final = frozenset(
    {
        "set_config",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "dblink_exec",
        "pg_file_write",
        # They read files or run SQL (or read a table) named in a string, out of the
        # analysis's sight: what they touch is unknown, so they count as admin.
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_get",
        "lo_put",
        "dblink",
        "dblink_open",
        "dblink_fetch",
        "dblink_send_query",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
    }
)
"""Calls that change the server or the session's identity, touch files, or reach tables
named in text: the statement is ``admin``."""
_REDEFINES: Final = frozenset(
    {"PrepareStmt", "DeallocateStmt", "DiscardStmt", "ClosePortalStmt", "DeclareCursorStmt"}
)
"""SQL that creates or drops prepared statements or portals (cursors) by name."""
PRIVILEGED_SETTINGS: Final = frozenset(
    {"role", "session_authorization", "session_replication_role"}
)
"""SET (or RESET) of these changes who the session acts as: ``admin``."""
MAX_CACHED_TEXT: Final = 64 * 1024
"""Longer SQL texts are analysed every time rather than kept in the cache."""
MAX_NAMES: Final = 256
MAX_STATEMENTS: Final = 10_000
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


class SqlError(InputError):
    """SQL that PostgreSQL's parser rejects (the gateway refuses it: SQLSTATE 42601)."""


@dataclass(frozen=True)
class Statement:
    """One statement of a query string and what it does."""

    text: str
    action: ActionClass
    operation: str
    objects: tuple[str, ...]
    functions: tuple[str, ...]
    has_where: bool
    """False when an UPDATE or DELETE in it (its CTEs included) has no WHERE."""
    writes_in_cte: bool
    copy_program: bool
    fingerprint: str
    normalized: str
    """pglast's normalized text: DML constants replaced by ``$n`` (the shape cache's key)."""
    redacted: str = ""
    """What is recorded: ``normalized`` with every constant the lexer still finds (utility
    statements' arguments, DDL defaults, EXECUTE parameters) replaced and comments dropped."""
    settings: tuple[str, ...] = ()
    """Settings it changes (SET, RESET, set_config); ``*`` when a name is not a constant."""
    redefines: bool = False
    """It creates or drops prepared statements or cursors, names the extended protocol uses."""
    tag: str = ""
    """pglast's node name for the statement (``SelectStmt``…)."""
    computed_columns: frozenset[str] = frozenset()
    """Column names it uses other than as a plain, unrenamed output column of the top-level
    SELECT (in a condition, an expression, under an alias, in a subquery, a set operation's
    later arm…), lower-cased; ``*`` for a whole-row value (``t.*`` inside an expression, or a
    table's name used as a value). A ``mask`` obligation refuses a statement computing from a
    masked column: its values could leave under another name or shape."""
    """The text with its constants replaced by ``$n`` (what decision events record: a literal
    may be a password or personal data)."""

    @functools.cached_property
    def action_info(self) -> ActionInfo:
        """The ``action`` part of the request context for this statement alone (computed
        once: analyses are cached by text, so a repeated statement reuses it)."""
        return Analysis((self,)).action_info()


@dataclass(frozen=True)
class Analysis:
    """A whole query string: its statements, and what they add up to."""

    statements: tuple[Statement, ...]

    @property
    def action(self) -> ActionClass:
        """The most guarded class among the statements (``utility`` for an empty string)."""
        if not self.statements:
            return "utility"
        return max((s.action for s in self.statements), key=_RANK.__getitem__)

    @property
    def operation(self) -> str:
        """The operation of the statement that sets the class."""
        if not self.statements:
            return ""
        top = max(self.statements, key=lambda s: _RANK[s.action])
        return top.operation

    def action_info(self) -> ActionInfo:
        """The ``action`` part of the request context for this query string."""
        return ActionInfo(class_=self.action, operation=self.operation, sql=self.features())

    def features(self) -> SqlFeatures:
        """The SQL facts the risk and policy engines read, for the request context.

        More than ``MAX_NAMES`` objects or functions is refused (SqlError), never cut: a name
        left out could be the one a policy looks for.
        """
        ss = self.statements
        objects = _unique(o for s in ss for o in s.objects)
        functions = _unique(f for s in ss for f in s.functions)
        if len(objects) > MAX_NAMES or len(functions) > MAX_NAMES:
            raise SqlError(f"query names more than {MAX_NAMES} objects or functions")
        if len(ss) > MAX_STATEMENTS:
            raise SqlError(f"query holds more than {MAX_STATEMENTS} statements")
        return SqlFeatures(
            statement_count=len(ss),
            has_where=all(s.has_where for s in ss),
            objects=objects,
            functions=functions,
            writes_in_cte=any(s.writes_in_cte for s in ss),
            copy_program=any(s.copy_program for s in ss),
        )


def _low(name: str | None) -> str:
    return (name or "").lower()


def _unique(items: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class _Collector(Visitor):
    """Walks one statement's tree: names, calls, and the facts about writes."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: list[str] = []
        self.functions: list[str] = []
        self.unbounded = False
        self.cte_writes = False
        self.dml = False  # an INSERT, UPDATE, DELETE or MERGE anywhere in the tree
        self.privileged = False  # a function or setting that changes identity or the server
        self.settings: list[str] = []
        self.plain: set[int] = set()  # ids of ColumnRefs that are plain top-level outputs
        self.relations: set[str] = set()  # names and aliases a whole-row value could use
        self.column_refs: list[ast.ColumnRef] = []
        self.renamed = False
        self.joined: set[str] = set()

    def prepare(self, node: Any) -> None:
        """Note the plain output columns of a top-level SELECT before walking it."""
        if not isinstance(node, ast.SelectStmt) or node.op != enums.SetOperation.SETOP_NONE:
            return
        for target in node.targetList or ():
            ref = getattr(target, "val", None)
            if not isinstance(ref, ast.ColumnRef) or not ref.fields:
                continue
            last = ref.fields[-1]
            star = isinstance(last, ast.A_Star)
            if star or target.name is None or _low(target.name) == _low(last.sval):
                self.plain.add(id(ref))

    def computed_columns(self) -> frozenset[str]:
        """See :attr:`Statement.computed_columns`."""
        out: set[str] = {"*"} if self.renamed else set()
        out |= self.joined
        for ref in self.column_refs:
            fields = ref.fields or ()
            last = fields[-1] if fields else None
            name = _low(last.sval) if isinstance(last, ast.String) else "*"
            whole_row = len(fields) == 1 and name in self.relations
            if whole_row:
                out.add("*")
            elif id(ref) not in self.plain:
                out.add(name)
        return frozenset(out)

    def visit_ColumnRef(self, _ancestors: Any, node: ast.ColumnRef) -> None:
        self.column_refs.append(node)

    def visit_JoinExpr(self, _ancestors: Any, node: ast.JoinExpr) -> None:
        # JOIN … USING (a) and NATURAL JOIN compare columns named as plain strings, not
        # ColumnRefs: a join on a masked column is a condition on it (an oracle).
        self.joined.update(_low(getattr(n, "sval", None)) or "*" for n in node.usingClause or ())
        if node.isNatural:
            self.joined.add("*")

    def visit_Alias(self, _ancestors: Any, node: ast.Alias) -> None:
        self.relations.add(_low(node.aliasname))
        if node.colnames:  # FROM t AS x(a, b): columns renamed where the output cannot tell
            self.renamed = True

    def visit_CommonTableExpr(self, _ancestors: Any, node: ast.CommonTableExpr) -> None:
        self.relations.add(_low(node.ctename))
        if type(node.ctequery).__name__ in _DML:
            self.cte_writes = True

    def visit_RangeVar(self, _ancestors: Any, node: ast.RangeVar) -> None:
        self.relations.add(_low(node.relname))
        parts = [p for p in (node.catalogname, node.schemaname, node.relname) if p]
        self.objects.append(".".join(parts))

    def visit_FuncCall(self, _ancestors: Any, node: ast.FuncCall) -> None:
        names = [getattr(n, "sval", "") for n in node.funcname or ()]
        if names:
            name = names[-1].lower()
            self.functions.append(name)
            self.privileged |= name in PRIVILEGED_FUNCTIONS
            if name == "set_config":
                first = (node.args or (None,))[0]
                value = getattr(getattr(first, "val", None), "sval", None)
                self.settings.append(value.lower() if isinstance(value, str) else "*")

    def visit_InsertStmt(self, _ancestors: Any, _node: ast.InsertStmt) -> None:
        self.dml = True

    def visit_MergeStmt(self, _ancestors: Any, _node: ast.MergeStmt) -> None:
        self.dml = True

    def visit_UpdateStmt(self, _ancestors: Any, node: ast.UpdateStmt) -> None:
        self.dml = True
        self.unbounded |= node.whereClause is None

    def visit_DeleteStmt(self, _ancestors: Any, node: ast.DeleteStmt) -> None:
        self.dml = True
        self.unbounded |= node.whereClause is None

    def visit_DropStmt(self, _ancestors: Any, node: ast.DropStmt) -> None:
        # DROP names its objects as lists of strings, not as RangeVars.
        for name in node.objects or ():
            parts = name if isinstance(name, tuple | list) else (name,)
            text = ".".join(p.sval for p in parts if isinstance(getattr(p, "sval", None), str))
            if text:
                self.objects.append(text)

    def visit_VariableSetStmt(self, _ancestors: Any, node: ast.VariableSetStmt) -> None:
        name = (node.name or "all").lower()  # RESET ALL has no name
        self.privileged |= name in PRIVILEGED_SETTINGS
        self.settings.append(name)


# pglast turns libpg_query's parse tree into Python objects recursively in C, about 350 bytes
# of stack per tree level: a left-deep chain (1+1+…, SELECT 1 UNION SELECT 1 …) of ~24,000
# levels overflows an 8 MiB thread stack and kills the process (SIGSEGV), and libpg_query's
# own depth check does not catch every shape. A tree level needs at least two characters of
# SQL, so text up to DIRECT_PARSE_CHARS parses on the caller's stack; longer text parses on one
# thread with a DEEP_PARSE_STACK stack, after the lexer (no recursion) has bounded its tokens.
DIRECT_PARSE_CHARS: Final = 16_000
DEEP_PARSE_STACK: Final = 512 << 20
MAX_STATEMENT_TOKENS: Final = 500_000  # ≤ ~175 MiB of stack at one level per token


@functools.cache
def _deep_parser() -> concurrent.futures.ThreadPoolExecutor:
    """One worker thread with a stack deep enough for MAX_STATEMENT_TOKENS levels."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="proctor-deep-parse")
    with _STACK_SIZE_LOCK:
        previous = threading.stack_size(DEEP_PARSE_STACK)
        try:
            pool.submit(int).result()  # the worker starts now, with this stack size
        finally:
            threading.stack_size(previous)
    return pool


_STACK_SIZE_LOCK: Final = threading.Lock()


def analyze(sql: str) -> Analysis:
    """The statements of ``sql`` and what each does; SqlError when it does not parse."""
    if len(sql) <= DIRECT_PARSE_CHARS:
        return _analyze(sql)
    try:
        tokens = len(pglast.parser.scan(sql))
    except pglast.parser.ParseError as exc:
        raise SqlError(f"SQL does not parse: {exc}") from None
    if tokens > MAX_STATEMENT_TOKENS:
        raise SqlError(
            f"the SQL text has {tokens} tokens, more than the {MAX_STATEMENT_TOKENS} Proctor "
            "analyzes: split it (or load data with COPY)"
        )
    return _deep_parser().submit(_analyze, sql).result()


def _analyze(sql: str) -> Analysis:
    try:
        texts = pglast.split(sql)
        raws = [pglast.parse_sql(text) for text in texts]
    except pglast.parser.ParseError as exc:
        raise SqlError(f"SQL does not parse: {exc}") from None
    statements = []
    for text, parsed in zip(texts, raws, strict=True):
        for raw in parsed:
            statements.append(_statement(text, raw.stmt))
    return Analysis(tuple(statements))


def _statement(text: str, node: Any) -> Statement:
    tag = type(node).__name__
    seen = _Collector()
    seen.prepare(node)
    seen(node)
    action, operation = _classify(tag, node)
    # A statement is at least as dangerous as anything inside it: WITH x AS (DELETE …)
    # SELECT …, COPY (DELETE … RETURNING *) TO STDOUT and EXPLAIN ANALYZE DELETE change rows;
    # SET ROLE or SELECT set_config('role', …) change who the session acts as.
    plan_only = tag == "ExplainStmt" and not _explain_analyze(node)  # plans, runs nothing
    if seen.dml and not plan_only and _RANK[action] < _RANK["write"]:
        action = "write"
    if seen.privileged and not plan_only:
        action = "admin"
    if tag == "SelectStmt" and node.lockingClause and _RANK[action] < _RANK["write"]:
        action, operation = "write", "SELECT FOR UPDATE"  # it locks rows against writers
    return Statement(
        text=text,
        action=action,
        operation=operation,
        # CTE names stay in: telling a CTE reference from a table of the same name needs
        # PostgreSQL's scoping rules; an extra name can only make a policy stricter.
        objects=_unique(seen.objects),
        functions=_unique(seen.functions),
        has_where=not seen.unbounded,
        writes_in_cte=seen.cte_writes,
        copy_program=tag == "CopyStmt" and bool(node.is_program),
        fingerprint=_fingerprint(text),
        normalized=(normalized := _normalized(text)),
        redacted=redact(normalized or text) or "",
        settings=_unique(seen.settings),
        redefines=tag in _REDEFINES,
        tag=tag,
        computed_columns=seen.computed_columns(),
    )


_CONSTANTS: Final = frozenset({"SCONST", "USCONST", "ICONST", "FCONST", "BCONST", "XCONST"})
_COMMENTS: Final = frozenset({"C_COMMENT", "SQL_COMMENT"})


def redact(text: str) -> str | None:
    """``text`` with every constant token replaced by a fresh ``$n`` and comments dropped.

    pglast's normalize replaces the constants of DML only; ``EXECUTE p(1, 'x')``, ``ALTER ROLE
    … PASSWORD 'pw'``, ``DEFAULT 'secret'`` and comments keep theirs. This uses PostgreSQL's
    own lexer (its quoting rules: dollar quotes, E'', U&''), so no literal is missed by a guess
    at quoting. None when the lexer rejects the text (record nothing rather than leak it).
    """
    try:
        tokens = pglast.parser.scan(text)
    except pglast.parser.ParseError:
        return None
    params = [int(text[t.start + 1 : t.end + 1]) for t in tokens if t.name == "PARAM"]
    number = max(params, default=0)
    out: list[str] = []
    pos = 0
    for token in tokens:
        if token.name in _CONSTANTS:
            number += 1
            out.append(f"{text[pos : token.start]}${number}")
            pos = token.end + 1
        elif token.name in _COMMENTS:
            before = text[pos : token.start]
            pos = token.end + 1
            if pos < len(text) and text[pos].isspace():  # what follows still separates
                before = before.rstrip(" \t")
            elif not before[-1:].isspace():  # a comment separates tokens: keep a space
                before += " "
            out.append(before)
    out.append(text[pos:])
    return "".join(out).strip()


def _normalized(text: str) -> str:
    try:
        return str(pglast.parser.normalize(text))
    except pglast.parser.ParseError:  # it parsed a moment ago; keep nothing rather than text
        return ""


def _fingerprint(text: str) -> str:
    try:
        return str(pglast.fingerprint(text))
    except pglast.parser.ParseError:  # parsed a moment ago; never expected
        return ""


def _select(node: Any, op: str) -> tuple[ActionClass, str]:
    if node.intoClause is not None:  # SELECT … INTO creates a table
        return "ddl", "SELECT INTO"
    return "read", op


def _copy(node: Any, _op: str) -> tuple[ActionClass, str]:
    # COPY FROM loads rows (a write); COPY TO reads them out; PROGRAM runs a server program.
    if node.is_program:
        return "admin", "COPY PROGRAM"
    return ("write", "COPY FROM") if node.is_from else ("read", "COPY TO")


def _drop(node: Any, _op: str) -> tuple[ActionClass, str]:
    kind = enums.ObjectType(node.removeType).name.removeprefix("OBJECT_").replace("_", " ")
    return "ddl", f"DROP {kind}"


def _grant(node: Any, op: str) -> tuple[ActionClass, str]:
    suffix = " ROLE" if op.endswith("ROLE") else ""
    return "admin", ("GRANT" if node.is_grant else "REVOKE") + suffix


def _transaction(node: Any, _op: str) -> tuple[ActionClass, str]:
    kind = enums.TransactionStmtKind(node.kind).name.removeprefix("TRANS_STMT_")
    return "transaction", kind.replace("_", " ")


def _explain_analyze(node: Any) -> bool:
    return any(getattr(o, "defname", "") == "analyze" for o in node.options or ())


def _explain(node: Any, op: str) -> tuple[ActionClass, str]:
    # EXPLAIN ANALYZE runs the statement: it is what it explains.
    if _explain_analyze(node):
        inner, what = _classify(type(node.query).__name__, node.query)
        return inner, f"EXPLAIN ANALYZE {what}"
    return "read", op


def _wrapped(prefix: str) -> Any:
    def classify(node: Any, _op: str) -> tuple[ActionClass, str]:
        inner, what = _classify(type(node.query).__name__, node.query)
        return inner, f"{prefix} {what}"

    return classify


def _vacuum(node: Any, _op: str) -> tuple[ActionClass, str]:
    return ("admin", "VACUUM") if node.is_vacuumcmd else ("utility", "ANALYZE")


_SPECIAL: Final[dict[str, Any]] = {
    "SelectStmt": _select,
    "CopyStmt": _copy,
    "DropStmt": _drop,
    "GrantStmt": _grant,
    "GrantRoleStmt": _grant,
    "TransactionStmt": _transaction,
    "ExplainStmt": _explain,
    "PrepareStmt": _wrapped("PREPARE"),
    "DeclareCursorStmt": _wrapped("DECLARE CURSOR"),
    "VacuumStmt": _vacuum,
}


def _classify(tag: str, node: Any) -> tuple[ActionClass, str]:
    """The statement's action class and operation name (unknown kinds: ``admin``)."""
    operation = _OPERATION.get(tag) or _CAMEL.sub(" ", tag.removesuffix("Stmt")).upper()
    special = _SPECIAL.get(tag)
    if special is not None:
        result: tuple[ActionClass, str] = special(node, operation)
        return result
    return _CLASS.get(tag, "admin"), operation


_SHAPE_TAGS: Final = frozenset({"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"})


class Analyzer:
    """``analyze`` with two LRU caches.

    By exact text: an analysis never changes for a text. By *shape* (pglast's normalized text,
    constants replaced by ``$n``, a few µs to compute): applications and ORMs on the simple
    protocol send the same statement with other constants every time, and for a single plain
    SELECT, INSERT, UPDATE or DELETE nothing this module reports depends on a constant, so the
    analysis of one text serves every text of its shape. Not for anything else: a constant
    can matter there (``set_config('role', …)``, ``EXPLAIN (ANALYZE false)``, SET values).
    """

    def __init__(self, size: int = 4096) -> None:
        self._cache: Lru[str, Analysis] = Lru(size)
        self._shapes: Lru[str, Statement] = Lru(size)
        self.hits = 0  # counters for tests and diagnostics (not locked: approximate)
        self.shape_hits = 0
        self.misses = 0

    def analyze(self, sql: str) -> Analysis:
        """The cached analysis of ``sql`` (SqlError, never cached, when it does not parse)."""
        found = self._cache.get(sql)
        if found is not None:
            self.hits += 1
            return found
        try:
            shape = str(pglast.parser.normalize(sql))
        except pglast.parser.ParseError as exc:
            raise SqlError(f"SQL does not parse: {exc}") from None
        same = self._shapes.get(shape)
        if same is not None:
            self.shape_hits += 1
            result = Analysis((dataclasses.replace(same, text=sql),))
        else:
            self.misses += 1
            result = analyze(sql)
            if len(result.statements) == 1 and _shape_reusable(result.statements[0]):
                self._shapes.put(shape, result.statements[0])
        if len(sql) <= MAX_CACHED_TEXT:  # a few huge texts must not fill memory
            self._cache.put(sql, result)
        return result


def _shape_reusable(s: Statement) -> bool:
    return s.tag in _SHAPE_TAGS and "set_config" not in s.functions and not s.settings
