"""Name what happened to entries whose hashes differ from the leaf hashes stored at append time.

Each stored entry's hash is looked up among the stored leaf hashes near it. Not found: the
entry was modified (or is foreign). Found at another index: it moved, and the displacement
says how. A run moved down by ``d`` means ``d`` entries before it were removed and the rest
renumbered; a run of foreign entries followed by a run moved up by their count means they
were inserted; entries that trade places were reordered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from proctor.ledger.merkle import HASH_SIZE
from proctor.ledger.store import SqliteStore
from proctor.ledger.tiles import TILE_WIDTH

if TYPE_CHECKING:
    from proctor.ledger.verify import Report

__all__ = ["classify_mismatches"]

WINDOW = 4096  # how far (in entries) a moved entry is looked for


def _reference(store: SqliteStore, lo: int, hi: int) -> dict[bytes, int]:
    """Stored leaf hash -> index for indexes in [lo, hi)."""
    out: dict[bytes, int] = {}
    for t in range(lo // TILE_WIDTH, (hi - 1) // TILE_WIDTH + 1):
        data = store.read_tile(0, t) or b""
        for k in range(len(data) // HASH_SIZE):
            i = t * TILE_WIDTH + k
            if lo <= i < hi:
                out.setdefault(data[k * HASH_SIZE : (k + 1) * HASH_SIZE], i)
    return out


def classify_mismatches(
    mismatches: list[tuple[int, bytes]], store: SqliteStore, tile_size: int, report: Report
) -> None:
    """Turn ``(index, computed leaf)`` mismatches into findings with index ranges."""
    if not mismatches:
        return
    # Where did each mismatched entry come from? (None: nowhere nearby = modified)
    moves: list[tuple[int, int | None]] = []
    cache_lo, cache_hi, ref = -1, -1, dict[bytes, int]()
    for idx, leaf in mismatches:
        if max(0, idx - WINDOW) < cache_lo or min(tile_size, idx + WINDOW) > cache_hi:
            cache_lo = max(0, idx - WINDOW)
            cache_hi = min(tile_size, idx + 4 * WINDOW)
            ref = _reference(store, cache_lo, cache_hi)
        moves.append((idx, ref.get(leaf)))

    # Entries that trade places form cycles (i holds j's entry, j holds i's): reordered.
    source = {idx: src for idx, src in moves if src is not None}
    in_cycle: set[int] = set()
    for start, first_src in source.items():
        if start in in_cycle:
            continue
        path, p = [start], first_src
        while p in source and p != start and len(path) <= len(source):
            path.append(p)
            p = source[p]
        if p == start:
            in_cycle.update(path)
    if in_cycle:
        _report_ranges(report, sorted(in_cycle), "reordered-entries", "stored out of order")

    # Runs of consecutive indexes with the same displacement (None: modified or foreign).
    runs: list[tuple[int, int, int | None]] = []  # (first, last, displacement)
    for idx, src in moves:
        if idx in in_cycle:
            continue
        d = None if src is None else src - idx
        if runs and runs[-1][1] == idx - 1 and runs[-1][2] == d:
            runs[-1] = (runs[-1][0], idx, d)
        else:
            runs.append((idx, idx, d))

    i = 0
    while i < len(runs):
        first, last, d = runs[i]
        nxt = runs[i + 1] if i + 1 < len(runs) else None
        count = last - first + 1
        if d is None and nxt is not None and nxt[0] == last + 1 and nxt[2] == -count:
            report.add(
                "inserted-entry",
                first,
                last,
                f"{count} entries inserted; the {nxt[1] - nxt[0] + 1} after them "
                f"were renumbered up by {count}",
            )
            i += 2
            continue
        if d is None and first >= tile_size:
            report.add(
                "inserted-entry",
                first,
                last,
                f"{count} entries were never appended through the ledger (no leaf hash)",
            )
        elif d is None:
            report.add("modified-entry", first, last, f"{count} entries differ from their leaf")
        elif d > 0:
            report.add(
                "missing-entry",
                first,
                first + d - 1,
                f"{d} entries removed; the {count} after them were renumbered down by {d}",
            )
        else:
            report.add(
                "reordered-entries",
                first,
                last,
                f"{count} entries stored {-d} places after where they were appended",
            )
        i += 1


def _report_ranges(
    report: Report, indexes: list[int], kind: Literal["reordered-entries"], what: str
) -> None:
    """One finding per run of consecutive indexes."""
    first = prev = indexes[0]
    for idx in [*indexes[1:], None]:
        if idx is not None and idx == prev + 1:
            prev = idx
            continue
        report.add(kind, first, prev, f"{prev - first + 1} entries {what}")
        if idx is not None:
            first = prev = idx
