"""Shared pieces of the benchmarks: the workload, timing statistics, the machine, the report.

Nothing here measures anything by itself; ``bench_ledger.py`` does. The workload is one
realistic ``proctor.access/v1`` event (a failed login from examples/events.jsonl) whose id and
time are varied so every entry is distinct, in two forms: ``Event`` structs for the full
``Ledger.append`` path and pre-canonicalized bytes for the raw ``Appender`` path.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from proctor.events.canonical import canonical_bytes, canonicalize, decode_event
from proctor.events.ids import format_time
from proctor.events.schema import Event

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "events.jsonl"
BEGIN = "<!-- BEGIN FIGURES: written by bench/bench_ledger.py; edit outside these markers -->"
END = "<!-- END FIGURES -->"

# -- workload ---------------------------------------------------------------------------------


def _uuid7_text(ms: int, n: int) -> str:
    """A canonical UUIDv7 (RFC 9562 §5.7) for millisecond ``ms``, distinct for each ``n``."""
    return (
        f"{ms >> 16 & 0xFFFF_FFFF:08x}-{ms & 0xFFFF:04x}-7{n & 0xFFF:03x}"
        f"-{0x8000 | (n >> 48) & 0x3FFF:04x}-{n & 0xFFFF_FFFF_FFFF:012x}"  # variant 10xx
    )


class Workload:
    """Distinct ~600-byte events built from one example, as structs or canonical bytes.

    Entry ``n`` has time ``base + n`` microseconds and a UUIDv7 from that time with ``n`` in
    its random bits, so entries differ in exactly the fields a gateway varies.
    """

    def __init__(self, line: int = 14) -> None:
        raw = json.loads(EXAMPLES.read_text().splitlines()[line - 1])
        # A gateway without NTP and without extra attributes: the example shrinks to ~600 bytes.
        raw.pop("attributes", None)
        raw["clock"] = {"source": "system"}
        self.base = decode_event(json.dumps(raw))
        self.kind = self.base.kind
        self._base_ns = time.time_ns()
        self._prefixes: dict[int, str] = {}
        sample = canonical_bytes(self.base)
        # Split the canonical bytes around the id and time values; both are fixed-width
        # strings, so substituting new ones keeps the bytes canonical (checked below).
        head, sep, rest = sample.partition(f'"id":"{self.base.id}"'.encode())
        middle, sep2, tail = rest.partition(f'"time":"{self.base.time}"'.encode())
        if not sep or not sep2:
            raise RuntimeError("example event has no top-level id/time to vary")
        self._parts = (head + b'"id":"', b'"' + middle + b'"time":"', b'"' + tail)
        for n in (0, 1, 12345, 1 << 40):
            data = self.entry(n)
            if canonicalize(data) != data or canonical_bytes(self.event(n)) != data:
                raise RuntimeError("the substituted event is not canonical")
        self.size = len(sample)

    def _id_time(self, n: int) -> tuple[str, str]:
        ns = self._base_ns + n * 1000
        sec, frac = divmod(ns, 1_000_000_000)
        prefix = self._prefixes.get(sec)
        if prefix is None:
            prefix = self._prefixes[sec] = format_time(sec * 1_000_000_000)[:20]
        return _uuid7_text(ns // 1_000_000, n), f"{prefix}{frac:09d}Z"

    def entry(self, n: int) -> bytes:
        """Canonical bytes of event ``n`` (what the raw Appender path stores)."""
        eid, etime = self._id_time(n)
        a, b, c = self._parts
        return b"".join((a, eid.encode(), b, etime.encode(), c))

    def entries(self, start: int, count: int) -> list[bytes]:
        """Canonical bytes of events ``start .. start+count-1``."""
        return [self.entry(n) for n in range(start, start + count)]

    def event(self, n: int) -> Event:
        """Event ``n`` as a struct (what ``Ledger.append`` takes)."""
        eid, etime = self._id_time(n)
        return msgspec.structs.replace(self.base, id=eid, time=etime)

    def events(self, start: int, count: int) -> list[Event]:
        """Events ``start .. start+count-1``."""
        return [self.event(n) for n in range(start, start + count)]


def small_entries(start: int, count: int) -> list[bytes]:
    """Tiny distinct entries for the big proof ledger (proofs never read entry bytes)."""
    return [b'{"n":%d}' % n for n in range(start, start + count)]


def log(msg: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- statistics -------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass(frozen=True)
class Latency:
    """Median, 99th percentile and maximum of a set of timings, in microseconds."""

    p50_us: float
    p99_us: float
    max_us: float
    count: int

    @classmethod
    def of_ns(cls, timings_ns: Sequence[int]) -> Latency:
        """Summarize timings given in nanoseconds."""
        s = sorted(timings_ns)
        top = s[-1] / 1000 if s else float("nan")
        return cls(percentile(s, 0.5) / 1000, percentile(s, 0.99) / 1000, top, len(s))


def fmt_rate(x: float) -> str:
    """1234567.8 -> '1,234,568'."""
    return f"{x:,.0f}"


def fmt_us(x: float) -> str:
    """Microseconds with a sensible number of digits."""
    if math.isnan(x):
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def verdict(value: float, goal: float, *, higher_is_better: bool = True) -> str:
    """'meets' or 'below: N% of goal' (or 'N x goal' for latencies)."""
    if higher_is_better:
        return "meets" if value >= goal else f"**{100 * value / goal:.0f}% of goal**"
    return "meets" if value <= goal else f"**{value / goal:.2f}x the goal**"


_NUMBER = re.compile(r"-|[\d,.]+(–[\d,.]+)?x?( \(batch\))?")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned."""

    def numeric(i: int) -> bool:
        cells = [str(row[i]) for row in rows]
        return any(c[:1].isdigit() for c in cells) and all(_NUMBER.fullmatch(c) for c in cells)

    align = ["---:" if numeric(i) else "---" for i in range(len(header))]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]
    return "\n".join(lines)


# -- machine ----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _filesystem(path: Path) -> str:
    """Device and filesystem type of the mount holding ``path`` (longest mount prefix)."""
    best = ("", "unknown", "unknown")
    try:
        text = Path("/proc/mounts").read_text()
    except OSError:
        return "unknown"
    target = str(path.resolve())
    for line in text.splitlines():
        dev, mnt, fstype, *_ = line.split()
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):
            best = (mnt, dev, fstype)
    mnt, dev, fstype = best
    rotational = ""
    name = Path(dev).name
    for candidate in (name, name.rstrip("0123456789")):
        flag = Path(f"/sys/block/{candidate}/queue/rotational")
        if flag.exists():
            is_rot = flag.read_text().strip() == "1"
            rotational = f"; the kernel reports it {'rotational' if is_rot else 'non-rotational'}"
            break
    return f"{fstype} on {dev} (mounted at {mnt}{rotational})"


def _git(*args: str) -> str:
    """Output of a read-only git command ('' when git is unavailable)."""
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return ""
    return out.stdout.strip()


def _git_commit() -> str:
    """The commit measured, and which files under src/ differed from it."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [
        line.split(None, 1)[-1] for line in _git("status", "--porcelain", "--", "src").splitlines()
    ]
    return commit + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def machine_info(out_dir: Path) -> dict[str, str]:
    """Where the figures were measured."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "CPU": _cpu_model(),
        "cores": f"{cores} logical ({usable} usable by this process)",
        "RAM": _ram_gib(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite": sqlite3.sqlite_version,
        "msgspec": msgspec.__version__,
        "disk": _filesystem(out_dir),
        "commit": _git_commit(),
    }


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. '0.84 0.59 0.25'."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# -- the report -------------------------------------------------------------------------------


def update_doc(path: Path, figures: str, skeleton: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between the figure markers in ``path`` (created from ``skeleton``)."""
    text = path.read_text() if path.exists() else skeleton
    block = f"{begin}\n\n{figures.strip()}\n\n{end}"
    if begin in text and end in text:
        before = text.split(begin, 1)[0]
        after = text.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def disk_usage(db: Path) -> tuple[int, int, int, dict[str, int]]:
    """Entries, their bytes, the file's bytes with its WAL (after a truncating checkpoint),
    and the bytes of each table and index."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count, payload = con.execute("SELECT count(*), sum(length(data)) FROM entries").fetchone()
        try:
            rows = con.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
            per_table = {str(name): int(size) for name, size in rows}
        except sqlite3.DatabaseError:  # SQLite built without the dbstat table
            per_table = {}
    finally:
        con.close()
    total = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    return int(count), int(payload or 0), total, per_table


def chunks(start: int, stop: int, step: int) -> Iterator[tuple[int, int]]:
    """``(first, count)`` pairs covering ``start .. stop-1``."""
    for first in range(start, stop, step):
        yield first, min(step, stop - first)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (NaN for none)."""
    return statistics.fmean(values) if values else float("nan")


def run_header(
    script: str,
    *,
    quick: bool,
    took: float,
    loads: tuple[str, str],
    info: dict[str, str],
    caveat: str,
) -> str:
    """The opening of a figures section: when, by what, how long, how loaded, which machine."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = markdown_table(["", ""], [[k, v] for k, v in info.items()])
    return (
        f"Measured {when} by `.venv/bin/python bench/{script}"
        f"{' --quick' if quick else ''}` in {took / 60:.1f} min.\n\n"
        f"**The machine is shared and noisy**: other sessions run test suites on it at the same\n"
        f"time (load average {loads[0]} at the start, {loads[1]} at the end; 1/5/15 min){caveat}"
        f"\n\n{machine}\n"
    )
