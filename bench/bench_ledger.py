"""Ledger benchmarks: appends/s, full verification, proof latency, bytes on disk.

    .venv/bin/python bench/bench_ledger.py [--quick] [--keep] [--only SECTIONS] [--no-doc]

Each figure is printed next to the limits it runs into, measured in the same run (STYLE §16):
appends next to the same Appender without SQLite and the store without the Appender;
``verify_ledger`` next to reading the entries and bare SHA-256 over them. A full run replaces
the figures section of docs/benchmarks.md. Ledgers live under bench/out/ (gitignored) and are
deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (
    BEGIN,
    END,
    ROOT,
    Workload,
    fmt_rate,
    fmt_us,
    load_average,
    log,
    machine_info,
    markdown_table,
    run_header,
    update_doc,
    verdict,
)
from ledger_appends import BATCH, AppendRow, PartRow, bench_appends, bench_parts
from ledger_trees import (
    Build,
    Disk,
    ProofRow,
    VerifyRow,
    bench_proofs,
    bench_verify,
    build_direct,
    build_with_appender,
    measure_disk,
)
from proctor.ledger.note import Signer

DOC = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "bench" / "out"
SECTIONS = ("appends", "verify", "proofs")
GOAL_APPENDS = {"os": 100_000.0, "fsync": 20_000.0}
GOAL_VERIFY = 1_000_000.0
GOAL_PROOF_US = 1000.0
ORIGIN = "bench.example/ledger"

SKELETON = f"""# Ledger benchmarks

How fast the ledger appends, verifies and proves, measured by `bench/bench_ledger.py`
(see bench/README.md). The figures section below is rewritten by each full run.

## Figures

{BEGIN}
{END}

## Where the time goes

(profile notes)
"""


@dataclass(frozen=True)
class Settings:
    """Sizes of one run; ``--quick`` shrinks all of them."""

    seconds: float  # per append configuration and repeat
    repeats: int
    raw_pool: int
    event_pool: int
    verify_size: int
    proof_size: int  # the big ledger, built straight into the store
    proof_samples: int
    build_batch: int = 1000

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(0.4, 1, 100_000, 20_000, 50_000, 500_000, 300)
        return cls(1.5, 3, 300_000, 60_000, 1_000_000, 10_000_000, 2000)


@dataclass
class Results:
    """Everything one run measured."""

    appends: list[AppendRow] = field(default_factory=list)
    parts: list[PartRow] = field(default_factory=list)
    builds: list[Build] = field(default_factory=list)
    verify: list[VerifyRow] = field(default_factory=list)
    proofs: list[ProofRow] = field(default_factory=list)
    disk: Disk | None = None


def run(s: Settings, sections: set[str], out: Path) -> Results:
    res = Results()
    signer = Signer.generate(ORIGIN)
    work = Workload()
    log(f"event: {work.kind}, {work.size} bytes canonical")
    if "appends" in sections:
        log(f"appends: {s.repeats} x {s.seconds} s per configuration")
        res.appends = bench_appends(
            work,
            signer,
            out,
            seconds=s.seconds,
            repeats=s.repeats,
            raw=s.raw_pool,
            events=s.event_pool,
        )
        log("the append path in pieces, one thread")
        res.parts = bench_parts(work, out, seconds=s.seconds, repeats=s.repeats, raw=s.raw_pool)
    if sections & {"verify", "proofs"}:
        small = out / "ledger-verify"
        log(f"building a {s.verify_size:,}-entry ledger through the Appender")
        res.builds.append(build_with_appender(small, s.verify_size, work, signer, s.build_batch))
        res.disk = measure_disk(small)
        if "verify" in sections:
            log("full verification")
            res.verify = bench_verify(small, signer, s.repeats)
        if "proofs" in sections:
            log(f"proofs at {s.verify_size:,}")
            res.proofs += bench_proofs(small, signer, s.proof_samples)
            big = out / "ledger-proofs"
            log(f"building a {s.proof_size:,}-entry ledger straight into the store")
            res.builds.append(build_direct(big, s.proof_size, signer))
            log(f"proofs at {s.proof_size:,}")
            res.proofs += bench_proofs(big, signer, s.proof_samples)
    return res


# -- the report -------------------------------------------------------------------------------


def _appends_md(res: Results, s: Settings, event_size: int) -> str:
    rows = []
    for r in res.appends:
        goal = GOAL_APPENDS.get(r.durability)
        per = " (batch)" if "batches" in r.producers else ""
        rows.append(
            [
                f"`{r.path}`",
                r.durability,
                r.producers,
                fmt_rate(r.run.rate),
                "–".join(fmt_rate(x) for x in r.spread) if len(r.runs) > 1 else "-",
                fmt_us(r.run.latency.p50_us) + per,
                fmt_us(r.run.latency.p99_us) + per,
                f"{r.run.latency.max_us / 1000:,.1f}",
                "-" if goal is None else f"≥{fmt_rate(goal)}",
                "-" if goal is None else verdict(r.run.rate, goal),
            ]
        )
    table = markdown_table(
        [
            "Path",
            "Durability",
            "Producers",
            "Appends/s",
            "Range",
            "p50 µs",
            "p99 µs",
            "max ms",
            "Goal",
            "vs goal",
        ],
        rows,
    )
    parts = markdown_table(
        ["Piece (one thread, no queue)", "Durability", "Entries/s", "µs/entry"],
        [[f"`{p.what}`", p.durability, fmt_rate(p.rate), fmt_us(p.per_item_us)] for p in res.parts],
    )
    return (
        f"### Appends\n\n"
        f"Each configuration ran {s.repeats} times for {s.seconds:g} s, each time on a fresh\n"
        f"ledger, the rounds interleaved; Appends/s is the median run (its latencies are\n"
        f"shown), Range the slowest and fastest run. Every ledger has the default\n"
        f"`AppenderConfig` (a checkpoint is signed every 10,000 entries or 1 s). The event is\n"
        f"the `auth.failed` example of examples/events.jsonl without `attributes` and with a\n"
        f"system clock: {event_size} bytes canonical, a different id and time in every entry.\n"
        f"`Appender` lines append those canonical bytes; `Ledger` lines append the `Event`\n"
        f"struct, which `Ledger.stamp` canonicalizes (and re-validates) first; the events are\n"
        f"built before the runs, so `max_time_skew_ms` is 1 h to keep them from being flagged\n"
        f"as skewed (a gateway's live events are not). Each producer\n"
        f"appends one entry and waits for its index before the next, except on the batch\n"
        f"lines ({BATCH} entries per call). Latencies are per append (per call for batches).\n"
        f"The in-memory lines are the same Appender over a store that keeps tiles in a dict:\n"
        f"its queue, threads, hashing and tiles without SQLite. The second table times the\n"
        f"writer's step alone (hash, tiles, one SQLite transaction) and canonicalization.\n\n"
        f"{table}\n\n{parts}\n"
    )


def _verify_md(res: Results, repeats: int) -> str:
    rows = []
    for v in res.verify:
        is_verify = v.what.startswith(("verify_ledger", "the same verify_ledger"))
        rows.append(
            [
                f"`{v.what}`" if v.what.startswith(("verify_ledger", "hashlib")) else v.what,
                fmt_rate(v.rate),
                f"{v.seconds:.2f}",
                f"≥{fmt_rate(GOAL_VERIFY)}" if is_verify else "-",
                verdict(v.rate, GOAL_VERIFY) if is_verify else "-",
            ]
        )
    n = res.verify[0].entries if res.verify else 0
    build = res.builds[0] if res.builds else None
    built = (
        ""
        if build is None
        else f"The ledger was built with {build.how}: {fmt_rate(build.rate)} entries/s.\n"
    )
    table = markdown_table(
        ["Pass over all entries", "Leaves/s", "Seconds", "Goal", "vs goal"], rows
    )
    return (
        f"### Full verification ({n:,} entries)\n\n"
        f"Each pass reads every entry of the same file (warm OS cache); the passes ran in\n"
        f"{repeats} interleaved rounds and the median is shown.\n"
        f"{built}\n{table}\n"
    )


def _proofs_md(res: Results) -> str:
    rows = [
        [
            f"`{p.what}`",
            f"{p.size:,}",
            fmt_us(p.latency.p50_us),
            fmt_us(p.latency.p99_us),
            f"≤{fmt_us(GOAL_PROOF_US)}",
            verdict(p.latency.p50_us, GOAL_PROOF_US, higher_is_better=False)
            + " / "
            + verdict(p.latency.p99_us, GOAL_PROOF_US, higher_is_better=False),
        ]
        for p in res.proofs
    ]
    big = res.builds[1] if len(res.builds) > 1 else None
    note = (
        ""
        if big is None
        else (
            f"The {big.entries:,}-entry ledger was **not** built through the Appender: its\n"
            f'entries are tiny (`{{"n":N}}`) and were written with {big.how}\n'
            f"(the Appender's own tile code, without its queue), {fmt_rate(big.rate)} "
            f"entries/s, then one\ncheckpoint was signed over it. Proofs read tiles, never "
            f"entry bytes, so entry size does\nnot matter to them.\n"
        )
    )
    small = res.builds[0] if res.builds else None
    first = (
        ""
        if small is None
        else f"The {small.entries:,}-entry ledger is the verify ledger (600-byte entries).\n"
    )
    count = res.proofs[0].latency.count if res.proofs else 0
    table = markdown_table(
        ["Proof", "Tree size", "p50 µs", "p99 µs", "Goal µs", "vs goal: p50 / p99"], rows
    )
    return (
        f"### Proofs\n\n"
        f"{count:,} random indexes (random old sizes for consistency) per line, against the\n"
        f"latest checkpoint, the SQLite file in the OS cache; the three kinds take turns index\n"
        f"by index, so load from others hits them alike. Each kind is also checked with\n"
        f"`verify_inclusion` / `verify_consistency` (not timed). {first}{note}\n{table}\n"
    )


def _disk_md(d: Disk) -> str:
    tables = ", ".join(
        f"{name} {size / d.entries:.0f}"
        for name, size in d.per_table.items()
        if size / d.entries >= 0.5
    )
    rows = [
        [
            f"{d.entries:,}",
            f"{d.total:,}",
            f"{d.total / d.entries:.0f}",
            f"{d.payload / d.entries:.0f}",
            f"{d.total / d.payload:.2f}x",
        ]
    ]
    table = markdown_table(
        ["Entries", "ledger.sqlite + WAL, bytes", "Bytes/entry", "Entry bytes/entry", "Ratio"],
        rows,
    )
    per = f"\nBytes per entry by table and index (SQLite `dbstat`): {tables}.\n" if tables else ""
    return (
        f"### Bytes on disk\n\nThe verify ledger after a truncating WAL checkpoint.\n\n"
        f"{table}\n{per}"
    )


def report(
    res: Results,
    *,
    s: Settings,
    info: dict[str, str],
    loads: tuple[str, str],
    took: float,
    event_size: int,
    quick: bool,
) -> str:
    parts = [
        run_header(
            "bench_ledger.py",
            quick=quick,
            took=took,
            loads=loads,
            info=info,
            caveat=(", so\ntreat differences under ~20% between runs as noise."),
        )
    ]
    if res.appends:
        parts.append(_appends_md(res, s, event_size))
    if res.verify:
        parts.append(_verify_md(res, s.repeats))
    if res.proofs:
        parts.append(_proofs_md(res))
    if res.disk is not None:
        parts.append(_disk_md(res.disk))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, short runs (~1 min)")
    ap.add_argument("--keep", action="store_true", help="keep the ledgers under bench/out/")
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)",
    )
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    sections = {x.strip() for x in args.only.split(",") if x.strip()}
    if not sections <= set(SECTIONS):
        ap.error(f"unknown section in --only: {', '.join(sorted(sections - set(SECTIONS)))}")
    s = Settings.make(args.quick)
    out = OUT / time.strftime("run-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    info = machine_info(out)
    load_start = load_average()
    started = time.perf_counter()
    try:
        res = run(s, sections, out)
    finally:
        if args.keep:
            log(f"ledgers kept in {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    took = time.perf_counter() - started
    text = report(
        res,
        s=s,
        info=info,
        loads=(load_start, load_average()),
        took=took,
        event_size=Workload().size,
        quick=args.quick,
    )
    print(text)
    full = not args.quick and sections == set(SECTIONS)
    if args.no_doc or not full:
        log(f"{DOC.relative_to(ROOT)} not updated (only a full run of every section writes it)")
    else:
        update_doc(DOC, text, SKELETON)
        log(f"figures written to {DOC.relative_to(ROOT)}")
    log(f"done in {took / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
