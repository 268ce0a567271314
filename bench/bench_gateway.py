"""Gateway benchmark: pgbench direct, through pgbouncer and through Proctor, side by side.

    .venv/bin/python bench/bench_gateway.py [--quick] [--seconds N] [--only SECTIONS]
                                            [--no-doc] [--keep]

Sections: ``throughput`` (pgbench select-only and tpcb-like at 1, 8 and 32 clients, simple
protocol, plus prepared at 8 clients: TPS, ratios, latency p50/p99 and what each hop adds)
and ``revocation`` (from an admin's revoke to the client seeing its session end, for idle,
in-transaction, running and streaming sessions, with the gateway idle and under load).

The targets take turns: each configuration is cut into slices and every slice runs the
three targets in a rotated order, so noise from the shared machine hits all of them alike.
Proctor runs as ``proctor serve`` with authorization and auditing on, as deployed: every
statement is read, scored, decided by Cedar and its decision recorded in the ledger before
it is forwarded. pgbouncer must be installed (``apt-get install -y pgbouncer``); PostgreSQL
must be up on 127.0.0.1:5432. A full run of every section rewrites the gateway figures in
docs/benchmarks.md (~10 min).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (
    ROOT,
    load_average,
    log,
    machine_info,
    markdown_table,
    percentile,
    run_header,
    update_doc,
    verdict,
)
from gateway_pgbench import STATEMENTS, Run, Workload, run_pgbench
from gateway_revoke import STATES, Revocation, revoke_batch
from gateway_stack import (
    DATABASE,
    INSTALL_PGBOUNCER,
    PGBENCH,
    SCALE,
    Stack,
    StackError,
    between_runs,
    check_tools,
    prepare_database,
    versions,
)

DOC = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "bench" / "out"
BEGIN = (
    "<!-- BEGIN GATEWAY FIGURES: written by bench/bench_gateway.py; edit outside these markers -->"
)
END = "<!-- END GATEWAY FIGURES -->"
SECTIONS = ("throughput", "revocation")
TARGETS = ("direct", "pgbouncer", "proctor")
GOAL_RATIO = 0.8  # Proctor's TPS against pgbouncer's, at 8 clients
GOAL_REVOKE_P99_MS = 100.0
LOADS = ("gateway idle", "gateway under pgbench -S, 8 clients")

SKELETON = f"""# Benchmarks

## Gateway

{BEGIN}
{END}
"""


@dataclass(frozen=True)
class Settings:
    """Durations and counts of one run; ``--quick`` shrinks them."""

    seconds: int  # per target and configuration, split into slices
    slices: int
    revocations: int  # per session state and load
    batch: int  # sessions open at once while revoking

    @classmethod
    def make(cls, quick: bool, seconds: int | None) -> Settings:
        if quick:
            return cls(seconds or 3, 1, 20, 10)
        return cls(seconds or 15, 3, 120, 40)

    @property
    def slice_seconds(self) -> int:
        return max(1, self.seconds // self.slices)


def workloads() -> list[Workload]:
    """The configurations measured, in the order they run."""
    out = [
        Workload(script, "simple", clients)
        for script in ("select-only", "tpcb-like")
        for clients in (1, 8, 32)
    ]
    out += [Workload(script, "prepared", 8) for script in ("select-only", "tpcb-like")]
    return out


@dataclass
class Cell:
    """Every slice of one workload against one target."""

    runs: list[Run] = field(default_factory=list)
    cpu_s: float = 0.0  # CPU time of the gateway process during the runs (none for direct)

    @property
    def tps(self) -> float:
        """Median TPS of the slices."""
        return statistics.median(r.tps for r in self.runs) if self.runs else math.nan

    @property
    def spread(self) -> tuple[float, float]:
        return min(r.tps for r in self.runs), max(r.tps for r in self.runs)

    @property
    def transactions(self) -> int:
        return sum(r.transactions for r in self.runs)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.runs)

    def latency_ms(self, q: float) -> float:
        """A percentile of every logged transaction's latency, all slices pooled."""
        pooled = sorted(x for r in self.runs for x in r.latencies_us)
        return percentile(pooled, q) / 1000


@dataclass
class Results:
    """Everything one run measured."""

    cells: dict[tuple[Workload, str], Cell] = field(default_factory=dict)
    revocations: list[Revocation] = field(default_factory=list)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_throughput(stack: Stack, s: Settings, logs: Path) -> dict[tuple[Workload, str], Cell]:
    """Every workload against every target, the targets rotating slice by slice."""
    pids = {name: proc.pid for name, proc in stack.procs.items()}
    cells: dict[tuple[Workload, str], Cell] = {}
    log("warm-up: 2 s of select-only, 8 clients, per target")
    for name in TARGETS:
        run_pgbench(stack.targets[name], Workload("select-only", "simple", 8), 2, logs, "warm")
    for k, w in enumerate(workloads()):
        between_runs()
        for i in range(s.slices):
            shift = (k + i) % len(TARGETS)
            for name in TARGETS[shift:] + TARGETS[:shift]:
                cell = cells.setdefault((w, name), Cell())
                before = process_cpu_s(pids[name]) if name in pids else 0.0
                run = run_pgbench(stack.targets[name], w, s.slice_seconds, logs, f"{name}-{k}-{i}")
                if name in pids:
                    cell.cpu_s += process_cpu_s(pids[name]) - before
                cell.runs.append(run)
                note = f", {run.failed} failed" if run.failed else ""
                note += f", ABORTED: {run.problem}" if run.aborted else ""
                log(f"{w.label}: {name} {run.tps:,.0f} tps{note}")
    return cells


def bench_revocation(stack: Stack, s: Settings) -> list[Revocation]:
    """Revocations per session state, with the gateway idle and then under load."""
    proctor = stack.targets["proctor"]
    out: list[Revocation] = []
    for load in LOADS:
        background = None
        if load != LOADS[0]:
            background = subprocess.Popen(
                [PGBENCH, "-n", "-S", "-c", "8", "-j", "2", "-T", "3600"],
                env=proctor.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(2)
        try:
            for state in STATES:
                done: list[Revocation] = []
                while len(done) < s.revocations:
                    n = min(s.batch, s.revocations - len(done))
                    done += revoke_batch(proctor, stack.admin_socket, state, n, load)
                ok = [r.client_ms for r in done if not math.isnan(r.client_ms)]
                log(
                    f"revocation, {state}, {load}: p50 {percentile(sorted(ok), 0.5):.1f} ms,"
                    f" p99 {percentile(sorted(ok), 0.99):.1f} ms"
                )
                out += done
        finally:
            if background is not None:
                background.terminate()
                background.wait()
    return out


# -- the report -------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def _tps(cell: Cell, slices: int) -> str:
    text = f"{cell.tps:,.0f}"
    if slices > 1:
        lo, hi = cell.spread
        text += f" ({lo:,.0f}–{hi:,.0f})"
    return text


def _throughput_md(res: Results, s: Settings) -> str:
    rows, lat_rows, problems = [], [], []
    for w in workloads():
        cells = {t: res.cells.get((w, t)) for t in TARGETS}
        if any(c is None or not c.runs for c in cells.values()):
            continue
        d, b, p = (cells[t] for t in TARGETS)
        assert d is not None and b is not None and p is not None
        per_stmt = STATEMENTS[w.script]
        goal = ""
        if w.clients == 8 and w.protocol == "simple":
            goal = verdict(p.tps / b.tps, GOAL_RATIO) if b.tps > 0 else "-"
        rows.append(
            [
                w.script,
                w.protocol,
                str(w.clients),
                _tps(d, s.slices),
                _tps(b, s.slices),
                _tps(p, s.slices),
                f"{p.tps * per_stmt:,.0f}",
                _ratio(p.tps, b.tps),
                _ratio(p.tps, d.tps),
                _ratio(b.tps, d.tps),
                goal or "-",
                _cpu_per(b),
                _cpu_per(p),
            ]
        )
        dp50, dp99 = d.latency_ms(0.5), d.latency_ms(0.99)
        lat_rows.append(
            [
                w.script,
                w.protocol,
                str(w.clients),
                f"{dp50:.3f}",
                f"{dp99:.3f}",
                f"{b.latency_ms(0.5):.3f}",
                f"{b.latency_ms(0.99):.3f}",
                f"{p.latency_ms(0.5):.3f}",
                f"{p.latency_ms(0.99):.3f}",
                f"{b.latency_ms(0.5) - dp50:+.3f}",
                f"{b.latency_ms(0.99) - dp99:+.3f}",
                f"{p.latency_ms(0.5) - dp50:+.3f}",
                f"{p.latency_ms(0.99) - dp99:+.3f}",
            ]
        )
        for name, c in cells.items():
            assert c is not None
            aborted = [r for r in c.runs if r.aborted]
            if c.failed or aborted:
                why = f"; {aborted[0].problem}" if aborted else ""
                problems.append(
                    f"- {w.label}, {name}: {c.failed} failed transactions,"
                    f" {len(aborted)} aborted runs{why}"
                )
    table = markdown_table(
        [
            "Script",
            "Protocol",
            "Clients",
            "Direct TPS",
            "pgbouncer TPS",
            "Proctor TPS",
            "Proctor statements/s",
            "Proctor / pgbouncer",
            "Proctor / direct",
            "pgbouncer / direct",
            f"Goal ≥{GOAL_RATIO} x pgbouncer",
            "pgbouncer CPU µs/txn",
            "Proctor CPU µs/txn",
        ],
        rows,
    )
    latency = markdown_table(
        [
            "Script",
            "Protocol",
            "Clients",
            "Direct p50",
            "Direct p99",
            "pgbouncer p50",
            "pgbouncer p99",
            "Proctor p50",
            "Proctor p99",
            "pgbouncer adds p50",
            "pgbouncer adds p99",
            "Proctor adds p50",
            "Proctor adds p99",
        ],
        lat_rows,
    )
    trouble = (
        "\nFailed or aborted runs:\n\n" + "\n".join(problems) + "\n"
        if problems
        else "\nNo transaction failed and no pgbench run aborted.\n"
    )
    slices = (
        f"{s.slices} slices of {s.slice_seconds} s"
        if s.slices > 1
        else f"one run of {s.slice_seconds} s"
    )
    return (
        f"### Throughput\n\n"
        f"pgbench's built-in scripts on `{DATABASE}` at scale {SCALE}, with `-n` (the small\n"
        f"tables are vacuumed and the history emptied directly before each configuration)\n"
        f"and `-j` = min(clients, 2). Each target ran {slices} per configuration, the three\n"
        f"in a rotated order each slice. TPS is pgbench's (without the initial connection\n"
        f"time) of the median slice, the slowest and fastest slice in brackets; ratios are\n"
        f"of medians. Proctor statements/s counts what Proctor decides and records: 1 per\n"
        f"select-only transaction, 7 per tpcb-like one. CPU µs/txn is the CPU time (user +\n"
        f"system) the gateway's process used during its slices, over the transactions it\n"
        f"carried.\n\n{table}\n{trouble}\n"
        f"### Latency per transaction (ms)\n\n"
        f"Every transaction's latency from pgbench's per-transaction log (`-l`), all slices\n"
        f"pooled; *adds* is the target's percentile minus the direct one.\n\n{latency}\n"
    )


def _cpu_per(cell: Cell) -> str:
    if cell.transactions == 0 or cell.cpu_s == 0:
        return "-"
    return f"{cell.cpu_s / cell.transactions * 1e6:,.0f}"


def _revocation_md(res: Results, s: Settings) -> str:
    rows = []
    for load in LOADS:
        for state in STATES:
            got = [r for r in res.revocations if r.state == state and r.load == load]
            if not got:
                continue
            ok = sorted(r.client_ms for r in got if not math.isnan(r.client_ms))
            answers = sorted(r.answer_ms for r in got if not math.isnan(r.answer_ms))
            p99 = percentile(ok, 0.99)
            drained = statistics.median(r.drained for r in got)
            rows.append(
                [
                    state,
                    load,
                    str(len(got)),
                    f"{sum(r.fatal_seen for r in got)}/{len(got)}",
                    f"{percentile(ok, 0.5):.2f}",
                    f"{p99:.2f}",
                    f"{ok[-1]:.2f}" if ok else "-",
                    f"{percentile(answers, 0.5):.2f}",
                    f"{drained / 1024:,.1f}",
                    verdict(p99, GOAL_REVOKE_P99_MS, higher_is_better=False),
                ]
            )
    table = markdown_table(
        [
            "Session state",
            "Gateway",
            "Revocations",
            "FATAL 57P01 seen",
            "p50 ms",
            "p99 ms",
            "max ms",
            "admin answer p50 ms",
            "client read after the request, KiB (median)",
            f"Goal p99 ≤{GOAL_REVOKE_P99_MS:.0f} ms",
        ],
        rows,
    )
    return (
        f"### Revocation\n\n"
        f"Sessions opened through Proctor in batches of {s.batch}, each revoked alone with\n"
        f'`{{"op": "revoke", "session": …}}` on the admin socket. The time runs from just\n'
        f"before the request is written to the admin socket until the client's socket\n"
        f"reaches end-of-file (after the FATAL ErrorResponse). *Running* sessions wait on\n"
        f"`SELECT pg_sleep(5)` sent 0.1 s earlier; *streaming* ones are reading\n"
        f"`SELECT generate_series(1, 2000000000), repeat('x', 100)` and had read 2 MiB; the\n"
        f"client reads the socket as fast as it can, so the streamed rows already on their\n"
        f"way are drained before the FATAL. The loaded lines ran while pgbench -S with 8\n"
        f"clients went through the same gateway.\n\n{table}\n"
    )


def report(
    res: Results,
    *,
    s: Settings,
    info: dict[str, str],
    loads: tuple[str, str],
    took: float,
    quick: bool,
) -> str:
    parts = [
        run_header(
            "bench_gateway.py",
            quick=quick,
            took=took,
            loads=loads,
            info=info,
            caveat=(
                ".\nPostgreSQL, pgbench, pgbouncer and Proctor share its two cores, so every "
                "hop's CPU\nis taken from the others. Compare lines of one run with each other."
            ),
        )
    ]
    if res.cells:
        parts.append(_throughput_md(res, s))
    if res.revocations:
        parts.append(_revocation_md(res, s))
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="3 s per target, 20 revocations")
    ap.add_argument("--seconds", type=int, help="seconds per target and configuration")
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections, of {','.join(SECTIONS)} (default: all)",
    )
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (ledger, logs)")
    args = ap.parse_args(argv)
    sections = {x.strip() for x in args.only.split(",") if x.strip()}
    if not sections <= set(SECTIONS):
        ap.error(f"unknown section in --only: {', '.join(sorted(sections - set(SECTIONS)))}")
    try:
        pgbouncer = check_tools()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if "pgbouncer" in str(exc):
            print(
                f"(the benchmark does not install it: run `{INSTALL_PGBOUNCER}`)", file=sys.stderr
            )
        return 2
    s = Settings.make(args.quick, args.seconds)
    work = OUT / time.strftime("gateway-%Y%m%d-%H%M%S")
    logs = work / "pgbench-logs"
    logs.mkdir(parents=True)
    info = machine_info(work) | versions(pgbouncer)
    info["event loop"] = f"uvloop {importlib.metadata.version('uvloop')} (`proctor serve` uses it)"
    load_start = load_average()
    started = time.perf_counter()
    res = Results()
    try:
        prepare_database()
        with Stack(work, pgbouncer) as stack:
            if "throughput" in sections:
                res.cells = bench_throughput(stack, s, logs)
            if "revocation" in sections:
                res.revocations = bench_revocation(stack, s)
    finally:
        if args.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    took = time.perf_counter() - started
    text = report(
        res, s=s, info=info, loads=(load_start, load_average()), took=took, quick=args.quick
    )
    print(text)
    full = not args.quick and args.seconds is None and sections == set(SECTIONS)
    if args.no_doc or not full:
        log(f"{DOC.relative_to(ROOT)} not updated (only a full default run writes it)")
    else:
        update_doc(DOC, text, SKELETON, BEGIN, END)
        log(f"figures written to {DOC.relative_to(ROOT)}")
    log(f"done in {took / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
