"""The search query language: text in, a typed tree out (sans-IO; no SQL, no clock).

::

    actor:alice decision:deny risk>=70 target:prod-db "DROP TABLE" since:7d

Grammar (docs/search.md has the full description)::

    query    = [ or ]
    or       = and { "OR" and }
    and      = unary { [ "AND" ] unary }          (juxtaposition is AND)
    unary    = ( "-" | "NOT" ) unary | primary
    primary  = "(" or ")" | term
    term     = FIELD ( ":" | ">=" | "<=" | ">" | "<" ) value | PHRASE [ "*" ] | WORD
    value    = WORD | PHRASE [ "*" ]

A ``WORD`` ends at whitespace, a parenthesis or a quote; a ``PHRASE`` is double-quoted, with
``\\"`` and ``\\\\`` as its only escapes. ``AND``, ``OR`` and ``NOT`` are operators only in
capitals.
Every error is a :class:`QueryError` naming the 1-based column and the token at fault.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from proctor.errors import InputError
from proctor.search.fields import ALIASES, FIELDS, Field, lookup, suggest

__all__ = [
    "And",
    "Compare",
    "Everything",
    "Limits",
    "Match",
    "Network",
    "Node",
    "Not",
    "Or",
    "QueryError",
    "Text",
    "TimeBound",
    "parse",
]

MAX_SAFE_INT: Final = 2**53 - 1  # the largest integer an event holds (docs/events.md)


class QueryError(InputError):
    """A query that cannot be parsed; ``column`` is 1-based, ``token`` is the text at fault."""

    def __init__(self, column: int, token: str, message: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column
        self.token = token


@dataclass(frozen=True)
class Limits:
    """How big a query may be: bounds the SQL a query can turn into."""

    max_chars: int = 4096
    max_terms: int = 64
    max_depth: int = 32


# -- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """``field:value`` (``exact``), ``field:prefix*`` (``prefix``) or ``field:*`` (``any``)."""

    field: str
    value: str
    mode: Literal["exact", "prefix", "any"]
    column: int


@dataclass(frozen=True)
class Compare:
    """A number field within ``low..high`` (both inclusive; ``None`` is unbounded)."""

    field: str
    low: int | None
    high: int | None
    column: int


@dataclass(frozen=True)
class Network:
    """An address field inside a network (a single address is a /32 or /128)."""

    field: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    column: int


@dataclass(frozen=True)
class TimeBound:
    """``since:`` (time at or after) or ``until:`` (time before): absolute or ``ago_ns`` back."""

    bound: Literal["since", "until"]
    at_ns: int | None
    ago_ns: int | None
    column: int


@dataclass(frozen=True)
class Text:
    """Words or a phrase for full-text search, in every text column or in ``fts_column``."""

    text: str
    prefix: bool
    fts_column: str | None
    column: int


@dataclass(frozen=True)
class Not:
    """Events the child does not match."""

    child: Node


@dataclass(frozen=True)
class And:
    """Events every child matches."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Events any child matches."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Everything:
    """The empty query: every event."""


Node = Match | Compare | Network | TimeBound | Text | Not | And | Or | Everything


# -- tokens -----------------------------------------------------------------------------------

_Kind = Literal["word", "phrase", "lparen", "rparen", "neg", "and", "or", "not", "end"]
_KEYWORDS: Final[dict[str, _Kind]] = {"AND": "and", "OR": "or", "NOT": "not"}
_WORD_END: Final = frozenset('()"')


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str  # a word as written, a phrase unescaped
    start: int  # 0-based offset into the query
    raw: str  # as written, for messages
    joined: bool  # no whitespace between this token and the one before


def _fail(start: int, token: str, message: str) -> QueryError:
    return QueryError(start + 1, token, message)


def _check_chars(text: str, limits: Limits) -> None:
    if len(text) > limits.max_chars:
        raise _fail(limits.max_chars, text[limits.max_chars :][:20], "query too long")
    for i, c in enumerate(text):
        code = ord(c)
        if 0xD800 <= code <= 0xDFFF:
            raise _fail(i, c, "not valid Unicode text (a lone surrogate)")
        if (code < 0x20 and c not in "\t\n\r") or code == 0x7F:
            raise _fail(i, c, f"control character U+{code:04X} is not allowed")


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    joined = False
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            joined = False
            continue
        if c in "()":
            out.append(_Token("lparen" if c == "(" else "rparen", c, i, c, joined))
            i += 1
        elif c == '"':
            i = _phrase(text, i, joined, out)
        elif c == "-" and i + 1 < n and not text[i + 1].isspace() and text[i + 1] != ")":
            out.append(_Token("neg", c, i, c, joined))
            i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in _WORD_END:
                j += 1
            word = text[i:j]
            out.append(_Token(_KEYWORDS.get(word, "word"), word, i, word, joined))
            i = j
        joined = True
    out.append(_Token("end", "", n, "", False))
    return out


def _phrase(text: str, start: int, joined: bool, out: list[_Token]) -> int:
    chars: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in '"\\':
            chars.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            out.append(_Token("phrase", "".join(chars), start, text[start : i + 1], joined))
            return i + 1
        chars.append(c)
        i += 1
    raise _fail(start, text[start:][:20], "unterminated quote")


# -- the parser -------------------------------------------------------------------------------

_FIELD_TERM: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(>=|<=|:|>|<|=)(.*)", re.DOTALL)


def parse(text: str, limits: Limits | None = None) -> Node:
    """Parse a query; raise :class:`QueryError` naming the column of anything wrong."""
    limits = limits or Limits()
    if not isinstance(text, str):
        raise QueryError(1, "", "a query is text")
    _check_chars(text, limits)
    return _Parser(_tokens(text), limits).run()


class _Parser:
    def __init__(self, tokens: list[_Token], limits: Limits) -> None:
        self._toks = tokens
        self._i = 0
        self._limits = limits
        self._terms = 0
        self._depth = 0

    def _peek(self) -> _Token:
        return self._toks[self._i]

    def _next(self) -> _Token:
        tok = self._toks[self._i]
        self._i += 1
        return tok

    def run(self) -> Node:
        if self._peek().kind == "end":
            return Everything()
        node = self._or()
        tok = self._peek()
        if tok.kind == "rparen":
            raise _fail(tok.start, tok.raw, "unmatched ')'")
        assert tok.kind == "end"
        return node

    def _or(self) -> Node:
        children = [self._and()]
        while self._peek().kind == "or":
            op = self._next()
            if self._peek().kind in ("end", "rparen", "or", "and"):
                raise _fail(op.start, op.raw, "nothing after 'OR'")
            children.append(self._and())
        return children[0] if len(children) == 1 else Or(_flatten(Or, children))

    def _and(self) -> Node:
        children: list[Node] = []
        while (tok := self._peek()).kind not in ("end", "rparen", "or"):
            if tok.kind == "and":
                self._next()
                if not children:
                    raise _fail(tok.start, tok.raw, "nothing before 'AND'")
                if self._peek().kind in ("end", "rparen", "or", "and"):
                    raise _fail(tok.start, tok.raw, "nothing after 'AND'")
            children.append(self._unary())
        if not children:
            tok = self._peek()
            if tok.kind == "or":
                raise _fail(tok.start, tok.raw, "nothing before 'OR'")
            raise _fail(tok.start, tok.raw, "unmatched ')'")  # '()' is caught in _primary
        return children[0] if len(children) == 1 else And(_flatten(And, children))

    def _unary(self) -> Node:
        tok = self._peek()
        if tok.kind in ("neg", "not"):
            self._next()
            if self._peek().kind in ("end", "rparen", "or", "and"):
                raise _fail(tok.start, tok.raw, f"nothing after '{tok.raw}'")
            self._enter(tok)
            child = self._unary()
            self._depth -= 1
            return Not(child)
        return self._primary()

    def _enter(self, tok: _Token) -> None:
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise _fail(tok.start, tok.raw, f"nested deeper than {self._limits.max_depth}")

    def _primary(self) -> Node:
        tok = self._next()
        if tok.kind == "lparen":
            self._enter(tok)
            if self._peek().kind == "rparen":
                raise _fail(tok.start, "()", "empty parentheses")
            node = self._or()
            close = self._next()
            if close.kind != "rparen":
                raise _fail(tok.start, tok.raw, "'(' is never closed")
            self._depth -= 1
            return node
        if tok.kind == "rparen":
            raise _fail(tok.start, tok.raw, "unmatched ')'")
        self._terms += 1
        if self._terms > self._limits.max_terms:
            raise _fail(tok.start, tok.raw, f"more than {self._limits.max_terms} terms")
        if tok.kind == "phrase":
            return _text(tok, tok.text, self._star(), None)
        assert tok.kind == "word"
        return self._word(tok)

    def _star(self) -> bool:
        """A ``*`` written right after a closing quote: the phrase's last word is a prefix."""
        tok = self._peek()
        if tok.kind == "word" and tok.joined:
            if tok.text != "*":
                raise _fail(tok.start, tok.raw, "put a space after the closing quote")
            self._next()
            return True
        return False

    def _word(self, tok: _Token) -> Node:
        m = _FIELD_TERM.fullmatch(tok.text)
        if m is None:
            after = self._peek()
            if after.kind == "phrase" and after.joined:
                raise _fail(after.start, after.raw, "a quote cannot start inside a word")
            return _bare(tok)
        name, op, value = m.groups()
        field = lookup(name)
        if field is None:
            raise _fail(tok.start, name, _unknown_field(name, tok.text))
        vstart = tok.start + len(name) + len(op)
        quoted = False
        prefix = False
        if not value:
            after = self._peek()
            if after.kind == "phrase" and after.joined:
                self._next()
                value, quoted, vstart = after.text, True, after.start
                prefix = self._star()
            else:
                raise _fail(tok.start, tok.text, f"{name}{op} needs a value")
        elif self._peek().kind == "phrase" and self._peek().joined:
            after = self._peek()
            raise _fail(after.start, after.raw, "a quote cannot start inside a word")
        return _term(field, op, _Value(value, quoted, prefix, vstart), tok)


@dataclass(frozen=True)
class _Value:
    text: str
    quoted: bool  # written in quotes: '*' is literal
    prefix: bool  # '*' right after the closing quote
    start: int


def _flatten(kind: type[And] | type[Or], children: list[Node]) -> tuple[Node, ...]:
    out: list[Node] = []
    for child in children:
        if isinstance(child, kind):
            out.extend(child.children)
        else:
            out.append(child)
    return tuple(out)


def _unknown_field(name: str, word: str) -> str:
    close = suggest(name, [*FIELDS, *ALIASES])
    if close is not None:
        return f"unknown field '{name}' (did you mean '{close}'?)"
    return f"unknown field '{name}' (to search for the text, quote it: \"{word}\")"


def _has_word(text: str) -> bool:
    return any(c.isalnum() for c in text)


def _text(tok: _Token, text: str, prefix: bool, column: str | None) -> Text:
    if not _has_word(text):
        raise _fail(tok.start, tok.raw, f"{text!r} has no letters or digits to search for")
    return Text(text=text, prefix=prefix, fts_column=column, column=tok.start + 1)


def _bare(tok: _Token) -> Text:
    if tok.text == "-":
        raise _fail(tok.start, tok.raw, "'-' must be followed by a term, without a space")
    if tok.text == "*":
        raise _fail(tok.start, tok.raw, "a wildcard '*' needs a word before it")
    text, prefix = _strip_star(tok.text, tok.start, tok.raw)
    return _text(tok, text, prefix, None)


def _strip_star(text: str, start: int, raw: str) -> tuple[str, bool]:
    """A trailing ``*`` marks a prefix; one anywhere else is an error."""
    prefix = text.endswith("*")
    body = text[:-1] if prefix else text
    if "*" in body:
        raise _fail(start + body.index("*"), raw, "a wildcard '*' can only end a word")
    return body, prefix


def _term(field: Field, op: str, v: _Value, tok: _Token) -> Node:
    col = tok.start + 1
    if op == "=":
        raise _fail(tok.start, tok.raw, f"use ':' for equality ({field.name}:{v.text})")
    if op != ":" and field.kind != "number":
        raise _fail(tok.start, tok.raw, f"{field.name} takes no comparison '{op}'; use ':'")
    if field.kind == "number":
        return _number(field, op, v, tok)
    if field.kind == "time":
        if v.prefix or (not v.quoted and "*" in v.text):
            raise _fail(v.start, v.text, f"{field.name}: takes no wildcards")
        kind: Literal["since", "until"] = "since" if field.name == "since" else "until"
        at, ago = _time(v)
        return TimeBound(bound=kind, at_ns=at, ago_ns=ago, column=col)
    if field.kind == "fts":
        text, prefix = (v.text, v.prefix) if v.quoted else _strip_star(v.text, v.start, v.text)
        return _text(tok, text, prefix, field.fts)
    if field.kind == "ip":
        if v.text == "*" and not v.quoted:
            return Match(field=field.name, value="", mode="any", column=col)
        if v.prefix or "*" in v.text:
            raise _fail(v.start, v.text, "ip: takes an address or a CIDR network, not wildcards")
        try:
            net = ipaddress.ip_network(v.text, strict=False)
        except ValueError:
            raise _fail(v.start, v.text, f"not an IP address or network: {v.text!r}") from None
        return Network(field=field.name, network=net, column=col)
    return _match(field, v, col)


def _match(field: Field, v: _Value, col: int) -> Match:
    """A text, enum, UUID or tag field: exact, prefix (``ali*``) or presence (``*``)."""
    if v.quoted:
        body, prefix = v.text, v.prefix
    else:
        if v.text == "*":
            return Match(field=field.name, value="", mode="any", column=col)
        body, prefix = _strip_star(v.text, v.start, v.text)
    if field.kind == "uuid":
        if prefix:
            raise _fail(v.start, v.text, f"{field.name}: takes a whole UUID, not a prefix")
        return Match(field=field.name, value=_uuid(v), mode="exact", column=col)
    body = _fold(field, body)
    if not body:
        raise _fail(v.start, v.text, f"{field.name}: needs a value before '*'")
    if field.kind == "enum":
        body = _enum(field, body, prefix, v)
    return Match(field=field.name, value=body, mode="prefix" if prefix else "exact", column=col)


def _fold(field: Field, text: str) -> str:
    if field.fold == "lower":
        return text.lower()
    if field.fold == "upper":
        return text.upper()
    return text


def _enum(field: Field, value: str, prefix: bool, v: _Value) -> str:
    if prefix:
        if any(x.startswith(value) for x in field.values):
            return value
        raise _fail(v.start, v.text, f"no {field.name} starts with {value!r}")
    if value in field.values:
        return value
    if (alt := value.replace("-", "_")) in field.values:
        return alt
    close = suggest(value, field.values)
    hint = f" (did you mean '{close}'?)" if close else ""
    choices = ", ".join(field.values)
    raise _fail(v.start, v.text, f"unknown {field.name} '{value}'{hint}; one of: {choices}")


def _uuid(v: _Value) -> str:
    try:
        return str(uuid.UUID(v.text))
    except ValueError:
        raise _fail(v.start, v.text, f"not a UUID: {v.text!r}") from None


_INT: Final = re.compile(r"[0-9]{1,16}")


def _int(text: str, start: int, field: Field) -> int:
    if _INT.fullmatch(text) is None or int(text) > MAX_SAFE_INT:
        raise _fail(start, text, f"{field.name} takes a whole number, not {text!r}")
    return int(text)


def _number(field: Field, op: str, v: _Value, tok: _Token) -> Compare:
    col = tok.start + 1
    if v.quoted or v.prefix or "*" in v.text:
        raise _fail(v.start, v.text, f"{field.name} takes a number, not a pattern")
    if op == ":" and ".." in v.text:
        lo_text, hi_text = v.text.split("..", 1)
        if not lo_text and not hi_text:
            raise _fail(v.start, v.text, f"{field.name}: a range needs at least one end")
        lo = _int(lo_text, v.start, field) if lo_text else None
        hi = _int(hi_text, v.start + len(lo_text) + 2, field) if hi_text else None
        return Compare(field=field.name, low=lo, high=hi, column=col)
    n = _int(v.text, v.start, field)
    bounds: dict[str, tuple[int | None, int | None]] = {
        ":": (n, n),
        ">=": (n, None),
        ">": (n + 1, None),
        "<=": (None, n),
        "<": (None, n - 1),
    }
    lo, hi = bounds[op]
    return Compare(field=field.name, low=lo, high=hi, column=col)


# -- times ------------------------------------------------------------------------------------

_NS: Final = 1_000_000_000
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_AGO: Final = re.compile(r"([0-9]{1,9})([smhdw])")
_MAX_AGO_NS: Final = 10_000 * 366 * 86_400 * _NS
_ABSOLUTE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2}))?",
    re.IGNORECASE,
)
_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_TIME_HELP: Final = "a duration (30m, 24h, 7d, 2w) or a UTC time (2026-11-23, 2026-11-23T10:00:00Z)"


def _time(v: _Value) -> tuple[int | None, int | None]:
    """(absolute ns, None) or (None, ns ago)."""
    text = v.text
    m = _AGO.fullmatch(text)
    if m is not None:
        ago = int(m.group(1)) * _UNITS[m.group(2)] * _NS
        if ago > _MAX_AGO_NS:
            raise _fail(v.start, text, "further back than 10,000 years")
        return None, ago
    m = _ABSOLUTE.fullmatch(text)
    if m is None:
        raise _fail(v.start, text, f"expected {_TIME_HELP}, not {text!r}")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    try:
        date = dt.date(int(year), int(month), int(day))
    except ValueError:
        raise _fail(v.start, text, f"not a real date: {text!r}") from None
    hour, minute, second = int(hh or 0), int(mm or 0), int(ss or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise _fail(v.start, text, f"not a real time of day: {text!r}")
    offset = 0
    if zone is not None and zone.upper() != "Z":
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            raise _fail(v.start, text, f"not a real UTC offset: {zone!r}")
        offset = (1 if zone[0] == "+" else -1) * (oh * 3600 + om * 60)
    seconds = (date.toordinal() - _EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60 + second
    ns = (seconds - offset) * _NS + int((frac or "").ljust(9, "0"))
    return ns, None
