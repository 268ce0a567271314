"""Search benchmark: indexing rate, then selective queries through the index next to jq.

    .venv/bin/python bench/bench_search.py [--events N] [--repeat R] [--jq-repeat J]
                                           [--reuse] [--keep] [--doc]

Builds a real ledger of N synthetic events (bench/search_workload.py) with
``Ledger.append_raw`` in batches, writes the same events as a JSON-lines file (what people
search with jq today), builds the search index with ``catch_up`` (events/s), then asks the
same questions both ways: ``search`` (first page of 50, newest first, events read and decoded
from the ledger), every matching index (``matching_indexes``), and ``jq -c 'select(…)'`` over
the file. The match counts of the index and of jq are checked to be equal. Queries take
turns, so the machine's noise falls on all of them alike.

Work files live in ``bench/out/search-N/`` (gitignored); ``--reuse`` keeps a ledger and JSONL
built before (and indexes only what is missing), ``--keep`` leaves them there. ``--doc``
writes the figures to the ``## Search`` section at the end of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    ROOT,
    fmt_rate,
    load_average,
    log,
    machine_info,
    markdown_table,
    percentile,
    run_header,
    verdict,
)
from proctor.events.ids import format_time
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.search.compile import compile_query, page_sql
from proctor.search.index import INDEX_NAME, IndexConfig, SearchIndex, catch_up
from proctor.search.query import parse
from proctor.search.search import matching_indexes, search
from search_workload import NS, RARE_FINGERPRINT, Workload

DOC = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "bench" / "out"
BEGIN = "<!-- BEGIN SEARCH FIGURES: written by bench/bench_search.py --doc -->"
END = "<!-- END SEARCH FIGURES -->"
GOAL_P95_MS = 100.0
BATCH = 1000
JQ = "/usr/bin/jq"


@dataclass(frozen=True)
class Question:
    """One question asked through the index and through jq."""

    name: str
    query: str
    jq: str


@dataclass
class Timing:
    name: str
    query: str
    matches: int
    jq_matches: int
    page_ms: list[float]
    all_ms: list[float]
    jq_s: list[float]


def build(out: Path, n: int, end_ns: int) -> tuple[Workload, float, dict[str, object]]:
    """The ledger and the JSONL file of ``n`` events; returns the workload and its stats."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ledger_dir = out / "ledger"
    signer = Signer.generate("bench.example/search")
    Ledger.init(ledger_dir, signer)
    work = Workload(n, end_ns=end_ns)
    start = time.perf_counter()
    with (
        Ledger(ledger_dir, signer=signer) as lg,
        (out / "events.jsonl").open("wb", buffering=1 << 20) as jsonl,
    ):
        batch: list[bytes] = []
        for data in work.events():
            batch.append(data)
            if len(batch) == BATCH:
                lg.append_raw(batch)
                jsonl.write(b"\n".join(batch) + b"\n")
                batch = []
                done = lg.size()
                if done % 1_000_000 == 0:
                    log(f"ledger: {done:,} events, {done / (time.perf_counter() - start):,.0f}/s")
        if batch:
            lg.append_raw(batch)
            jsonl.write(b"\n".join(batch) + b"\n")
    took = time.perf_counter() - start
    stats: dict[str, object] = {
        "events": n,
        "end_ns": end_ns,
        "build_s": took,
        "counts": dict(work.counts),
        "denies": dict(work.denies),
        "recent_denies": dict(work.recent_denies),
    }
    (out / "workload.json").write_text(json.dumps(stats))
    return work, took, stats


def questions(stats: dict[str, object], ledger_dir: Path) -> list[Question]:
    """The selective questions, with parameters taken from the generated data."""
    end_ns = int(stats["end_ns"])  # type: ignore[call-overload]
    day = format_time(end_ns - 86_400 * NS)
    counts: dict[str, int] = stats["counts"]  # type: ignore[assignment]
    recent: dict[str, int] = stats["recent_denies"]  # type: ignore[assignment]
    heavy = max(counts, key=lambda a: counts[a])
    # a typical person with denials in the last day: the median of those
    people = sorted((n, a) for a, n in recent.items() if a.startswith("u-"))
    person = people[len(people) // 2][1] if people else heavy
    with Ledger(ledger_dir) as lg:
        mid = lg.size() // 2
        sample = json.loads(next(iter(lg.entries(mid, mid + 1)))[1])
    session = sample["links"]["session_id"]
    return [
        Question(
            f"one person's denials in the last day ({person}, {counts.get(person, 0):,} events)",
            f"actor:{person} decision:deny since:1d",
            f'select(.actor.id == "{person}" and .decision.effect == "deny" and .time >= "{day}")',
        ),
        Question(
            f"the busiest actor's denials in the last day ({heavy}, {counts[heavy]:,} events)",
            f"actor:{heavy} decision:deny since:1d",
            f'select(.actor.id == "{heavy}" and .decision.effect == "deny" and .time >= "{day}")',
        ),
        Question(
            "a rare statement fingerprint",
            f"fingerprint:{RARE_FINGERPRINT}",
            f'select(.action.fingerprint == "{RARE_FINGERPRINT}")',
        ),
        Question(
            'a phrase in statements ("DROP TABLE")',
            'stmt:"DROP TABLE"',
            'select((.action.statement // "") | contains("DROP TABLE"))',
        ),
        Question(
            "risk >= 90 on one target (hr-db)",
            "risk>=90 target:hr-db",
            'select(.risk.score >= 90 and .target.name == "hr-db")',
        ),
        Question(
            "one session's events",
            f"session:{session}",
            f'select(.links.session_id == "{session}")',
        ),
        Question(
            "denials from outside addresses (203.0.113.0/24)",
            "ip:203.0.113.0/24 decision:deny",
            'select(((.actor.ip // "") | startswith("203.0.113.")) and .decision.effect == "deny")',
        ),
    ]


def _ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e6


def run_jq(jq_filter: str, jsonl: Path) -> tuple[float, int]:
    start = time.perf_counter()
    res = subprocess.run(
        [JQ, "-c", jq_filter, str(jsonl)], capture_output=True, check=True, text=False
    )
    took = time.perf_counter() - start
    return took, res.stdout.count(b"\n")


def measure(
    ledger_dir: Path, qs: list[Question], now_ns: int, repeat: int, jq_repeat: int
) -> list[Timing]:
    jsonl = ledger_dir.parent / "events.jsonl"
    timings: list[Timing] = []
    with Ledger(ledger_dir) as lg, SearchIndex(lg) as index:
        for q in qs:
            plan = index.query(
                "EXPLAIN QUERY PLAN "
                + page_sql(
                    compile_query(parse(q.query), now_ns=now_ns), after=None, order="desc", limit=50
                )[0],
                page_sql(
                    compile_query(parse(q.query), now_ns=now_ns), after=None, order="desc", limit=50
                )[1],
            )
            log(f"{q.query}: " + " / ".join(str(r[3]) for r in plan))
            n = len(list(matching_indexes(index, q.query, now_ns=now_ns)))
            timings.append(Timing(q.name, q.query, n, -1, [], [], []))
        for r in range(repeat):
            for q, t in zip(qs, timings, strict=True):
                t.page_ms.append(_ms(lambda q=q: search(index, q.query, limit=50, now_ns=now_ns)))
                t.all_ms.append(
                    _ms(lambda q=q: list(matching_indexes(index, q.query, now_ns=now_ns)))
                )
            if r == 0:
                log("first round done")
    for r in range(jq_repeat):
        for q, t in zip(qs, timings, strict=True):
            took, count = run_jq(q.jq, jsonl)
            t.jq_s.append(took)
            t.jq_matches = count
            log(f"jq round {r + 1}: {q.name}: {took:.1f} s, {count} matches")
    return timings


def _fmt_ms(x: float) -> str:
    return f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


def report(
    *,
    n: int,
    build_s: float | None,
    index_s: float,
    index_bytes: int,
    ledger_bytes: int,
    jsonl_bytes: int,
    timings: list[Timing],
    repeat: int,
    jq_repeat: int,
) -> str:
    lines = []
    build = (
        f"Ledger built with `Ledger.append_raw`, {BATCH:,} events per call: "
        f"{n / build_s:,.0f} events/s (generation included). "
        if build_s
        else "Ledger and JSONL reused from an earlier run. "
    )
    lines.append(
        f"{n:,} synthetic events (bench/search_workload.py: sessions of query/decision/outcome "
        f"triples, 5,000 actors with a Zipf-like skew, 7 targets, ~3% of decisions deny), "
        f"{ledger_bytes / n:,.0f} bytes per entry in ledger.sqlite, {jsonl_bytes / 1e9:.2f} GB "
        f"as JSON lines. {build}"
    )
    lines.append("")
    lines.append(
        markdown_table(
            [
                "Index build (catch_up from an empty index)",
                "Events/s",
                "Seconds",
                "Index bytes/event",
            ],
            [
                [
                    "all entries, one process",
                    fmt_rate(n / index_s),
                    f"{index_s:,.0f}",
                    f"{index_bytes / n:,.0f}",
                ]
            ],
        )
    )
    lines.append("")
    lines.append(
        f"Each question ran {repeat} times through the index (turns taken question by question, "
        f"warm OS cache) and {jq_repeat} time(s) through jq 1.6 (`jq -c 'select(...)' "
        f"events.jsonl`); page = `search(limit=50)`, the 50 newest matches read and decoded from "
        f"the ledger; all = every matching ledger index (`matching_indexes`). jq's count "
        f"of matches equals the index's on every line (checked)."
    )
    lines.append("")
    rows = []
    for t in timings:
        page = sorted(t.page_ms)
        every = sorted(t.all_ms)
        jq_med = statistics.median(t.jq_s) if t.jq_s else float("nan")
        p95 = percentile(page, 0.95)
        rows.append(
            [
                t.name,
                f"`{t.query}`",
                f"{t.matches:,}",
                _fmt_ms(percentile(page, 0.5)),
                _fmt_ms(p95),
                _fmt_ms(percentile(every, 0.5)),
                _fmt_ms(percentile(every, 0.95)),
                f"{jq_med:,.1f}" if t.jq_s else "-",
                f"{jq_med * 1000 / percentile(page, 0.5):,.0f}x" if t.jq_s else "-",
                verdict(p95, GOAL_P95_MS, higher_is_better=False),
            ]
        )
    lines.append(
        markdown_table(
            [
                "Question",
                "Query",
                "Matches",
                "page p50 ms",
                "page p95 ms",
                "all p50 ms",
                "all p95 ms",
                "jq s",
                "jq / page p50",
                "page p95 vs ≤100 ms",
            ],
            rows,
        )
    )
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text()
    block = f"{BEGIN}\n\n{section.strip()}\n\n{END}"
    if BEGIN in text and END in text:
        text = text.split(BEGIN, 1)[0] + block + text.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Search\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events in the ledger")
    ap.add_argument("--repeat", type=int, default=30, help="runs of each question via the index")
    ap.add_argument("--jq-repeat", type=int, default=3, help="runs of each question via jq")
    ap.add_argument("--reuse", action="store_true", help="reuse the ledger and JSONL in bench/out")
    ap.add_argument("--keep", action="store_true", help="keep bench/out/search-N afterwards")
    ap.add_argument("--doc", action="store_true", help="write the figures to docs/benchmarks.md")
    ap.add_argument("--cache-mib", type=int, default=IndexConfig().cache_mib)
    args = ap.parse_args()
    n = args.events
    out = OUT / f"search-{n}"
    ledger_dir = out / "ledger"
    began = time.perf_counter()
    load_start = load_average()
    if args.reuse and (out / "workload.json").exists():
        stats = json.loads((out / "workload.json").read_text())
        build_s = None
        log(f"reusing {out}")
    else:
        log(f"building a ledger of {n:,} events in {out}")
        _, build_s, stats = build(out, n, time.time_ns())
        log(f"ledger built in {build_s:,.0f} s")
    for suffix in ("", "-wal", "-shm"):  # the index is always built from nothing
        Path(f"{ledger_dir / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    log("indexing")
    start = time.perf_counter()
    last = [start]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 30 or done == total:
            last[0] = now
            log(f"indexed {done:,} of {total:,} ({done / (now - start):,.0f}/s)")

    status = catch_up(ledger_dir, config=IndexConfig(cache_mib=args.cache_mib), progress=progress)
    index_s = time.perf_counter() - start
    if status.added != n:
        log(f"note: indexed {status.added:,} entries now (the rest was indexed before)")
    index_bytes = sum(p.stat().st_size for p in ledger_dir.glob(f"{INDEX_NAME}*") if p.is_file())
    ledger_bytes = sum(p.stat().st_size for p in ledger_dir.glob("ledger.sqlite*"))
    jsonl_bytes = (out / "events.jsonl").stat().st_size
    log(f"index: {status.added / index_s:,.0f} events/s, {index_bytes / n:,.0f} bytes/event")
    qs = questions(stats, ledger_dir)
    now_ns = int(stats["end_ns"])
    timings = measure(ledger_dir, qs, now_ns, args.repeat, args.jq_repeat)
    for t in timings:
        if args.jq_repeat and t.matches != t.jq_matches:
            log(f"MISMATCH: {t.query}: index {t.matches}, jq {t.jq_matches}")
    took = time.perf_counter() - began
    body = report(
        n=n,
        build_s=build_s,
        index_s=index_s,
        index_bytes=index_bytes,
        ledger_bytes=ledger_bytes,
        jsonl_bytes=jsonl_bytes,
        timings=timings,
        repeat=args.repeat,
        jq_repeat=args.jq_repeat,
    )
    header = run_header(
        "bench_search.py" + f" --events {n}",
        quick=False,
        took=took,
        loads=(load_start, load_average()),
        info=machine_info(out),
        caveat=", so treat differences under ~20% between runs as noise.",
    )
    section = header + "\n" + body
    print(section)
    if args.doc:
        write_doc(section)
        log(f"figures written to {DOC}")
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
