"""Sharing the scan of a ledger's tiles (``verify_scan``) between this process and workers.

Verification costs ~2 SHA-256 per entry, and CPython's hashlib holds the GIL for inputs under
2 KiB (entries are ~600 bytes), so threads do not help: big ledgers are shared out to worker
*processes*. They are plain subprocesses running ``verify_scan``, not ``multiprocessing``
ones: 'fork' copies a process that may have other threads holding locks (Rich's refresh
thread, a server's) and open SQLite connections, which SQLite says must not cross a fork;
'spawn' and 'forkserver' import the caller's ``__main__`` again in every worker (~0.5 s for
the CLI; a script without a ``__main__`` guard would run again). A subprocess imports only
``verify_scan``, opens the database read-only by itself, reads tasks on stdin and answers on
stdout. It exits when stdin closes, so it cannot outlive its parent while idle (and once busy,
at its next answer), and the parent kills it on any error or interrupt.

This process scans from the first chunk on and the workers from the last one back, so the
in-order pass here never waits for a worker to start; whoever runs out of work takes over the
chunks a worker has queued but not begun, and a worker that dies leaves its chunks to this
process. Results never depend on who scanned what.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing import connection
from pathlib import Path
from types import TracebackType
from typing import IO

from proctor.ledger import verify_scan
from proctor.ledger.verify_scan import TILE_WIDTH, Chunk, Scanner, decode, encode

__all__ = ["MAX_WORKERS", "Scan", "default_workers"]

MAX_WORKERS = 8  # SQLite reads and the in-order pass here stop scaling before this
CHUNK_TILES = 32  # 8,192 entries (~20 ms): small enough to share out evenly at the end
_DEPTH = 2  # tasks queued per worker, so it never waits for this process between two
_ROOT = str(Path(verify_scan.__file__).resolve().parents[2])  # holds the proctor package


def default_workers() -> int:
    """Processes to hash with: the CPUs this process may run on, at most ``MAX_WORKERS``."""
    try:
        cpus = len(os.sched_getaffinity(0))  # honours taskset and cgroup cpusets
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def _read_exactly(fd: int, n: int) -> bytes | None:
    """``n`` bytes from a pipe, or None at end of file."""
    buf = b""
    while len(buf) < n:
        got = os.read(fd, n - len(buf))
        if not got:
            return None
        buf += got
    return buf


class _Worker:
    """One worker subprocess and the chunks sent to it that it has not answered yet."""

    def __init__(self, uri: str, size: int, floor: int) -> None:
        env = dict(os.environ)
        # Import this very package, whatever the caller did to sys.path to find it; -S skips
        # site-packages (nothing there is needed) and -P the current directory, either of
        # which could also shadow it.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            [sys.executable, "-S", "-P", "-m", verify_scan.__name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            start_new_session=True,  # out of the terminal's process group: Ctrl-C is ours
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self.out = self._out.fileno()
        self.tasks: list[int] = []  # chunk numbers, in the order sent (and answered)
        self.alive = self._send(encode((uri, size, floor)))

    def _send(self, frame: bytes) -> bool:
        try:
            self._in.write(frame)  # a blocking pipe: the whole frame (they are small)
        except OSError:
            return False
        return True

    def ask(self, n: int, first: int, end: int, cuts: list[int]) -> None:
        """Send chunk ``n`` (tiles [first, end)) to scan."""
        self.alive = self.alive and self._send(encode((first, end, cuts)))
        if self.alive:
            self.tasks.append(n)

    def answer(self) -> Chunk | None:
        """The next answer (blocks until it is complete); None when the worker is gone."""
        head = _read_exactly(self.out, 4)
        body = None if head is None else _read_exactly(self.out, int.from_bytes(head, "big"))
        if body is None:
            return None
        try:
            return Chunk.from_plain(decode(body))
        except (ValueError, TypeError, EOFError):
            return None

    def close(self, *, kill: bool) -> None:
        """Close its stdin, so it exits once idle; kill it when asked or when it has work left."""
        with contextlib.suppress(OSError):
            self._in.close()
        if kill or self.tasks:
            self.proc.kill()

    def reap(self) -> None:
        """Wait for it to exit (kill it if it does not)."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


class Scan:
    """Every level-0 tile of a ledger of ``size`` entries scanned, chunks yielded in order.

    ``workers`` counts the processes that hash, this one included; entries below ``floor`` are
    pruned (their stored leaf hashes stand for them). Use it as a context manager: leaving it
    stops the workers, and kills them when leaving by an exception.
    """

    def __init__(
        self, path: Path, size: int, cuts: Sequence[int], workers: int = 1, floor: int = 0
    ) -> None:
        tiles = -(-size // TILE_WIDTH)
        step = max(1, min(CHUNK_TILES, tiles // (4 * max(1, workers))))
        self._plan = [(f, min(f + step, tiles)) for f in range(0, tiles, step)]
        self._cuts = sorted({c for c in cuts if 0 < c <= size and c % TILE_WIDTH})
        self._uri = f"{path.resolve().as_uri()}?mode=ro"
        self._size = size
        self._floor = floor
        self._want = max(0, min(workers - 1, len(self._plan) - 1))
        self._workers: list[_Worker] = []
        self._done: dict[int, Chunk] = {}  # scanned, not yielded yet
        self._todo: deque[int] = deque(range(len(self._plan)))  # not handed out, ascending
        self._next = 0  # the chunk to yield next
        self._local: Scanner | None = None
        #: Entries scanned so far, by any process (chunks come out in order, not this).
        self.scanned = 0

    def __enter__(self) -> Scan:
        self._local = Scanner(self._uri, self._size, self._floor)
        try:
            for _ in range(self._want):
                self._workers.append(_Worker(self._uri, self._size, self._floor))
        except OSError:
            pass  # cannot start one (no executable, no processes left): scan here
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._hand_out()  # before any work here: the workers start up meanwhile
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for w in self._workers:
            w.close(kill=exc_type is not None)
        for w in self._workers:  # all told first, then waited for: they exit side by side
            w.reap()
        self._workers.clear()
        if self._local is not None:
            self._local.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers running (this process not included)."""
        return [w.proc.pid for w in self._workers]

    def negative_rows(self) -> int:
        """Rows at negative indexes: never appended, outside every tile, but stored."""
        assert self._local is not None, "Scan is used outside its with block"
        return self._local.rows_below(0)

    def chunks(self) -> Iterator[Chunk]:
        """Every chunk, in tile order."""
        assert self._local is not None, "Scan is used outside its with block"
        while self._next < len(self._plan):
            self._collect(wait=False)
            self._hand_out()
            n = self._pick()
            if n is not None:
                first, end = self._plan[n]
                self._record(n, self._local.scan(first, end, self._cuts_in(n)))
            elif self._next not in self._done:
                self._collect(wait=True)
            while self._next in self._done:
                yield self._done.pop(self._next)
                self._next += 1

    def _cuts_in(self, n: int) -> list[int]:
        lo, hi = (x * TILE_WIDTH for x in self._plan[n])
        return self._cuts[bisect.bisect_right(self._cuts, lo) : bisect.bisect_right(self._cuts, hi)]

    def _record(self, n: int, chunk: Chunk) -> None:
        if n >= self._next and n not in self._done:  # else a duplicate of a chunk taken over
            self._done[n] = chunk
            first, end = self._plan[n]
            self.scanned += min(end * TILE_WIDTH, self._size) - first * TILE_WIDTH

    def _pick(self) -> int | None:
        """The chunk to scan here: the first one not handed out, else one a worker has queued
        but not begun (a worker takes its tasks in order: all but the first are waiting)."""
        if self._todo:
            return self._todo.popleft()
        waiting = [
            n for w in self._workers for n in w.tasks[1:] if n >= self._next and n not in self._done
        ]
        if waiting:
            return min(waiting)
        if not any(w.tasks for w in self._workers) and self._next not in self._done:
            return self._next  # nobody has it (cannot happen, but never wait for nothing)
        return None

    def _hand_out(self) -> None:
        """Keep each worker ``_DEPTH`` tasks ahead, taken from the end."""
        for w in list(self._workers):
            while self._todo and len(w.tasks) < _DEPTH:
                n = self._todo.pop()
                w.ask(n, *self._plan[n], self._cuts_in(n))
                if not w.alive:
                    self._todo.append(n)
                    self._lost(w)
                    break

    def _collect(self, *, wait: bool) -> None:
        """Take the answers that are ready (or wait for one)."""
        busy = {w.out: w for w in self._workers if w.tasks}
        if not busy:
            return
        # poll(2) underneath, unlike select(2) fine with descriptors past 1023 (a busy server).
        for fd in connection.wait(list(busy), None if wait else 0):
            w = busy[fd]  # type: ignore[index]  # wait() returns the objects given: ints
            chunk = w.answer()
            if chunk is None or (chunk.first, chunk.end) != self._plan[w.tasks[0]]:
                self._lost(w)
                continue
            self._record(w.tasks.pop(0), chunk)

    def _lost(self, w: _Worker) -> None:
        """A worker died or broke the protocol: its chunks are scanned here instead."""
        lost = [n for n in w.tasks if n >= self._next and n not in self._done]
        self._todo = deque(sorted({*self._todo, *lost}))
        w.tasks.clear()
        w.close(kill=True)
        w.reap()
        self._workers.remove(w)
