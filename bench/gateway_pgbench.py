"""One pgbench run against one target, and what it measured.

pgbench's own summary gives transactions, failures and TPS (without the initial connection
time); its per-transaction log (``-l``) gives every transaction's latency, from which the
percentiles are taken. Log files are read and deleted after each run.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway_stack import PGBENCH, Target

STATEMENTS: Final = {"select-only": 1, "tpcb-like": 7}
"""Statements per transaction of pgbench's built-in scripts (tpcb-like: BEGIN, three
UPDATEs, a SELECT, an INSERT, END): each one is a decision and a ledger entry at Proctor."""


@dataclass(frozen=True)
class Workload:
    """A pgbench built-in script, a query protocol and a number of clients."""

    script: str  # "select-only" or "tpcb-like"
    protocol: str  # "simple", "extended" or "prepared"
    clients: int

    @property
    def jobs(self) -> int:
        """pgbench threads: two at most, the machine has two cores to share with the rest."""
        return min(self.clients, 2)

    @property
    def label(self) -> str:
        return f"{self.script}, {self.protocol}, {self.clients} clients"


@dataclass(frozen=True)
class Run:
    """What one pgbench run measured."""

    target: str
    workload: Workload
    seconds: int
    transactions: int
    failed: int
    tps: float
    connect_ms: float
    latencies_us: list[int]
    aborted: bool
    problem: str = ""


_PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")
_TPS = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")
_CONNECT = re.compile(r"initial connection time = ([\d.]+) ms")


def run_pgbench(target: Target, w: Workload, seconds: int, logs: Path, tag: str) -> Run:
    """Run pgbench for ``seconds`` against ``target``; parse its summary and its log."""
    prefix = logs / tag
    cmd = [PGBENCH, "-n", "-b", w.script, "-M", w.protocol, "-T", str(seconds)]
    cmd += ["-c", str(w.clients), "-j", str(w.jobs), "-l", "--log-prefix", str(prefix)]
    out = subprocess.run(
        cmd, env=target.env(), capture_output=True, text=True, check=False, timeout=seconds + 120
    )
    text = out.stdout + out.stderr

    def number(pattern: re.Pattern[str], default: float = 0.0) -> float:
        m = pattern.search(text)
        return float(m.group(1)) if m else default

    latencies, failed_in_log = _read_logs(prefix)
    aborted = out.returncode != 0
    problem = ""
    if aborted:
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        problem = " / ".join(lines[-3:])[:500]
    return Run(
        target=target.name,
        workload=w,
        seconds=seconds,
        transactions=int(number(_PROCESSED)),
        failed=max(int(number(_FAILED)), failed_in_log),
        tps=number(_TPS),
        connect_ms=number(_CONNECT),
        latencies_us=latencies,
        aborted=aborted,
        problem=problem,
    )


def _read_logs(prefix: Path) -> tuple[list[int], int]:
    """Latencies (µs) of every logged transaction, and how many were logged as failed.

    A log line is ``client_id transaction_no time script_no time_epoch time_us``, where
    ``time`` is the transaction's latency in µs, or ``failed``/``skipped``."""
    latencies: list[int] = []
    failed = 0
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        with path.open() as f:
            for line in f:
                parts = line.split(maxsplit=3)
                if len(parts) < 3:
                    continue
                if parts[2].isdigit():
                    latencies.append(int(parts[2]))
                elif parts[2] == "failed":
                    failed += 1
        path.unlink()
    return latencies, failed
