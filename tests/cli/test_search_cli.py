"""``proctor search`` in real processes: JSON lines, tables, pages, counts, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.cli.test_cli import EXAMPLES, keys, ledger, proctor

__all__ = ["keys", "ledger"]  # fixtures used here


def _filled(ledger: Path, keys: tuple[Path, Path], extra: Path | None = None) -> dict[str, str]:
    env = {"PROCTOR_LEDGER": str(ledger), "PROCTOR_SIGNER_KEY": str(keys[0])}
    res = proctor("ledger", "append", EXAMPLES, env=env)
    assert res.returncode == 0, res.stderr
    if extra is not None:
        res = proctor("ledger", "append", extra, env=env)
        assert res.returncode == 0, res.stderr
    return {"PROCTOR_LEDGER": str(ledger)}


def _lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_search_prints_json_lines_from_the_ledger(ledger: Path, keys: tuple[Path, Path]) -> None:
    env = _filled(ledger, keys)
    res = proctor("search", "kind:decision decision:deny OR risk>=80", "--json", env=env)
    assert res.returncode == 0, res.stderr
    rows = _lines(res.stdout)
    assert rows and all(set(r) == {"idx", "event"} for r in rows)
    idxs = [r["idx"] for r in rows]
    assert idxs == sorted(idxs, reverse=True)
    entry = proctor("ledger", "entry", str(idxs[0]), env=env)
    assert json.loads(entry.stdout) == rows[0]["event"]  # the ledger's own bytes
    assert res.stderr.strip().endswith(f"{len(rows)} event{'s' if len(rows) != 1 else ''}")


def test_pages_continue_with_after(ledger: Path, keys: tuple[Path, Path]) -> None:
    env = _filled(ledger, keys)
    first = proctor("search", "", "--limit", "5", "--json", env=env)
    assert first.returncode == 0, first.stderr
    idxs = [r["idx"] for r in _lines(first.stdout)]
    assert idxs == [20, 19, 18, 17, 16]
    assert "next page: --after 16" in first.stderr
    second = proctor("search", "", "--limit", "5", "--after", "16", "--json", env=env)
    assert [r["idx"] for r in _lines(second.stdout)] == [15, 14, 13, 12, 11]
    oldest = proctor("search", "", "--limit", "3", "--asc", "--json", env=env)
    assert [r["idx"] for r in _lines(oldest.stdout)] == [0, 1, 2]


def test_counts(ledger: Path, keys: tuple[Path, Path]) -> None:
    env = _filled(ledger, keys)
    res = proctor("search", "", "--count-by", "kind", "--json", env=env)
    assert res.returncode == 0, res.stderr
    counts = {r["key"]: r["count"] for r in _lines(res.stdout)}
    assert counts["decision"] == 5 and sum(counts.values()) == 21  # type: ignore[arg-type]
    table = proctor("search", "role:dba", "--count-by", "actor", env=env)
    assert table.returncode == 0 and "u-0077" in table.stdout
    bad = proctor("search", "", "--count-by", "password", env=env)
    assert bad.returncode == 2 and "cannot count by 'password'" in bad.stderr


def test_table_shows_event_text_as_written(
    tmp_path: Path, ledger: Path, keys: tuple[Path, Path]
) -> None:
    lines = EXAMPLES.read_text().splitlines()
    query = next(json.loads(x) for x in lines if '"kind":"query"' in x)
    query["id"] = "01a207ad-3f7a-7000-8000-000000000001"
    query["action"]["statement"] = "SELECT '[bold red]boom[/]' FROM t\x1b[2J"
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps(query) + "\n")
    env = _filled(ledger, keys, extra)
    res = proctor("search", "boom", env={**env, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert "[bold red]boom[/]" in res.stdout  # markup shown, not interpreted
    assert "\x1b" not in res.stdout and "\\x1b[2J" in res.stdout  # escapes shown, not run
    assert "1 event" in res.stderr


def test_a_query_starting_with_a_minus(ledger: Path, keys: tuple[Path, Path]) -> None:
    env = _filled(ledger, keys)
    res = proctor("search", "--json", "--", "-kind:decision -kind:query", env=env)
    assert res.returncode == 0, res.stderr
    kinds = {r["event"]["kind"] for r in _lines(res.stdout)}  # type: ignore[index]
    assert kinds and not kinds & {"decision", "query"}


def test_bad_query_names_the_column(ledger: Path, keys: tuple[Path, Path]) -> None:
    env = _filled(ledger, keys)
    res = proctor("search", "decision:deny actr:alice", env=env)
    assert res.returncode == 3
    assert res.stderr.strip() == ("error: column 15: unknown field 'actr' (did you mean 'actor'?)")
    res = proctor("search", '"[unterminated', env=env)
    assert res.returncode == 3 and "column 1: unterminated quote" in res.stderr


def test_a_replaced_ledger_is_refused_until_rebuilt(
    tmp_path: Path, ledger: Path, keys: tuple[Path, Path]
) -> None:
    env = _filled(ledger, keys)
    assert proctor("search", "", env=env).returncode == 0
    other = tmp_path / "other"
    assert proctor("ledger", "init", "--ledger", other).returncode == 0
    shutil.copy(other / "ledger.sqlite", ledger / "ledger.sqlite")
    res = proctor("search", "", env=env)
    assert res.returncode == 4
    assert "was built from another ledger" in res.stderr
    assert "proctor search --rebuild" in res.stderr
    rebuilt = proctor("search", "", "--rebuild", "--json", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout == ""  # the new ledger is empty


def test_no_ledger(tmp_path: Path) -> None:
    res = proctor("search", "x")
    assert res.returncode == 2 and "no ledger given" in res.stderr
    res = proctor("search", "x", "--ledger", tmp_path / "none")
    assert res.returncode == 2 and "no ledger in" in res.stderr
