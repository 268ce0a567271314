"""Writing an evidence bundle: selected ledger events, their proofs, one signed checkpoint.

The selection is any iterable of ascending ledger indexes (the CLI's ``--index`` ranges, a
search query's hits): it is read once and kept as ranges. The highest index decides the
checkpoint: the latest signed one when it covers it, else a new one signed through the
ledger (which needs the ledger opened with its signer key). Every proof is then computed at
that one checkpoint's tree size from the ledger's stored tiles, so a ledger that keeps
growing while a big bundle is written cannot leave proofs against different checkpoints.

Memory stays flat whatever the selection's size: entries are read in chunks, each event is
written to the zip as soon as it is checked, proofs go to a temporary file that is copied into
the zip after the events. The zip is written next to ``out`` under a temporary name and
renamed only once complete and synced: there is never a half-written bundle at ``out``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.resources
import os
import tempfile
import time
import zipfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from proctor.errors import EventError, StorageError, UsageError, VerificationError
from proctor.events.canonical import canonicalize
from proctor.events.ids import format_time, now_ns
from proctor.evidence._format import (
    CHECKPOINT,
    EVENTS,
    FORMAT,
    MANIFEST,
    PROOFS,
    README,
    SCRIPT,
    VKEY,
    FileDigest,
    Manifest,
    SignedTree,
    encode_manifest,
)
from proctor.evidence._readme import ReadmeFacts, render_readme
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.ledger import DB_NAME, Ledger
from proctor.ledger.merkle import inclusion_proof, leaf_hash, verify_inclusion
from proctor.ledger.receipt import Receipt
from proctor.ledger.store import SqliteStore
from proctor.ledger.tiles import DEFAULT_CACHE_TILES, TileCache, TileHasher

__all__ = ["BundleSummary", "write_bundle"]

_SPOOL_BYTES: Final = 8 << 20  # proofs kept in memory up to this, then in a temporary file
_COPY_CHUNK: Final = 1 << 20
_ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BundleSummary:
    """What ``write_bundle`` wrote."""

    path: Path
    count: int
    first_index: int
    last_index: int
    origin: str
    checkpoint_size: int
    checkpoint_root: bytes
    bytes: int


def write_bundle(
    ledger: Ledger,
    indexes: Iterable[int],
    out: Path,
    *,
    query: str | None = None,
    cache_tiles: int = DEFAULT_CACHE_TILES,
) -> BundleSummary:
    """Write the events at ``indexes`` (ascending) with their proofs to the zip ``out``.

    ``query`` is recorded in the manifest as the selection's description. Raises
    ``UsageError`` for an empty or unordered selection, an index the ledger does not hold, a
    checkpoint that cannot be signed, or an existing ``out``; ``VerificationError`` when a
    stored entry or the tiles do not agree with the signed checkpoint (run ``proctor verify``):
    no bundle is written that would fail verification.
    """
    if out.exists():
        raise UsageError(f"{out} exists; refusing to overwrite it")
    if not out.parent.is_dir():
        raise UsageError(f"no directory {out.parent} to write {out.name} in")
    runs = _collect_runs(indexes, ledger.size())
    first, last = runs[0], runs[-1] - 1
    # The latest checkpoint when it covers the highest index; else the ledger signs one (or
    # says it cannot: read-only). prove() checks the index exists, too.
    note = ledger.prove(last).checkpoint
    cp = open_checkpoint(note, [ledger.verifier], ledger.origin)
    job = _Job(
        ledger=ledger,
        runs=runs,
        note=note,
        cp=cp,
        query=query,
        created_ns=now_ns(),
        cache_tiles=cache_tiles,
        spool_dir=out.parent,
    )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as f:
            _write_zip(f, job)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_dir(out.parent)
    return BundleSummary(
        path=out,
        count=_count(runs),
        first_index=first,
        last_index=last,
        origin=cp.origin,
        checkpoint_size=cp.size,
        checkpoint_root=cp.root,
        bytes=size,
    )


def _collect_runs(indexes: Iterable[int], size: int) -> array[int]:
    """The selection as flat ``[start, end)`` pairs; refuses anything but ascending ints."""
    runs: array[int] = array("q")
    previous = -1
    for i in indexes:
        if isinstance(i, bool) or not isinstance(i, int):
            raise UsageError(f"ledger index {i!r} is not an integer")
        if not 0 <= i < size:
            raise UsageError(f"no entry at index {i} (the ledger has {size})")
        if i <= previous:
            raise UsageError(
                f"ledger indexes must be ascending and distinct: {i} comes after {previous}"
            )
        if runs and runs[-1] == i:
            runs[-1] = i + 1
        else:
            runs.extend((i, i + 1))
        previous = i
    if not runs:
        raise UsageError("no events selected: an evidence bundle needs at least one")
    return runs


def _pairs(runs: array[int]) -> Iterator[tuple[int, int]]:
    return zip(runs[::2], runs[1::2], strict=True)


def _count(runs: array[int]) -> int:
    return sum(end - start for start, end in _pairs(runs))


class _Digest:
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._sha.update(data)
        self.size += len(data)
        self._sink.write(data)

    def digest(self) -> FileDigest:
        return FileDigest(sha256=self._sha.hexdigest(), size=self.size)


@dataclass(frozen=True, kw_only=True)
class _Job:
    """One bundle being written: the selection and the checkpoint its proofs are against."""

    ledger: Ledger
    runs: array[int]
    note: str
    cp: Checkpoint
    query: str | None
    created_ns: int
    cache_tiles: int
    spool_dir: Path


def _write_zip(f: IO[bytes], job: _Job) -> None:
    cp, runs = job.cp, job.runs
    t = time.gmtime(job.created_ns // 1_000_000_000)
    # Zip times are DOS times from 1980 without a zone; the manifest has the exact UTC time.
    stamp = max((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec), _ZIP_EPOCH)
    created = format_time(job.created_ns)
    files: dict[str, FileDigest] = {}

    def info(name: str) -> zipfile.ZipInfo:
        zi = zipfile.ZipInfo(name, date_time=stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.external_attr = 0o644 << 16
        return zi

    def put(name: str, data: bytes) -> None:
        files[name] = FileDigest(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        zf.writestr(info(name), data)

    with (
        zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf,
        tempfile.SpooledTemporaryFile(_SPOOL_BYTES, dir=str(job.spool_dir)) as spool,
    ):
        with zf.open(info(EVENTS), "w", force_zip64=True) as dst:
            events = _Digest(dst)
            proofs = _Digest(spool)
            _write_events(job, events, proofs)
        files[EVENTS] = events.digest()
        files[PROOFS] = proofs.digest()
        spool.seek(0)
        with zf.open(info(PROOFS), "w", force_zip64=True) as dst:
            while chunk := spool.read(_COPY_CHUNK):
                dst.write(chunk)
        put(CHECKPOINT, job.note.encode())
        put(VKEY, (job.ledger.verifier.vkey + "\n").encode())
        root_b64 = base64.b64encode(cp.root).decode()
        facts = ReadmeFacts(
            origin=cp.origin,
            vkey=job.ledger.verifier.vkey,
            size=cp.size,
            root_b64=root_b64,
            count=_count(runs),
            first_index=runs[0],
            last_index=runs[-1] - 1,
            created=created,
            query=job.query,
        )
        put(README, render_readme(facts).encode())
        put(SCRIPT, script_source())
        manifest = Manifest(
            format=FORMAT,
            origin=cp.origin,
            checkpoint=SignedTree(size=cp.size, root=root_b64),
            created=created,
            query=job.query,
            count=facts.count,
            indexes=tuple((start, end - 1) for start, end in _pairs(runs)),
            files=dict(sorted(files.items())),
        )
        zf.writestr(info(MANIFEST), encode_manifest(manifest))


def _write_events(job: _Job, events: _Digest, proofs: _Digest) -> None:
    """Each selected entry checked, proved at ``cp`` and written: its line and its proof block."""
    # A connection of our own to the ledger's tiles, to prove at the one checkpoint's size
    # (Ledger.prove proves at whatever checkpoint is latest, which may move meanwhile).
    cp, note = job.cp, job.note
    store = SqliteStore(job.ledger.directory / DB_NAME, readonly=True)
    cache = TileCache(job.cache_tiles)
    try:
        for start, end in _pairs(job.runs):
            expected = start
            for index, entry in job.ledger.entries(start, end):
                if index != expected:
                    break
                _check_entry(index, entry)
                # A hasher per proof: its own memo of tiles lives only as long as one proof,
                # the shared cache (bounded) keeps the tiles proofs have in common.
                hasher = TileHasher(store.read_tile, cp.size, cache)
                path = inclusion_proof(index, cp.size, hasher.range)
                try:  # fail closed: never ship a proof that does not verify
                    verify_inclusion(index, cp.size, leaf_hash(entry), path, cp.root)
                except VerificationError as exc:
                    raise VerificationError(
                        f"index {index}: the ledger's entry and tiles do not give the root its "
                        f"checkpoint signs ({exc}); run proctor verify"
                    ) from None
                events.write(entry + b"\n")
                text = Receipt(index=index, hashes=tuple(path), checkpoint=note).text()
                # tlog-proof text is the block, then the checkpoint note: keep the block only.
                proofs.write(text[: len(text) - len(note)].encode())
                expected += 1
            if expected != end:
                raise StorageError(
                    f"the ledger holds no entry at index {expected}, below its signed size "
                    f"{cp.size}; run proctor verify"
                )
    finally:
        store.close()


def _check_entry(index: int, entry: bytes) -> None:
    """Refuse an entry that ``verify_bundle`` would refuse: not canonical proctor.access/v1."""
    try:
        again = canonicalize(entry)
    except EventError as exc:
        raise VerificationError(
            f"index {index}: the stored entry is not a proctor.access/v1 event ({exc}); "
            "run proctor verify"
        ) from None
    if again != entry:
        raise VerificationError(
            f"index {index}: the stored entry is not in canonical form; run proctor verify"
        )


def script_source() -> bytes:
    """The standalone verifier shipped in every bundle as ``verify_bundle.py``."""
    return importlib.resources.files("proctor.evidence").joinpath("_standalone.py").read_bytes()


def _sync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX: fsync the directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
