"""Forward ledger events to a syslog receiver over TCP or TLS, at least once, in ledger order.

The pieces: :class:`Backoff` (pure: the delay before attempt *n*), :class:`Cursor` and its
state file (where to resume), and :class:`Forwarder`, the asyncio shell that reads entries in
batches (in a worker thread), formats them as RFC 5424 messages in RFC 6587 octet-counting
frames (``syslog``), writes them and records progress.

Delivery is **at least once**. Syslog over TCP (RFC 6587) and TLS (RFC 5425) has no
acknowledgement: bytes the kernel accepted can still be lost when a connection drops, in our
send queue or in the receiver's socket buffer. So after each batch is flushed to the socket
the cursor is written (atomically: temporary file, fsync, rename), and every new connection
(a reconnect or a restart) starts ``replay_bytes`` of messages *before* that cursor. Events
therefore arrive in ledger order on each connection and may arrive twice across a reconnect
(receivers can drop duplicates by the event ``id`` or ledger ``index`` in the structured data);
an event is lost only if more than ``replay_bytes`` were in flight when a connection broke.

Nothing is dropped silently: an entry that cannot be formatted (not a valid event, larger than
the receiver allows), an untrusted TLS certificate, a state file of another ledger, or running
out of retries stops the forwarder with a :class:`ForwardError` that names the ledger index to
resume from. Indexes with no stored entry (a damaged ledger) are reported, not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from proctor.errors import EventError, InputError, ProctorError, StorageError, UsageError
from proctor.events.canonical import decode_event
from proctor.exports.syslog import SyslogConfig, format_message, frame
from proctor.ledger.ledger import Ledger

__all__ = [
    "Backoff",
    "Cursor",
    "ForwardError",
    "ForwardResult",
    "Forwarder",
    "ForwarderConfig",
    "load_cursor",
    "save_cursor",
]

log = logging.getLogger(__name__)

STATE_VERSION: Final = 1


class ForwardError(InputError):
    """Forwarding stopped for good; ``next_index`` is the first event not known delivered."""

    def __init__(self, message: str, next_index: int) -> None:
        super().__init__(f"{message} (stopped; resume at ledger index {next_index})")
        self.next_index = next_index


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential back-off with jitter, capped: the wait before reconnect attempt ``n``."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    """Fraction of each delay drawn at random (0: none; 1: anywhere from 0 to the delay)."""

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise UsageError("back-off needs 0 < initial <= maximum")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise UsageError("back-off needs multiplier >= 1 and 0 <= jitter <= 1")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempt`` (1 for the first retry)."""
        exponent = min(max(attempt - 1, 0), 64)  # no float overflow on a long outage
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        return base * (1 - self.jitter * rand())


@dataclass(frozen=True)
class Cursor:
    """Progress: ``next`` was flushed up to; a new connection starts at ``resume`` (<= next)."""

    next: int
    resume: int


def load_cursor(path: Path, *, origin: str, destination: str) -> Cursor | None:
    """The saved cursor, None when there is no state file; refuse another ledger's or target's."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read forwarder state {path}: {exc.strerror}") from None
    try:
        state = json.loads(text)
        version, nxt, resume = state["version"], state["next"], state["resume"]
        saved_origin, saved_dest = state["origin"], state["destination"]
    except (ValueError, KeyError, TypeError):
        raise StorageError(f"forwarder state {path} is not a Proctor cursor file") from None
    if version != STATE_VERSION or not (
        isinstance(nxt, int) and isinstance(resume, int) and 0 <= resume <= nxt
    ):
        raise StorageError(f"forwarder state {path} is garbled: {text[:200]!r}")
    if saved_origin != origin or saved_dest != destination:
        raise UsageError(
            f"forwarder state {path} belongs to ledger {saved_origin!r} sending to "
            f"{saved_dest!r}, not {origin!r} to {destination!r}: pass another --state"
        )
    return Cursor(nxt, resume)


def save_cursor(path: Path, cursor: Cursor, *, origin: str, destination: str) -> None:
    """Replace the state file atomically: a crash leaves the old cursor or the new one."""
    state = {
        "version": STATE_VERSION,
        "origin": origin,
        "destination": destination,
        "next": cursor.next,
        "resume": cursor.resume,
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps(state) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StorageError(f"cannot write forwarder state {path}: {exc.strerror}") from None


@dataclass(frozen=True, kw_only=True)
class ForwarderConfig:
    """Where to send, how to frame, how hard to try. Limits are explicit, none are hidden."""

    host: str
    port: int
    state_path: Path
    ssl: ssl.SSLContext | None = None
    """TLS (RFC 5425) when set; the server name checked is ``server_hostname`` or ``host``."""
    server_hostname: str | None = None
    syslog: SyslogConfig = field(default_factory=SyslogConfig)
    start: int = 0
    """Where to start when there is no state file yet."""
    stop_at: int | None = None
    """Stop before this index (None: the end of the ledger, or never with ``follow``)."""
    follow: bool = True
    """Keep waiting for new entries at the end of the ledger (like ``tail -f``)."""
    poll_interval: float = 1.0
    batch_events: int = 512
    batch_bytes: int = 256 * 1024
    replay_bytes: int = 8 * 1024 * 1024
    """Resent before the cursor on every new connection: more than can be lost in flight
    (our socket send buffer plus the receiver's receive buffer)."""
    send_buffer: int | None = 256 * 1024
    """SO_SNDBUF for the connection: bounds what the kernel holds unsent (None: the OS's)."""
    connect_timeout: float = 10.0
    write_timeout: float = 30.0
    backoff: Backoff = field(default_factory=Backoff)
    max_retries: int | None = None
    """Consecutive failed attempts before giving up (None: keep trying)."""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise UsageError(f"port must be 1-65535, not {self.port}")
        if self.batch_events < 1 or self.batch_bytes < 1 or self.replay_bytes < 0:
            raise UsageError("batch sizes must be positive and replay_bytes not negative")
        if self.max_retries is not None and self.max_retries < 0:
            raise UsageError("max_retries must be 0 or more")

    @property
    def destination(self) -> str:
        """``host:port`` (``[v6]:port``), as recorded in the state file."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass
class ForwardResult:
    """How a forwarder run ended (cleanly: at the end of the ledger, or when stopped)."""

    next_index: int
    sent: int = 0
    """Messages written, replays included."""
    reconnects: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)
    """(first, last) runs of indexes with no stored entry, skipped."""


@dataclass
class _Batch:
    """Framed messages for entries ``first <= index < end`` (and why it stopped early)."""

    first: int
    end: int
    data: bytes
    count: int
    missing: list[tuple[int, int]]
    error: ProctorError | None = None


class _ConnectionLost(Exception):
    """The receiver closed or the write failed; reconnect."""


class Forwarder:
    """Streams ledger entries to one receiver; :meth:`run` until done, :meth:`stop` to end."""

    def __init__(
        self,
        ledger: Ledger,
        config: ForwarderConfig,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self._rand = rand
        self._stop = asyncio.Event()
        self._window: deque[tuple[int, int]] = deque()  # (first index, bytes) of recent batches
        self._window_bytes = 0
        self.result = ForwardResult(next_index=config.start)
        self.cursor = Cursor(config.start, config.start)

    def stop(self) -> None:
        """Finish the batch in flight, save the cursor, close (safe from a signal handler)."""
        self._stop.set()

    async def run(self) -> ForwardResult:
        """Forward until the end (without ``follow``) or :meth:`stop`; raise ``ForwardError``."""
        cfg = self.config
        saved = load_cursor(cfg.state_path, origin=self.ledger.origin, destination=cfg.destination)
        if saved is not None:
            self.cursor = saved
        self.result.next_index = self.cursor.next
        failures = 0
        while not self._stop.is_set():
            try:
                reader, writer = await self._connect()
            except ssl.SSLCertVerificationError as exc:
                raise ForwardError(
                    f"TLS certificate of {cfg.destination} not trusted: {exc.verify_message}",
                    self.cursor.next,
                ) from None
            except (OSError, TimeoutError) as exc:
                failures += 1
                await self._wait_before_retry(failures, f"cannot connect: {_describe(exc)}")
                continue
            try:
                await self._pump(reader, writer)
                break  # the end of the ledger (without follow), or stop()
            except ForwardError:
                raise
            except ProctorError as exc:  # the ledger or the state file failed: stop, say where
                raise ForwardError(str(exc), self.cursor.next) from None
            except (_ConnectionLost, OSError, TimeoutError) as exc:
                failures = 0 if self._window else failures + 1  # progress resets the count
                self.result.reconnects += 1
                await self._wait_before_retry(max(failures, 1), f"connection lost: {exc}")
            finally:
                await _close(writer)
        self.result.next_index = self.cursor.next
        return self.result

    # -- connection -------------------------------------------------------------------------

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        cfg = self.config
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                cfg.host,
                cfg.port,
                ssl=cfg.ssl,
                server_hostname=(cfg.server_hostname or cfg.host) if cfg.ssl else None,
            ),
            cfg.connect_timeout,
        )
        # drain() then waits until every byte is in the kernel, not merely below 64 KiB.
        writer.transport.set_write_buffer_limits(high=0)
        sock = writer.get_extra_info("socket")
        if cfg.send_buffer is not None and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.send_buffer)
        log.info("connected to %s", cfg.destination)
        return reader, writer

    async def _wait_before_retry(self, failures: int, why: str) -> None:
        cfg = self.config
        if cfg.max_retries is not None and failures > cfg.max_retries:
            raise ForwardError(
                f"{cfg.destination}: {why}; gave up after {cfg.max_retries} retries",
                self.cursor.next,
            )
        delay = cfg.backoff.delay(failures, self._rand)
        log.warning("%s: %s; retry %d in %.2fs", cfg.destination, why, failures, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    # -- the pump ---------------------------------------------------------------------------

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send from the cursor's resume point until finished; raise when the link breaks."""
        cfg = self.config
        self._window.clear()
        self._window_bytes = 0
        index = self.cursor.resume
        # A syslog receiver sends nothing; a pending read notices when it closes while we idle.
        eof: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(4096))
        try:
            while not self._stop.is_set():
                if eof.done():
                    if not eof.result():  # b"" is the receiver's close; an error raises here
                        raise _ConnectionLost("the receiver closed the connection")
                    eof = asyncio.ensure_future(reader.read(4096))  # unexpected data: ignore
                size = await asyncio.to_thread(self.ledger.size)
                end = size if cfg.stop_at is None else min(size, cfg.stop_at)
                if index >= end:
                    if not cfg.follow or (cfg.stop_at is not None and index >= cfg.stop_at):
                        return
                    stop = asyncio.ensure_future(self._stop.wait())
                    await asyncio.wait(
                        (eof, stop), timeout=cfg.poll_interval, return_when=asyncio.FIRST_COMPLETED
                    )
                    stop.cancel()
                    continue
                batch = await asyncio.to_thread(self._prepare, index, end)
                if batch.data:
                    writer.write(batch.data)
                    try:
                        await asyncio.wait_for(writer.drain(), cfg.write_timeout)
                    except TimeoutError:
                        raise _ConnectionLost(
                            f"no progress writing for {cfg.write_timeout}s"
                        ) from None
                    self.result.sent += batch.count
                self._flushed(batch)
                index = batch.end
                if batch.error is not None:
                    raise ForwardError(f"ledger entry {batch.end}: {batch.error}", batch.end)
        finally:
            eof.cancel()

    def _prepare(self, start: int, end: int) -> _Batch:
        """Read and frame up to a batch of entries (runs in a worker thread)."""
        cfg = self.config
        limit = min(end, start + cfg.batch_events)
        parts: list[bytes] = []
        size = 0
        expected = start
        missing: list[tuple[int, int]] = []
        batch = _Batch(start, start, b"", 0, missing)
        for index, raw in self.ledger.entries(start, limit):
            if index != expected:
                missing.append((expected, index - 1))
            try:
                message = format_message(decode_event(raw), raw, cfg.syslog, index=index)
            except (EventError, UsageError) as exc:
                batch.error = exc
                batch.end = index
                break
            parts.append(frame(message))
            size += len(parts[-1])
            expected = batch.end = index + 1
            if size >= cfg.batch_bytes:
                break
        else:
            if expected < limit:  # trailing indexes with no stored entry
                missing.append((expected, limit - 1))
                batch.end = limit
        batch.data = b"".join(parts)
        batch.count = len(parts)
        return batch

    def _flushed(self, batch: _Batch) -> None:
        """Record a batch the socket took: advance and save the cursor, slide the replay window."""
        cfg = self.config
        if batch.missing:
            for first, last in batch.missing:
                log.warning("ledger indexes %d..%d have no stored entry: skipped", first, last)
            self.result.missing.extend(
                m for m in batch.missing if not self.result.missing or m > self.result.missing[-1]
            )
        if batch.end == batch.first:
            return
        self._window.append((batch.first, len(batch.data)))
        self._window_bytes += len(batch.data)
        while self._window and self._window_bytes - self._window[0][1] >= cfg.replay_bytes:
            self._window_bytes -= self._window.popleft()[1]
        nxt = max(self.cursor.next, batch.end)
        if not self._window:
            resume = nxt
        elif self._window_bytes >= cfg.replay_bytes:
            resume = max(self.cursor.resume, self._window[0][0])
        else:
            resume = self.cursor.resume
        self.cursor = Cursor(nxt, min(resume, nxt))
        save_cursor(
            cfg.state_path, self.cursor, origin=self.ledger.origin, destination=cfg.destination
        )
        self.result.next_index = nxt


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 5)
