"""Where the gateway's time goes under pgbench -S with 8 clients: the evidence behind the
gateway notes in docs/benchmarks.md.

    .venv/bin/python bench/profile_gateway.py [--seconds N] [--only SECTIONS]

Sections (all by default, ~1.5 min):

* ``sql``: what reading one pgbench statement costs, piece by piece (no gateway running).
* ``wakeups``: what waking a thread blocked on a queue, or a process blocked on a socket,
  costs the caller (the ledger hand-off and every stream write do one).
* ``threads``: ``proctor serve`` as deployed, in its own process. CPU time of each of its
  threads per statement (Linux /proc), and, when py-spy is installed
  (``.venv/bin/pip install py-spy``; not a project dependency), the event loop thread's
  samples sorted into the gateway's steps: framing, streams, SQL analysis, risk, Cedar,
  the decision event, the ledger hand-off, outcome recording, baseline learning.
* ``steps``: the gateway in this process, with timers wrapped around the same steps: CPU
  time per call on the event loop thread, and how long each statement waits for its
  decision to be recorded (the ledger's durability, awaited before anything is forwarded).
* ``cprofile``: the gateway in this process under cProfile (event loop thread only): the
  functions with the most time of their own, per statement.

Prints Markdown; writes nothing but a scratch directory under bench/out/, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import functools
import io
import os
import pstats
import queue
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pglast
import uvloop

import proctor.gateway.postgres.sql as sql_module
import proctor.ledger.appender as appender_module
from benchlib import ROOT, Latency, fmt_us, log, markdown_table
from gateway_pgbench import Workload, run_pgbench
from gateway_stack import (
    BENCH_PASSWORD,
    BENCH_USER,
    Stack,
    Target,
    between_runs,
    check_tools,
    prepare_database,
    write_proctor_config,
)
from proctor.config import load_config
from proctor.decision import Decider
from proctor.gateway.postgres.server import Gateway
from proctor.gateway.postgres.session import Session
from proctor.gateway.postgres.sql import Analyzer
from proctor.ledger.appender import _LoopWaiter
from proctor.ledger.ledger import Ledger
from proctor.policy.engine import PolicyEngine
from proctor.risk.engine import RiskEngine
from proctor.runtime import open_runtime

SECTIONS = ("sql", "wakeups", "threads", "steps", "cprofile")
OUT = ROOT / "bench" / "out"
WORKLOAD = Workload("select-only", "simple", 8)

# -- sql: what reading one statement costs ----------------------------------------------------

# pgbench's statements (simple protocol: the values are in the text, so every one is new
# to the analysis cache).
PGBENCH_SQL = (
    "SELECT abalance FROM pgbench_accounts WHERE aid = {a};",
    "UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {a};",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)"
    " VALUES ({t}, {b}, {a}, {d}, CURRENT_TIMESTAMP);",
    "BEGIN;",
)


def section_sql(_work: Path, _seconds: int) -> str:
    rng = random.Random(5)
    texts = {
        template.split()[0]: [
            template.format(
                a=rng.randrange(1, 1_000_000),
                d=rng.randrange(-5000, 5000),
                t=rng.randrange(1, 100),
                b=rng.randrange(1, 10),
            )
            for _ in range(2000)
        ]
        for template in PGBENCH_SQL
    }
    raw_stmt: dict[str, Any] = {k: pglast.parse_sql(v[0])[0].stmt for k, v in texts.items()}
    cached = sql_module.Analyzer()
    for k in texts:
        cached.analyze(texts[k][0])
    steps: list[tuple[str, Callable[[str, str], object]]] = [
        ("`sql.analyze` (all of the below)", lambda _k, s: sql_module.analyze(s)),
        ("`pglast.split`", lambda _k, s: pglast.split(s)),
        ("`pglast.parse_sql` (Python AST)", lambda _k, s: pglast.parse_sql(s)),
        (
            "`_Collector()(tree)` (pglast Visitor walk)",
            lambda k, _s: sql_module._Collector()(raw_stmt[k]),
        ),
        ("`pglast.fingerprint`", lambda _k, s: pglast.fingerprint(s)),
        ("`pglast.parser.normalize`", lambda _k, s: pglast.parser.normalize(s)),
        (
            "`Analyzer.analyze`, same text again (cache hit)",
            lambda k, _s: cached.analyze(texts[k][0]),
        ),
    ]
    rows = []
    for label, fn in steps:
        cells = [label]
        for k, items in texts.items():
            cells.append(fmt_us(_best_per_call(functools.partial(fn, k), items)))
        rows.append(cells)
    table = markdown_table(["Step (µs per call, best of 3 passes)", *texts], rows)
    return (
        "### Reading one statement (`proctor.gateway.postgres.sql`), one thread, no load\n\n"
        "2,000 distinct texts per statement kind, as pgbench's simple protocol sends them;\n"
        "each is new to the gateway's cache, which is keyed by exact text.\n\n"
        f"{table}\n"
    )


def _best_per_call(fn: Callable[[str], object], items: list[str], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


# -- wakeups: what handing work to another thread or process costs the caller -----------------


def section_wakeups(_work: Path, _seconds: int) -> str:
    """``SimpleQueue.put`` (the ledger hand-off) and ``socket.send`` on loopback TCP (what
    ``StreamWriter.write`` does under uvloop), each with the other side blocked waiting for
    it and with nobody waiting, as the caller's wall time per call."""
    n = 3000
    q: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    back: queue.SimpleQueue[int] = queue.SimpleQueue()

    def getter() -> None:
        while q.get() is not None:
            back.put(1)

    worker = threading.Thread(target=getter, daemon=True)
    worker.start()
    woke, idle = [], []
    clock = time.perf_counter_ns
    for i in range(n):
        time.sleep(0.0005)  # the getter is blocked in get() again
        t = clock()
        q.put(i)
        woke.append(clock() - t)
        back.get()
    q.put(None)
    worker.join()
    for i in range(n):
        t = clock()
        q.put(i)
        idle.append(clock() - t)
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent: list[int] = []

    def reader() -> None:
        while b.recv(65536):
            pass

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    for _ in range(n):
        time.sleep(0.0005)  # the reader is blocked in recv() again
        t = clock()
        a.send(b"x" * 100)
        sent.append(clock() - t)
    a.close()
    thread.join()
    b.close()
    rows = []
    for label, ns in (
        ("`SimpleQueue.put`, a thread blocked in `get()`", woke),
        ("`SimpleQueue.put`, nobody waiting", idle),
        ("`socket.send` of 100 bytes on loopback TCP, the peer blocked in `recv()`", sent),
    ):
        lat = Latency.of_ns(ns)
        rows.append([label, fmt_us(lat.p50_us), fmt_us(lat.p99_us)])
    table = markdown_table(["Call (caller's wall time)", "p50 µs", "p99 µs"], rows)
    return (
        "### Waking another thread or process (no load from the gateway)\n\n"
        f"{n:,} calls each, 0.5 ms apart so the other side is asleep again.\n\n{table}\n"
    )


# -- threads: /proc and py-spy ----------------------------------------------------------------


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """Per thread of ``pid``: CPU seconds (user + system), and seconds spent runnable but
    waiting for a CPU (the scheduler's run-queue wait, /proc/…/schedstat)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            waited = int((task / "schedstat").read_text().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
        out[int(task.name)] = ((int(fields[11]) + int(fields[12])) / tick, waited)
    return out


# Steps of the event loop thread, most specific first: a sample belongs to the first step
# one of whose frames is on its stack. Frames look like "Class.method (path/file.py:line)".
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("login: SCRAM and the connect decision", ("proctor/gateway/postgres/startup.py",)),
    ("risk baselines learn from each outcome (SQLite write)", ("RiskEngine.learn ",)),
    ("outcome event built (Session.outcome)", ("Session.outcome ",)),
    ("ledger hand-off to the writer thread", ("Appender.append_many_async ",)),
    ("ledger: event canonicalized on the loop (Ledger.stamp)", ("Ledger.",)),
    ("SQL analysis (pglast parse, walk, fingerprint)", ("Analyzer.analyze ",)),
    ("risk scoring (enrich + assess)", ("RiskEngine.enrich ", "RiskEngine.assess ")),
    ("Cedar policy decision (PolicyEngine.decide)", ("PolicyEngine.decide ",)),
    ("decision event built (Decider.event)", ("Decider.event ",)),
    ("request context (Session.context)", ("Session.context ",)),
    ("rest of Session.decide (statement added to the event)", ("Session.decide ",)),
    ("replies: matching answers, obligations (replies.py)", ("gateway/postgres/replies.py",)),
    ("protocol framing and codec (protocol.py)", ("gateway/postgres/protocol.py",)),
    ("background record tasks (proxy.py)", ("Connection._record ", "Connection._flush ")),
    (
        "asyncio streams and tasks (Python side)",
        ("asyncio/streams.py", "asyncio/tasks.py", "asyncio/locks.py", "asyncio/futures.py"),
    ),
    ("rest of the session pipeline (session.py)", ("gateway/postgres/session.py",)),
    ("rest of the connection shell (proxy.py)", ("gateway/postgres/proxy.py",)),
]
LOOP_ITSELF = "uvloop itself (callbacks, socket calls, in C)"


def classify(frames: list[str]) -> str:
    """The step a sampled stack belongs to."""
    for label, needles in STEPS:
        if any(n in f for f in frames for n in needles):
            return label
    if frames and "Runner.run " in frames[-1]:
        return LOOP_ITSELF
    return "other"


_THREAD = re.compile(r"thread \((0x[0-9a-f]+|\d+)\)(?::\s*(.*))?")


def read_pyspy(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    """py-spy's raw output: stacks (root first) and counts, per thread ("id: name")."""
    by_id: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    names: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        m = _THREAD.match(frames[0])
        tid = m.group(1) if m else frames[0]
        if m and m.group(2):  # py-spy does not always know the name
            names[tid] = m.group(2).strip()
        by_id[tid].append((frames[1:], int(count)))
    return {f"{tid}: {names.get(tid, '?')}": stacks for tid, stacks in by_id.items()}


def section_threads(work: Path, seconds: int) -> str:
    stack = Stack(work / "threads", check_tools())
    stack.start(with_pgbouncer=False)
    try:
        proctor = stack.targets["proctor"]
        pid = stack.proctor_pid
        run_pgbench(proctor, WORKLOAD, 2, work, "warm")
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        have_spy = Path(spy).exists()
        raw = work / "pyspy.txt"
        before = thread_cpu(pid)
        started = time.perf_counter()
        profiler = None
        if have_spy:
            # --nonblocking: sampling without stopping the process, so the hand-offs between
            # the event loop and the ledger writer are not disturbed.
            cmd = [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
            cmd += ["--threads", "--format", "raw", "-o", str(raw)]
            cmd += ["--duration", str(seconds)]
            profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run = run_pgbench(proctor, WORKLOAD, seconds, work, "threads")
        wall = time.perf_counter() - started
        after = thread_cpu(pid)
        if profiler is not None:
            profiler.wait(timeout=60)
    finally:
        stack.stop()
    statements = run.transactions
    samples = read_pyspy(raw) if have_spy and raw.exists() else {}
    names = _thread_names(samples, pid)
    used = {
        tid: tuple(a - b for a, b in zip(after[tid], before.get(tid, (0.0, 0.0)), strict=True))
        for tid in after
    }
    rows = []
    for tid in sorted(used, key=lambda t: used[t][0], reverse=True):
        cpu, waited = used[tid]
        if cpu <= 0:
            continue
        rows.append(
            [
                names.get(tid, f"thread {tid}"),
                f"{cpu:.2f}",
                f"{100 * cpu / wall:.0f}%",
                fmt_us(cpu / statements * 1e6),
                f"{waited:.2f}",
                f"{100 * waited / wall:.0f}%",
            ]
        )
    total = sum(u[0] for u in used.values())
    share = f"{100 * total / wall:.0f}%"
    rows.append(
        ["whole process", f"{total:.2f}", share, fmt_us(total / statements * 1e6), "-", "-"]
    )
    table = markdown_table(
        [
            "Thread",
            "CPU s",
            "of the wall time",
            "CPU µs/statement",
            "runnable, waiting for a CPU, s",
            "of the wall time",
        ],
        rows,
    )
    text = (
        f"### Threads of `proctor serve` under pgbench {WORKLOAD.label}\n\n"
        f"{run.transactions:,} statements in {wall:.1f} s ({run.tps:,.0f} TPS, "
        f"{run.failed} failed).\n\n{table}\n"
    )
    if not samples:
        return text + "\n(py-spy is not installed: no breakdown of the event loop thread.)\n"
    # py-spy counts a thread as busy while it runs and while it is runnable but preempted
    # (it is not in a waiting call then), so its shares are shares of both together.
    busy = sum(used.get(pid, (0.0, 0.0)))
    return text + _steps_from_samples(samples, busy / statements * 1e6)


def _thread_names(samples: dict[str, list[tuple[list[str], int]]], pid: int) -> dict[int, str]:
    """Thread ids to names where py-spy said them (its thread names carry the ids)."""
    names = {pid: "event loop (MainThread)"}
    for key in samples:
        m = re.match(r"(\d+): (.+)", key)
        if m and m.group(2):
            names[int(m.group(1))] = m.group(2)
    return names


def _steps_from_samples(samples: dict[str, list[tuple[list[str], int]]], busy_us: float) -> str:
    main = next((v for k, v in samples.items() if "MainThread" in k), [])
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in main:
        counts[classify(frames)] += n
        total += n
    if not total:
        return "\n(py-spy recorded no samples of the event loop thread.)\n"
    rows = [
        [label, f"{100 * n / total:.1f}%", fmt_us(busy_us * n / total)]
        for label, n in counts.most_common()
    ]
    table = markdown_table(
        ["Step (event loop thread)", "Share of samples", "≈ busy µs/statement"], rows
    )
    top = _top_functions(main, total)
    others = []
    for name, stacks in samples.items():
        if "MainThread" in name:
            continue
        n = sum(c for _, c in stacks)
        leaf: collections.Counter[str] = collections.Counter()
        for frames, c in stacks:
            leaf[_short(frames[-1]) if frames else "?"] += c
        common = ", ".join(f"{f} {100 * c / n:.0f}%" for f, c in leaf.most_common(4))
        others.append(f"- {name}: {n} samples; where: {common}")
    return (
        f"\npy-spy, {total:,} samples of the event loop thread while it was busy (idle samples\n"
        f"not counted). py-spy cannot tell running from runnable-but-preempted, so *busy* is\n"
        f"both: µs/statement is the share times the thread's CPU plus run-queue wait per\n"
        f"statement ({fmt_us(busy_us)} µs). A step that wakes another thread or process\n"
        f"(a queue put, a socket write) collects the samples of the moments the woken side\n"
        f"took the CPU from it.\n\n"
        f"{table}\n\nFunctions with the most samples of their own (event loop thread):\n\n"
        f"{top}\n\nOther threads (samples while not idle, by innermost function):\n\n"
        + "\n".join(others)
        + "\n"
    )


def _short(frame: str) -> str:
    return re.sub(r" \((?:.*/)?([^/]+):\d+\)$", r" (\1)", frame)


def _top_functions(stacks: list[tuple[list[str], int]], total: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        if frames:
            own[_short(frames[-1])] += n
    rows = [[f"`{f}`", f"{100 * n / total:.1f}%"] for f, n in own.most_common(15)]
    return markdown_table(["Function", "Own samples"], rows)


# -- the gateway in this process --------------------------------------------------------------


@contextmanager
def inprocess_gateway(work: Path) -> Iterator[tuple[Target, asyncio.AbstractEventLoop]]:
    """``proctor serve``'s gateway on a uvloop loop in a thread of this process."""
    runtime = open_runtime(load_config(write_proctor_config(work)))
    loop = uvloop.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        gw = Gateway(runtime)
        started["gateway"] = gw
        started["bound"] = loop.run_until_complete(gw.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, name="gateway-loop", daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield Target("proctor", started["bound"][0][1], BENCH_USER, BENCH_PASSWORD), loop
    finally:
        asyncio.run_coroutine_threadsafe(started["gateway"].close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        runtime.close()


class Timers:
    """CPU time per call of wrapped functions, on the thread that calls them."""

    def __init__(self) -> None:
        self.cpu_ns: dict[str, list[int]] = collections.defaultdict(list)
        self.awaits_ns: dict[str, list[int]] = collections.defaultdict(list)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        clock = time.thread_time_ns
        record = self.cpu_ns[label]

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = clock()
            try:
                return original(*args, **kwargs)
            finally:
                record.append(clock() - t)

        self._swap(owner, name, timed)

    def wrap_append(self) -> None:
        """Ledger.append_many_async: wall time awaited, split by what is recorded."""
        original = Ledger.append_many_async
        awaits = self.awaits_ns

        async def timed(ledger: Ledger, events: Any) -> int:
            t = time.perf_counter_ns()
            try:
                return await original(ledger, events)
            finally:
                kinds = {e.kind for e in events}
                label = "decision" if kinds == {"decision"} else "+".join(sorted(kinds))
                awaits[label].append(time.perf_counter_ns() - t)

        self._swap(Ledger, "append_many_async", timed)

    def wrap_handoff(self) -> None:
        """The ledger hand-off in two halves, for every asyncio append: from the request's
        creation to its result being posted by the writer thread (queue wait, hashing, the
        SQLite commit), and from then to the event loop running the callback that resolves
        it (the loop's wake-up and whatever it was busy with)."""
        created: dict[int, int] = {}
        posted: dict[int, int] = {}
        clock = time.perf_counter_ns
        queued, woken = self.awaits_ns["queued → durable"], self.awaits_ns["durable → on the loop"]
        init, post, settle = _LoopWaiter.__init__, _LoopWaiter.set_result, appender_module._settle

        def timed_init(waiter: Any, *args: Any) -> None:
            init(waiter, *args)
            created[id(waiter)] = clock()

        def timed_post(waiter: Any, value: Any) -> None:
            now = clock()
            posted[id(waiter)] = now
            queued.append(now - created.pop(id(waiter), now))
            post(waiter, value)

        def timed_settle(items: Any) -> None:
            now = clock()
            for waiter, _, _ in items:
                woken.append(now - posted.pop(id(waiter), now))
            settle(items)

        self._swap(_LoopWaiter, "__init__", timed_init)
        self._swap(_LoopWaiter, "set_result", timed_post)
        self._swap(appender_module, "_settle", timed_settle)

    def _swap(self, owner: Any, name: str, value: Any) -> None:
        """Put ``value`` in place of ``owner.name`` until :meth:`undo`."""
        original = getattr(owner, name)
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, original))

    def undo(self) -> None:
        for fn in reversed(self._undo):
            fn()


def section_steps(work: Path, seconds: int) -> str:
    timers = Timers()
    wrapped = [
        (Analyzer, "analyze", "Analyzer.analyze (pglast, cached by exact text)"),
        (Session, "context", "Session.context"),
        (Decider, "evaluate", "Decider.evaluate (all of the four below)"),
        (RiskEngine, "enrich", "  RiskEngine.enrich"),
        (RiskEngine, "assess", "  RiskEngine.assess"),
        (PolicyEngine, "decide", "  PolicyEngine.decide (Cedar)"),
        (Decider, "event", "  Decider.event"),
        (Ledger, "stamp", "Ledger.stamp (canonical bytes of one event)"),
        (Session, "outcome", "Session.outcome (event + baselines learn)"),
        (RiskEngine, "learn", "  RiskEngine.learn (SQLite transaction)"),
    ]
    for owner, name, label in wrapped:
        timers.wrap(owner, name, label)
    timers.wrap_append()
    timers.wrap_handoff()
    try:
        with inprocess_gateway(work / "steps") as (target, loop):
            run_pgbench(target, WORKLOAD, 2, work, "warm")
            for v in (*timers.cpu_ns.values(), *timers.awaits_ns.values()):
                v.clear()
            stop = threading.Event()
            lags: list[int] = []
            probe = asyncio.run_coroutine_threadsafe(_lag_probe(lags, stop), loop)
            run = run_pgbench(target, WORKLOAD, seconds, work, "steps")
            stop.set()
            probe.result(10)
    finally:
        timers.undo()
    statements = max(run.transactions, 1)
    rows = []
    for _, _, label in wrapped:
        calls = timers.cpu_ns[label]
        lat = Latency.of_ns(calls)
        rows.append(
            [
                label,
                f"{len(calls):,}",
                fmt_us(lat.p50_us),
                fmt_us(lat.p99_us),
                fmt_us(sum(calls) / statements / 1000),
            ]
        )
    table = markdown_table(
        ["Step (CPU time on the event loop thread)", "Calls", "p50 µs", "p99 µs", "µs/statement"],
        rows,
    )
    wait_rows = []
    for label, waits in sorted(timers.awaits_ns.items()):
        lat = Latency.of_ns(waits)
        wait_rows.append(
            [
                label if "→" in label else f"{label} events",
                f"{len(waits):,}",
                fmt_us(lat.p50_us),
                fmt_us(lat.p99_us),
                fmt_us(lat.max_us),
            ]
        )
    lag = Latency.of_ns(lags)
    wait_rows.append(
        [
            "event loop lag: a coroutine's next turn after it yields",
            f"{len(lags):,}",
            fmt_us(lag.p50_us),
            fmt_us(lag.p99_us),
            fmt_us(lag.max_us),
        ]
    )
    waits_table = markdown_table(
        ["Ledger appends: awaited for, or part", "Calls", "p50 µs", "p99 µs", "max µs"],
        wait_rows,
    )
    return (
        f"### Steps timed inside the gateway (pgbench {WORKLOAD.label})\n\n"
        f"The gateway in the profiling process (uvloop, as `proctor serve`), each step wrapped\n"
        f"in a timer of the calling thread's CPU time; {run.transactions:,} statements,\n"
        f"{run.tps:,.0f} TPS with the timers on. Nested steps are indented.\n\n{table}\n\n"
        f"What a statement waits for before it is forwarded: its decision's append (stamp,\n"
        f"hand-off to the writer thread, the SQLite commit at the default durability, the\n"
        f"wake-up). Outcome and session events are recorded in the background.\n\n"
        f"{waits_table}\n"
    )


def section_cprofile(work: Path, seconds: int) -> str:
    profile = cProfile.Profile()
    with inprocess_gateway(work / "cprofile") as (target, loop):
        run_pgbench(target, WORKLOAD, 2, work, "warm")
        asyncio.run_coroutine_threadsafe(_call(profile.enable), loop).result(10)
        run = run_pgbench(target, WORKLOAD, seconds, work, "cprofile")
        asyncio.run_coroutine_threadsafe(_call(profile.disable), loop).result(10)
    statements = max(run.transactions, 1)
    stats = pstats.Stats(profile, stream=io.StringIO())
    entries: list[tuple[str, int, float, float]] = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (path, line, func), (_, ncalls, tottime, cumtime, _) in raw.items():
        where = f"{Path(path).name}:{line}" if line else path
        entries.append((f"{func} ({where})", ncalls, tottime, cumtime))
    entries.sort(key=lambda e: e[2], reverse=True)
    total = sum(e[2] for e in entries)
    rows = [
        [
            f"`{name}`",
            f"{ncalls / statements:.2f}",
            fmt_us(tottime / statements * 1e6),
            fmt_us(cumtime / statements * 1e6),
            f"{100 * tottime / total:.1f}%",
        ]
        for name, ncalls, tottime, cumtime in entries[:25]
    ]
    table = markdown_table(
        ["Function", "calls/statement", "own µs/statement", "cumulative µs/statement", "own share"],
        rows,
    )
    return (
        f"### cProfile of the event loop thread (pgbench {WORKLOAD.label})\n\n"
        f"{run.transactions:,} statements, {run.tps:,.0f} TPS under cProfile (which slows\n"
        f"Python code several times; shares matter, not absolute µs).\n\n{table}\n"
    )


async def _lag_probe(out: list[int], stop: threading.Event) -> None:
    """Every 2 ms: how long until this coroutine runs again after yielding once (the work
    queued on the loop ahead of a task that was just woken)."""
    clock = time.perf_counter_ns
    while not stop.is_set():
        t = clock()
        await asyncio.sleep(0)
        out.append(clock() - t)
        await asyncio.sleep(0.002)


async def _call(fn: Callable[[], None]) -> None:
    fn()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--seconds", type=int, default=15, help="pgbench seconds per section")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = ap.parse_args(argv)
    sections = [x.strip() for x in args.only.split(",") if x.strip()]
    if not set(sections) <= set(SECTIONS):
        ap.error(f"unknown section in --only (of {', '.join(SECTIONS)})")
    work = OUT / time.strftime("profile-gateway-%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    try:
        prepare_database()
        for name in SECTIONS:
            if name not in sections:
                continue
            between_runs()
            log(f"section {name}: pgbench {WORKLOAD.label}, {args.seconds} s")
            fn = {
                "sql": section_sql,
                "wakeups": section_wakeups,
                "threads": section_threads,
                "steps": section_steps,
                "cprofile": section_cprofile,
            }
            print(fn[name](work, args.seconds), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
