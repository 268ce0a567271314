"""Archives of ledger entries that verify on their own: entries, a proof for each, one checkpoint.

An archive is a zip file (deflate: any unzip reads it) holding

==================  ================================================================
``entries.jsonl``   the entries' exact canonical bytes, one a line, index order
``receipts.jsonl``  per entry ``{"index": N, "tlog_proof": "…"}``: a C2SP tlog-proof
                    receipt, all against the one checkpoint below
``checkpoint``      that signed checkpoint note (C2SP tlog-checkpoint, signed note)
``verifier.vkey``   the log's verifier key, for convenience: trust comes from the key
                    the verifier is given, never from this file
``manifest.json``   format, origin, index range, checkpoint size, extra metadata, and
                    the SHA-256 and length of every other member
==================  ================================================================

Anyone with the verifier key can check every entry (``verify_archive``) with no ledger at hand:
each receipt is a standard tlog-proof that RFC 9162 verifiers read. The file is written to a
temporary name, fsynced and renamed, so an archive either exists whole or not at all.

The surface is small on purpose (``write_archive``, ``verify_archive``) so evidence bundles,
which carry the same things, can share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import msgspec

from proctor.errors import FormatError, StorageError, VerificationError
from proctor.events.ids import format_time, now_ns
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.merkle import leaf_hash, verify_inclusion
from proctor.ledger.note import Verifier
from proctor.ledger.receipt import Receipt

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveInfo",
    "ArchiveReport",
    "verify_archive",
    "write_archive",
]

ARCHIVE_FORMAT: Final = "proctor.archive/v1"
ENTRIES, RECEIPTS, CHECKPOINT, VKEY, MANIFEST = (
    "entries.jsonl",
    "receipts.jsonl",
    "checkpoint",
    "verifier.vkey",
    "manifest.json",
)
MEMBERS: Final = frozenset({ENTRIES, RECEIPTS, CHECKPOINT, VKEY, MANIFEST})
MAX_LINE: Final = 4 << 20
"""An entry or receipt line longer than this is refused (an event is at most ~1 MiB)."""
MAX_SMALL: Final = 1 << 20
"""The manifest, checkpoint and key are read whole, up to this size."""
MAX_LISTED: Final = 20
"""Bad entries named one by one in a report; more are counted."""


@dataclass(frozen=True)
class ArchiveInfo:
    """A written archive: where, its SHA-256, the range, and the checkpoint size."""

    path: Path
    sha256: str
    first: int
    below: int
    checkpoint_size: int


class _Hashing:
    """A writable member that keeps the SHA-256 and length of what went through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self.sha.update(data)
        self.size += len(data)

    def digest(self) -> dict[str, object]:
        return {"sha256": self.sha.hexdigest(), "bytes": self.size}


def write_archive(
    path: Path,
    entries: Iterable[tuple[int, bytes]],
    prove: Callable[[int], Receipt],
    *,
    first: int,
    below: int,
    checkpoint: str,
    verifier: Verifier,
    meta: Mapping[str, str] | None = None,
) -> ArchiveInfo:
    """Write the entries ``[first, below)`` with a receipt each against ``checkpoint``.

    ``entries`` must give exactly those indexes in order; ``prove(i)`` a receipt against
    ``checkpoint``. The archive appears at ``path`` only once complete and on disk.
    """
    cp = open_checkpoint(checkpoint, [verifier], verifier.name)
    if not 0 <= first < below <= cp.size:
        raise StorageError(f"cannot archive [{first}, {below}) against a checkpoint of {cp.size}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    files: dict[str, object] = {}
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            with zf.open(ENTRIES, "w", force_zip64=True) as raw:
                out = _Hashing(raw)
                expected = first
                for index, data in entries:
                    if index != expected or index >= below:
                        raise StorageError(f"entry {expected} is missing; nothing archived")
                    out.write(data + b"\n")
                    expected += 1
                if expected != below:
                    raise StorageError(f"entry {expected} is missing; nothing archived")
                files[ENTRIES] = out.digest()
            with zf.open(RECEIPTS, "w", force_zip64=True) as raw:
                out = _Hashing(raw)
                for index in range(first, below):
                    receipt = prove(index)
                    if receipt.index != index or receipt.checkpoint != checkpoint:
                        raise StorageError(f"the receipt for {index} is not against the archive's")
                    line = {"index": index, "tlog_proof": receipt.text()}
                    out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                files[RECEIPTS] = out.digest()
            for name, text in ((CHECKPOINT, checkpoint), (VKEY, verifier.vkey + "\n")):
                data = text.encode()
                zf.writestr(name, data)
                files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            manifest = {
                "format": ARCHIVE_FORMAT,
                "origin": cp.origin,
                "first": first,
                "below": below,
                "count": below - first,
                "checkpoint_size": cp.size,
                "created": format_time(now_ns()),
                "meta": dict(meta or {}),
                "files": files,
            }
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _sync_rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with path.open("rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    return ArchiveInfo(path, sha, first, below, cp.size)


def _sync_rename(tmp: Path, path: Path) -> None:
    """fsync the file, rename it into place, fsync the directory (the rename is durable)."""
    try:
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot write archive {path}: {exc.strerror}") from None


# -- verification ---------------------------------------------------------------------------


class _FileHash(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sha256: str
    bytes: int


class _Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    origin: str
    first: int
    below: int
    count: int
    checkpoint_size: int
    created: str
    files: dict[str, _FileHash]
    meta: dict[str, str] = msgspec.field(default_factory=dict)


@dataclass
class ArchiveReport:
    """What ``verify_archive`` checked and found; falsy when anything failed."""

    path: Path
    origin: str | None = None
    first: int | None = None
    below: int | None = None
    entries: int = 0
    checkpoint_size: int | None = None
    meta: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.problems

    def check(self) -> None:
        """Raise ``VerificationError`` naming the first problem (and how many more)."""
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise VerificationError(f"archive {self.path.name}: {self.problems[0]}{more}")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": bool(self),
            "path": str(self.path),
            "origin": self.origin,
            "first": self.first,
            "below": self.below,
            "entries": self.entries,
            "checkpoint_size": self.checkpoint_size,
            "meta": self.meta,
            "problems": self.problems,
            "notes": self.notes,
        }


def verify_archive(path: Path, key: Verifier) -> ArchiveReport:
    """Check an archive with the verifier key alone: every entry proved against the signed
    checkpoint, the range complete, the manifest's hashes right. Never raises for a bad file."""
    report = ArchiveReport(path)
    try:
        with zipfile.ZipFile(path) as zf:
            _verify(zf, key, report)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        report.problems.append(f"unreadable: {exc}")
    return report


def _small(zf: zipfile.ZipFile, name: str) -> bytes:
    with zf.open(name) as f:
        data = f.read(MAX_SMALL + 1)
    if len(data) > MAX_SMALL:
        raise FormatError(f"{name} is larger than {MAX_SMALL} bytes")
    return data


def _verify(zf: zipfile.ZipFile, key: Verifier, report: ArchiveReport) -> None:
    names = zf.namelist()
    extra = sorted(set(names) - MEMBERS)
    missing = sorted(MEMBERS - set(names))
    if len(names) != len(set(names)):
        report.problems.append("a member name appears twice")
    if extra:
        report.problems.append(f"unexpected members: {', '.join(extra)}")
    if missing:
        report.problems.append(f"missing members: {', '.join(missing)}")
        return
    try:
        manifest = msgspec.json.decode(_small(zf, MANIFEST), type=_Manifest)
        note = _small(zf, CHECKPOINT).decode()
        vkey = _small(zf, VKEY).decode().strip()
    except (FormatError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        report.problems.append(f"manifest, checkpoint or key unreadable: {exc}")
        return
    report.origin, report.first, report.below = manifest.origin, manifest.first, manifest.below
    report.meta = dict(manifest.meta)
    if manifest.format != ARCHIVE_FORMAT:
        report.problems.append(f"format {manifest.format!r} is not {ARCHIVE_FORMAT}")
        return
    if vkey != key.vkey:
        report.notes.append(f"the archive's own key {vkey!r} is not the key given (ignored)")
    try:
        cp = open_checkpoint(note, [key], key.name)
    except (FormatError, VerificationError) as exc:
        report.problems.append(f"checkpoint: {exc}")
        return
    report.checkpoint_size = cp.size
    if cp.origin != manifest.origin:
        report.problems.append(f"manifest origin {manifest.origin!r}, checkpoint {cp.origin!r}")
    if cp.size != manifest.checkpoint_size:
        report.problems.append(
            f"manifest says checkpoint size {manifest.checkpoint_size}, checkpoint {cp.size}"
        )
    first, below = manifest.first, manifest.below
    if not 0 <= first < below <= cp.size or manifest.count != below - first:
        report.problems.append(
            f"range [{first}, {below}) of {manifest.count} entries does not fit a checkpoint "
            f"of size {cp.size}"
        )
        return
    digests = _check_entries(zf, cp, note, first, below, report)
    digests[CHECKPOINT] = _FileHash(hashlib.sha256(note.encode()).hexdigest(), len(note.encode()))
    raw_key = _small(zf, VKEY)
    digests[VKEY] = _FileHash(hashlib.sha256(raw_key).hexdigest(), len(raw_key))
    for name, want in sorted(manifest.files.items()):
        if digests.get(name) != want:
            report.problems.append(f"{name} does not match its SHA-256 in the manifest")
    for name in sorted(set(digests) - set(manifest.files)):
        report.problems.append(f"the manifest has no hash for {name}")


def _check_entries(
    zf: zipfile.ZipFile, cp: Checkpoint, note: str, first: int, below: int, report: ArchiveReport
) -> dict[str, _FileHash]:
    """Prove each entry; the members' digests as read."""
    bad: list[str] = []
    count = 0
    eh, rh = hashlib.sha256(), hashlib.sha256()
    esize = rsize = 0
    with zf.open(ENTRIES) as ef, zf.open(RECEIPTS) as rf:
        while True:
            eline, rline = ef.readline(MAX_LINE + 1), rf.readline(MAX_LINE + 1)
            eh.update(eline)
            rh.update(rline)
            esize, rsize = esize + len(eline), rsize + len(rline)
            if not eline and not rline:
                break
            index = first + count
            if not eline.endswith(b"\n") or not rline.endswith(b"\n"):
                report.problems.append(
                    f"entry {index}: lines missing, unterminated or over {MAX_LINE} bytes"
                )
                return {}
            problem = _check_one(index, eline[:-1], rline, cp, note)
            if problem is not None:
                bad.append(problem)
            count += 1
    report.entries = count
    if count != below - first:
        report.problems.append(
            f"{count} entries, the range [{first}, {below}) needs {below - first}"
        )
    if bad:
        listed = "; ".join(bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        report.problems.append(f"{len(bad)} entries do not verify: {listed}{more}")
    return {
        ENTRIES: _FileHash(eh.hexdigest(), esize),
        RECEIPTS: _FileHash(rh.hexdigest(), rsize),
    }


def _check_one(index: int, entry: bytes, line: bytes, cp: Checkpoint, note: str) -> str | None:
    """Why entry ``index`` does not verify, or None."""
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict) or obj.get("index") != index:
            return f"entry {index}: its receipt line is for another index"
        text = obj.get("tlog_proof")
        if not isinstance(text, str):
            return f"entry {index}: no tlog_proof"
        receipt = Receipt.parse(text)
    except (ValueError, FormatError) as exc:
        return f"entry {index}: receipt unreadable ({exc})"
    if receipt.index != index or receipt.checkpoint != note:
        return f"entry {index}: the receipt is for another index or checkpoint"
    try:
        verify_inclusion(index, cp.size, leaf_hash(entry), receipt.hashes, cp.root)
    except VerificationError as exc:
        return f"entry {index}: {exc}"
    return None
