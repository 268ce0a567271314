"""``proctor search``: find events in a ledger with the query language of docs/search.md.

The search index beside the ledger is caught up first when this process can take its lock
(otherwise what is indexed is searched, and a note says how much that is). Events print as a
table for people or as JSON lines (``{"idx": N, "event": {…}}``) for machines.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import Annotated

import typer
from rich import box
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from proctor.cli._app import app, err, handled, out
from proctor.cli.options import LedgerDir, ledger_dir
from proctor.events.canonical import canonical_bytes
from proctor.events.schema import Event
from proctor.ledger.ledger import Ledger
from proctor.search.compile import count_key
from proctor.search.index import CatchUp, SearchIndex, catch_up
from proctor.search.query import parse
from proctor.search.search import MAX_LIMIT, Page, count, search

_PROGRESS_FROM = 50_000  # show a progress bar when at least this many entries are behind
_STATEMENT_CHARS = 80
_HEADERS = ("idx", "time (UTC)", "kind", "actor", "target", "decision", "outcome", "action")


@app.command("search")
@handled
def search_cmd(
    query: Annotated[
        str, typer.Argument(help="The query, e.g. 'actor:alice decision:deny since:7d'.")
    ] = "",
    *,
    ledger: LedgerDir = None,
    limit: Annotated[
        int, typer.Option("--limit", help=f"Events per page (or keys counted), 1-{MAX_LIMIT}.")
    ] = 50,
    after: Annotated[
        int | None,
        typer.Option("--after", help="Continue after this ledger index (the last one shown)."),
    ] = None,
    asc: Annotated[bool, typer.Option("--asc", help="Oldest first (default newest).")] = False,
    count_by: Annotated[
        str | None,
        typer.Option(
            "--count-by",
            help="Count matches per FIELD instead: actor, target, decision, kind, hour, day, …",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for machines.")] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild the search index from the ledger first.")
    ] = False,
) -> None:
    """Search the ledger's events: field:value terms, phrases, -NOT, OR, (), since:7d.

    The language is described in docs/search.md. A query that starts with '-' goes after
    '--': proctor search -- '-actor:bob since:1d'.
    """
    node = parse(query)  # a mistake is reported before any indexing
    if count_by is not None:
        count_key(count_by)
    with Ledger(ledger_dir(ledger)) as lg:
        status = _catch_up(lg, rebuild=rebuild)
        with SearchIndex(lg) as index:
            if count_by is not None:
                rows = count(index, node, by=count_by, limit=limit)
                _print_counts(rows, count_by, as_json=as_json)
                indexed = index.indexed()
            else:
                page = search(
                    index, node, limit=limit, after_index=after, order="asc" if asc else "desc"
                )
                _print_page(page, as_json=as_json)
                indexed = page.indexed
            for idx, reason in index.unreadable()[:5]:
                err.print(f"warning: ledger entry {idx} could not be indexed: {_clean(reason)}")
        size = lg.size()
    if status.skipped is not None or indexed < size:
        why = f" ({status.skipped})" if status.skipped else ""
        err.print(f"note: searched the {indexed:,} of {size:,} entries indexed so far{why}")


def _catch_up(lg: Ledger, *, rebuild: bool) -> CatchUp:
    behind = lg.size()
    if not err.is_terminal or behind < _PROGRESS_FROM:
        return catch_up(lg, rebuild=rebuild)
    with Progress(
        TextColumn("indexing"),
        BarColumn(),
        TaskProgressColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("index", total=behind)
        return catch_up(
            lg, rebuild=rebuild, progress=lambda done, total: bar.update(task, completed=done)
        )


def _clean(text: str | None, limit: int | None = None) -> str:
    """Event text for a terminal: control characters shown as escapes, long text cut."""
    if text is None:
        return ""
    safe = "".join(
        c if unicodedata.category(c) != "Cc" else f"\\x{ord(c):02x}"
        for c in text.replace("\n", " ")
    )
    if limit is not None and len(safe) > limit:
        safe = safe[: limit - 1] + "…"
    return safe


def _row(idx: int, e: Event) -> list[str]:
    target = ""
    if e.target is not None:
        target = "/".join(x for x in (e.target.name, e.target.database) if x)
    action = ""
    if e.action is not None:
        action = e.action.statement or e.action.operation or e.action.class_
    decision = ""
    if e.decision is not None:
        decision = e.decision.effect
    if e.risk is not None:
        decision = f"{decision} {e.risk.score}".strip()
    outcome = ""
    if e.outcome is not None:
        outcome = " ".join(x for x in (e.outcome.status, e.outcome.sqlstate) if x)
    cells = [
        str(idx),
        e.time[:10] + " " + e.time[11:19],  # to the second; the JSON has every digit
        e.kind,
        e.actor.id if e.actor is not None else "",
        target,
        decision,
        outcome,
        _clean(action, _STATEMENT_CHARS),
    ]
    return [_clean(c) for c in cells]


# Columns that give way on a narrow terminal, in order, how narrow each may get, and then
# which are left out when even that is too wide.
_SHRINK = (("action", 16), ("target", 12), ("actor", 12))
_DROP = ("action", "target", "outcome")


def _fit(rows: list[list[str]], total: int) -> dict[int, int]:
    """{column: width} for ``total`` terminal columns: every column at its natural width, then
    action, target and actor cut down to a floor, then columns left out, until it fits."""
    widths = {i: max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(_HEADERS)}

    def over() -> int:
        return sum(widths.values()) + 3 * len(widths) - total  # padding and separators

    for name, floor in _SHRINK:
        if over() > 0:
            i = _HEADERS.index(name)
            widths[i] = max(floor, widths[i] - over())
    for name in _DROP:
        if over() > 0:
            del widths[_HEADERS.index(name)]
    return widths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _print_page(page: Page, *, as_json: bool) -> None:
    if as_json:
        w = sys.stdout.buffer
        for idx, event in page.items:
            w.write(b'{"idx":%d,"event":%s}\n' % (idx, canonical_bytes(event)))
        w.flush()
    else:
        rows = [_row(idx, event) for idx, event in page.items]
        widths = _fit(rows, out.width)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for i, width in widths.items():
            table.add_column(_HEADERS[i], no_wrap=True, width=width)
        for row in rows:
            table.add_row(*(Text(_cut(row[i], w)) for i, w in widths.items()))
        out.print(table)
    more = f"; next page: --after {page.next_after}" if page.next_after is not None else ""
    n = len(page.items)
    err.print(f"{n} event{'' if n == 1 else 's'}{more}")


def _print_counts(rows: list[tuple[str | None, int]], by: str, *, as_json: bool) -> None:
    if as_json:
        for key, n in rows:
            sys.stdout.write(json.dumps({"key": key, "count": n}) + "\n")
        return
    table = Table(by, "events")
    for key, n in rows:
        table.add_row(Text("(none)" if key is None else _clean(key)), Text(f"{n:,}"))
    out.print(table)
