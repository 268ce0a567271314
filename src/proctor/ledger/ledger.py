"""A ledger directory: the one object the rest of Proctor appends to and proves from.

Layout of ``DIR``::

    ledger.sqlite    entries, tiles, checkpoints (SQLite, WAL)
    verifier.vkey    the verifier key, NAME+KEYID+BASE64 (public; give it to auditors)
    signer.key       the signer key, mode 0600, unless kept elsewhere (--signer-key)
    ledger.lock      held by the one process that writes

The log's origin (the first line of every checkpoint) is the signer key's name, as the
C2SP specs recommend, so a verifier key alone says which log a checkpoint belongs to.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import os
import stat
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import IO

import msgspec

from proctor.errors import PrunedError, StorageError, UsageError
from proctor.events.canonical import canonical_bytes
from proctor.events.clock import ClockSource
from proctor.events.ids import parse_time
from proctor.events.schema import Event
from proctor.ledger.appender import Appender, AppenderConfig
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.merkle import consistency_proof, inclusion_proof
from proctor.ledger.note import Signer, Verifier
from proctor.ledger.receipt import Receipt
from proctor.ledger.store import Durability, Prune, SqliteStore
from proctor.ledger.tiles import DEFAULT_CACHE_TILES, TileCache, TileHasher

__all__ = [
    "DB_NAME",
    "SKEY_NAME",
    "Ledger",
    "key_file_stem",
    "load_signer",
    "load_verifier",
    "write_key_pair",
    "write_secret",
]

DB_NAME = "ledger.sqlite"
VKEY_NAME = "verifier.vkey"
SKEY_NAME = "signer.key"
LOCK_NAME = "ledger.lock"
TIME_SKEW_FLAG = "time_skew"
ENTRIES_CHUNK = 4096  # rows read per hold of the read lock by Ledger.entries
SWEEP_ROWS = 8192  # pruned bodies deleted per writer transaction (appends wait meanwhile)


def write_key_pair(signer: Signer, directory: Path) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0600, never overwritten) and ``NAME.vkey`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = key_file_stem(signer.name)
    skey = directory / f"{stem}.key"
    vkey = directory / f"{stem}.vkey"
    write_secret(skey, signer.skey + "\n")
    vkey.write_text(signer.verifier.vkey + "\n")
    return skey, vkey


def key_file_stem(name: str) -> str:
    """A file name for a key name (key names may hold '/', as origins do)."""
    return name.replace("/", "-")


def write_secret(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)


def load_signer(path: Path) -> Signer:
    """Read a signer key file; refuse one that others can read (like ssh does)."""
    try:
        st = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read signer key {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"signer key {path} is readable by others; chmod 600 it")
    return Signer.from_skey(text)


def load_verifier(path: Path) -> Verifier:
    """Read a verifier key file (``NAME+KEYID+BASE64``)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read verifier key {path}: {exc.strerror}") from None
    return Verifier.from_vkey(text)


class Ledger:
    """An open ledger directory. Reading is always allowed; appending needs the signer key."""

    def __init__(
        self,
        directory: Path,
        *,
        signer: Signer | None = None,
        durability: Durability = "os",
        config: AppenderConfig | None = None,
        max_time_skew_ms: int = 300_000,
        clock: ClockSource | None = None,
        cache_tiles: int = DEFAULT_CACHE_TILES,
        sealer: Callable[[Event], Event] | None = None,
    ) -> None:
        """Open the ledger in ``directory``; with ``signer``, also for appending.

        ``cache_tiles`` bounds the full tiles whose hashes proofs keep (~16 KiB each; 0 keeps
        none): see ``TileCache``. ``sealer`` turns each event into the form stored (personal
        fields encrypted under their subject's key: proctor.privacy) before it is hashed.
        """
        self.directory = directory
        self.sealer = sealer
        db = directory / DB_NAME
        if not db.exists():
            raise UsageError(f"no ledger in {directory} (create one with: proctor ledger init)")
        self._reader = SqliteStore(db, readonly=True)
        self._read_lock = threading.Lock()
        # Shared by every TileHasher over self._reader: full tiles never change (TileCache).
        self._tile_cache = TileCache(cache_tiles)
        # The last checkpoint note whose signature was verified, and what it says. A note is
        # immutable text; the same bytes verified with the same key and origin (both fixed for
        # this object) give the same result, so an exact string match is the invalidation.
        self._opened: tuple[str, Checkpoint] | None = None
        origin = self._reader.get_meta("origin")
        vkey = self._reader.get_meta("vkey")
        if origin is None or vkey is None:
            raise StorageError(f"{db} has no origin or verifier key: not an initialised ledger")
        self.origin = origin
        self.verifier = Verifier.from_vkey(vkey)
        self.max_time_skew_ns = max_time_skew_ms * 1_000_000
        # The ledger's own wall time for the skew check: SNTP-corrected when configured.
        self.clock = clock or ClockSource()
        self._appender: Appender | None = None
        self._lock_file: IO[str] | None = None
        if signer is not None:
            if signer.verifier.vkey != self.verifier.vkey:
                raise UsageError(
                    f"signer key {signer.name}+{signer.key_id:08x} is not this ledger's key "
                    f"({self.verifier.name}+{self.verifier.key_id:08x})"
                )
            self._lock_file = _lock(directory / LOCK_NAME)
            try:
                writer = SqliteStore(db, durability=durability)
                self._appender = Appender(writer, signer, origin, config)
            except BaseException:
                self._lock_file.close()
                raise

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def init(cls, directory: Path, signer: Signer, *, keep_signer: bool = False) -> None:
        """Create an empty ledger whose checkpoints ``signer`` signs.

        With ``keep_signer`` the signer key is written to ``DIR/signer.key`` (mode 0600).
        """
        db = directory / DB_NAME
        if db.exists():
            raise UsageError(f"{directory} already holds a ledger")
        directory.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(db)
        try:
            store.init_meta({"origin": signer.name, "vkey": signer.verifier.vkey})
        finally:
            store.close()
        (directory / VKEY_NAME).write_text(signer.verifier.vkey + "\n")
        if keep_signer:
            write_secret(directory / SKEY_NAME, signer.skey + "\n")

    def close(self) -> None:
        """Flush queued entries, sign a final checkpoint, release the directory."""
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self._reader.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending --------------------------------------------------------------------------

    def _writer(self) -> Appender:
        if self._appender is None:
            raise UsageError("this ledger was opened read-only (no signer key)")
        return self._appender

    def stamp(self, event: Event) -> bytes:
        """The canonical bytes stored for ``event``, flagged when its time is far from ours.

        The ledger index is the order of record; an event's own time is data. One whose time
        is further than the configured bound from the ledger's clock is kept, with a flag.
        """
        if self.sealer is not None:
            event = self.sealer(event)
        skew = abs(_time_ns(event.time) - self.clock.now()[0])
        if skew > self.max_time_skew_ns and TIME_SKEW_FLAG not in event.flags:
            event = msgspec.structs.replace(event, flags=(*event.flags, TIME_SKEW_FLAG))
        return canonical_bytes(event)

    def append(self, event: Event) -> int:
        """Append one event; its index once it is durable."""
        return self._writer().append(self.stamp(event))

    def append_many(self, events: Sequence[Event]) -> int:
        """Append events contiguously; the first one's index once all are durable."""
        return self._writer().append_many([self.stamp(e) for e in events])

    async def append_async(self, event: Event) -> int:
        """``append`` for asyncio code."""
        return await self._writer().append_async(self.stamp(event))

    async def append_many_async(self, events: Sequence[Event]) -> int:
        """``append_many`` for asyncio code."""
        return await self._writer().append_many_async([self.stamp(e) for e in events])

    def append_raw(self, entries: Sequence[bytes]) -> int:
        """Append already-canonical entries (tests and benchmarks); first index."""
        return self._writer().append_many(entries)

    def append_prune(self, event: Event, prune: Prune) -> int:
        """Append a ``retention.pruned`` event and raise the floor in the same transaction.

        Returns the event's index (also ``event_index`` of the stored prune). Bodies below the
        floor are not deleted yet: ``sweep_pruned`` does that, after a checkpoint signs the event.
        """
        if event.kind != "retention.pruned":
            raise UsageError(f"a prune is recorded by a retention.pruned event, not {event.kind}")
        return self._writer().append_prune(self.stamp(event), prune)

    def sweep_pruned(self, max_rows: int = SWEEP_ROWS) -> int:
        """Delete every body below the floor, ``max_rows`` per transaction; how many."""
        writer = self._writer()
        total = 0
        while deleted := writer.sweep(max_rows):
            total += deleted
        return total

    def checkpoint(self) -> str:
        """Sign (if anything is new) and return the latest checkpoint note."""
        if self._appender is not None:
            return self._appender.checkpoint()
        latest = self._reader.latest_checkpoint()
        if latest is None:
            raise UsageError("the ledger has no checkpoint yet")
        return latest.note

    # -- reading ----------------------------------------------------------------------------

    def size(self) -> int:
        """Number of entries."""
        with self._read_lock:
            return self._reader.size()

    def floor(self) -> int:
        """The smallest retained index: entries below it were pruned by retention."""
        with self._read_lock:
            return self._reader.floor()

    def prunes(self) -> list[Prune]:
        """Every recorded prune, lowest range first."""
        with self._read_lock:
            return self._reader.prunes()

    def entry(self, index: int) -> bytes:
        """The canonical bytes stored at ``index``; ``PrunedError`` below the floor."""
        with self._read_lock:
            data = self._reader.entry(index)
            size = self._reader.size()
            floor = self._reader.floor()
        if 0 <= index < floor:
            raise self._pruned(index)
        if data is None:
            raise UsageError(f"no entry at index {index} (the ledger has {size})")
        return data

    def _pruned(self, index: int) -> PrunedError:
        for p in self.prunes():
            if p.first <= index < p.below:
                return PrunedError(
                    f"entry {index} was pruned by retention (rule {p.rule}, recorded at index "
                    f"{p.event_index}); see archive {p.archive}",
                    index=index,
                    prune_event=p.event_index,
                    archive=p.archive,
                )
        return PrunedError(f"entry {index} was pruned by retention", index=index)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Stored entries in index order (gaps in a damaged ledger show as skipped indexes).

        Entries below the floor are pruned: iteration starts at the floor at the earliest.

        The read connection is shared, so each chunk of rows is read under the read lock, like
        every other read; the lock is not held while the caller iterates (who may call other
        methods meanwhile). Each chunk starts after the last index of the one before and stops
        at ``end``, or at the size when the iteration started: the rows one query would give.
        """
        with self._read_lock:
            lo, hi = max(start, self._reader.floor()), end
        while True:
            with self._read_lock:
                if hi is None:
                    hi = self._reader.size()
                rows = self._reader.entries(lo, hi)
                try:
                    chunk = list(itertools.islice(rows, ENTRIES_CHUNK))
                finally:
                    if isinstance(rows, Generator):
                        rows.close()  # finalize the half-read statement while the lock is held
            yield from chunk
            if len(chunk) < ENTRIES_CHUNK:
                return
            lo = chunk[-1][0] + 1

    def prove(self, index: int, checkpoint: str | None = None) -> Receipt:
        """A receipt for ``index`` against ``checkpoint`` (a signed note of this ledger), by
        default the latest checkpoint that covers it. Pruned entries can be proved too: their
        leaf hashes stay."""
        size = self.size()
        if not 0 <= index < size:
            raise UsageError(f"no entry at index {index} (the ledger has {size})")
        note = self._covering_checkpoint(index) if checkpoint is None else checkpoint
        cp = self._open(note)
        if index >= cp.size:
            raise UsageError(f"the checkpoint of size {cp.size} does not cover index {index}")
        with self._read_lock:
            hasher = TileHasher(self._reader.read_tile, cp.size, self._tile_cache)
            hashes = inclusion_proof(index, cp.size, hasher.range)
        return Receipt(index=index, hashes=tuple(hashes), checkpoint=note)

    def consistency(self, old: int, new: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes, from stored tiles."""
        with self._read_lock:
            hasher = TileHasher(self._reader.read_tile, new, self._tile_cache)
            return consistency_proof(old, new, hasher.range)

    def root(self, size: int) -> bytes:
        """The tree's root at ``size`` from stored tiles."""
        with self._read_lock:
            return TileHasher(self._reader.read_tile, size, self._tile_cache).root()

    def latest_checkpoint(self) -> Checkpoint | None:
        """The latest checkpoint, verified with the ledger's key."""
        with self._read_lock:
            latest = self._reader.latest_checkpoint()
        if latest is None:
            return None
        return self._open(latest.note)

    def _open(self, note: str) -> Checkpoint:
        """``open_checkpoint`` with this ledger's key and origin, skipped for the last note.

        The Ed25519 verify is ~150 µs, most of a cached proof; consecutive proofs are nearly
        always against the same latest checkpoint.
        """
        opened = self._opened
        if opened is not None and opened[0] == note:
            return opened[1]
        cp = open_checkpoint(note, [self.verifier], self.origin)
        self._opened = (note, cp)  # one assignment: readers see the old pair or the new one
        return cp

    def _covering_checkpoint(self, index: int) -> str:
        with self._read_lock:
            latest = self._reader.latest_checkpoint()
        if latest is not None and latest.size > index:
            return latest.note
        if self._appender is None:
            raise UsageError(
                f"no signed checkpoint covers index {index} yet; run proctor ledger checkpoint"
            )
        return self._appender.checkpoint()


@functools.lru_cache(maxsize=256)
def _second_ns(prefix: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS`` as nanoseconds since the epoch (validated by ``parse_time``)."""
    return parse_time(f"{prefix}.000000000Z")


def _time_ns(text: str) -> int:
    """``parse_time(text)`` for an ``Event.time``, ~3x cheaper.

    ``check_event`` validated the text when the event was built (its fields are frozen), so the
    date and time of day are parsed once per distinct second, not once per event (a gateway's
    events share their seconds), and the nine fraction digits are added. ``canonical_bytes``
    still checks the time's pattern on the stored bytes.
    """
    try:
        return _second_ns(text[:19]) + int(text[20:29])
    except ValueError:
        return parse_time(text)  # not a checked time after all: raise its EventError


def _lock(path: Path) -> IO[str]:
    """Hold an exclusive lock so only one process appends to a ledger."""
    f = path.open("a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UsageError(f"ledger {path.parent} is being written by another process") from None
    with contextlib.suppress(OSError):
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
    return f
