"""Verifying an evidence bundle offline, with the bundle alone (no ledger).

Checks, in order, each failure a named finding (the report is falsy when any failed):

1. the zip: only the members a bundle holds, under safe unique names, within the size limits
   (``_safezip``; nothing is extracted);
2. ``manifest.json``: its format, and the SHA-256 and size of every other member;
3. the key: the pinned one (``key=``), else the bundled ``verifier.vkey``, with a warning that
   this proves integrity relative to that key only, not where the events come from;
4. ``checkpoint.note``: a valid C2SP signed note by that key whose origin is the key's name,
   and the tree the manifest describes;
5. each line of ``events.jsonl`` with its block of ``proofs.txt``: the index the manifest
   lists, the RFC 9162 §2.1.3.2 inclusion proof of ``SHA-256(0x00 ‖ line)`` against the signed
   root, and the line being canonical ``proctor.access/v1`` JSON.

Events and proofs are read as two parallel streams, one line and one block at a time.
"""

from __future__ import annotations

import base64
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from proctor.errors import EventError, FormatError, UsageError, VerificationError
from proctor.events.canonical import canonicalize
from proctor.evidence._format import (
    CHECKPOINT,
    EVENTS,
    MANIFEST,
    PROOFS,
    REQUIRED_MEMBERS,
    VKEY,
    BundleLimits,
    FileDigest,
    FindingKind,
    Manifest,
    decode_manifest,
    iter_indexes,
)
from proctor.evidence._safezip import MemberReader, inspect_members
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.merkle import leaf_hash, verify_inclusion
from proctor.ledger.note import Verifier, split_note
from proctor.ledger.receipt import MAX_PROOF_HASHES, Receipt

__all__ = ["BundleReport", "Finding", "FindingKind", "verify_bundle"]

#: Findings that are worth knowing but do not make a bundle fail.
WARNINGS: Final = frozenset({"origin-not-proven", "key-differs"})
_CHUNK: Final = 1 << 20
_MAX_BLOCK_LINE: Final = 128  # "index N" or a base64 hash; an "extra" line is refused anyway


@dataclass(frozen=True)
class Finding:
    """One thing verification found: its kind, a message naming where, and where."""

    kind: FindingKind
    detail: str
    index: int | None = None
    line: int | None = None
    member: str | None = None

    @property
    def is_failure(self) -> bool:
        """True unless the finding is only a warning."""
        return self.kind not in WARNINGS

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "detail": self.detail,
            "index": self.index,
            "line": self.line,
            "member": self.member,
        }


@dataclass
class BundleReport:
    """What ``verify_bundle`` checked and found; falsy when anything failed."""

    key_pinned: bool
    key: str | None = None
    origin: str | None = None
    checkpoint_size: int | None = None
    checkpoint_root: bytes | None = None
    events: int = 0
    verified: int = 0
    query: str | None = None
    created: str | None = None
    findings: list[Finding] = field(default_factory=list)
    omitted: int = 0
    """Findings past ``BundleLimits.max_findings``, counted but not kept."""
    max_findings: int = BundleLimits().max_findings
    _failed: bool = False

    def __bool__(self) -> bool:
        return not self._failed

    def add(
        self,
        kind: FindingKind,
        detail: str,
        *,
        index: int | None = None,
        line: int | None = None,
        member: str | None = None,
    ) -> None:
        """Record a finding (counted only, past the cap)."""
        finding = Finding(kind, detail, index, line, member or None)
        self._failed |= finding.is_failure
        if len(self.findings) < self.max_findings:
            self.findings.append(finding)
        else:
            self.omitted += 1

    def check(self) -> None:
        """Raise ``VerificationError`` with the first failure, if any."""
        if not self:
            first = next((f for f in self.findings if f.is_failure), None)
            detail = first.detail if first is not None else "findings past the cap"
            raise VerificationError(f"evidence bundle does not verify: {detail}")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": bool(self),
            "key_pinned": self.key_pinned,
            "key": self.key,
            "origin": self.origin,
            "checkpoint_size": self.checkpoint_size,
            "checkpoint_root": None if self.checkpoint_root is None else self.checkpoint_root.hex(),
            "events": self.events,
            "verified": self.verified,
            "query": self.query,
            "created": self.created,
            "findings": [f.to_dict() for f in self.findings],
            "omitted_findings": self.omitted,
        }


def verify_bundle(
    path: Path, *, key: Verifier | None = None, limits: BundleLimits | None = None
) -> BundleReport:
    """Check the bundle at ``path``; ``key`` is the ledger's verifier key, obtained out of band.

    Without ``key`` the bundle's own ``verifier.vkey`` is used and the report says that the
    origin is not proven. Raises ``UsageError`` only when ``path`` cannot be read at all;
    everything wrong inside it is a finding.
    """
    limits = limits or BundleLimits()
    report = BundleReport(key_pinned=key is not None, max_findings=limits.max_findings)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise UsageError(f"no bundle at {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a bundle") from None
    except PermissionError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        report.add("unreadable", f"{path.name} is not a readable zip: {exc}")
        return report
    with zf:

        def found(kind: FindingKind, member: str, detail: str) -> None:
            report.add(kind, detail, member=member)

        members = inspect_members(zf, limits, found)
        _Verification(zf, members, limits, report, key).run()
    return report


class _Verification:
    """The checks of one bundle, in the order of the module docstring."""

    def __init__(
        self,
        zf: zipfile.ZipFile,
        members: dict[str, zipfile.ZipInfo],
        limits: BundleLimits,
        report: BundleReport,
        key: Verifier | None,
    ) -> None:
        self.zf = zf
        self.members = members
        self.present = {info.filename for info in zf.infolist()}
        self.limits = limits
        self.report = report
        self.pinned = key
        self.manifest: Manifest | None = None
        self.digests: dict[str, FileDigest] = {}
        self.note: str | None = None
        self.cp: Checkpoint | None = None
        self.trusted = False  # cp's signature verified with the key in use

    def run(self) -> None:
        for name in REQUIRED_MEMBERS:
            if name not in self.present:  # present but refused: reported by inspect_members
                self.report.add("missing-member", f"{name} is missing", member=name)
        self._manifest()
        small = {name: self._read_small(name) for name in self.members if name not in _READ_APART}
        self._checkpoint(small.get(CHECKPOINT), small.get(VKEY))
        self._events()
        self._files()

    # -- members --------------------------------------------------------------------------------

    def _read_small(self, name: str) -> bytes | None:
        try:
            with MemberReader(self.zf, self.members[name]) as r:
                data = r.read_all()
                self.digests[name] = r.digest()
        except FormatError as exc:
            self.report.add("unreadable", str(exc), member=name)
            return None
        return data

    def _manifest(self) -> None:
        if MANIFEST not in self.members:
            return
        data = self._read_small(MANIFEST)
        self.digests.pop(MANIFEST, None)  # the manifest does not list itself
        if data is None:
            return
        try:
            self.manifest = decode_manifest(data)
        except FormatError as exc:
            self.report.add("bad-manifest", str(exc), member=MANIFEST)
            return
        self.report.query = self.manifest.query
        self.report.created = self.manifest.created

    def _files(self) -> None:
        """Every member but the manifest against the manifest's SHA-256 and size."""
        if self.manifest is None:
            return
        listed = self.manifest.files
        for name, want in sorted(listed.items()):
            got = self.digests.get(name)
            if got is None:
                if name in self.present:
                    continue  # present but not read (unsafe, too big, damaged): reported already
                self.report.add(
                    "missing-member", f"{name} is listed in {MANIFEST} but absent", member=name
                )
            elif got != want:
                self.report.add(
                    "file-mismatch",
                    f"{name}: SHA-256 {got.sha256} and size {got.size}, "
                    f"{MANIFEST} says {want.sha256} and {want.size}",
                    member=name,
                )
        for name in sorted(set(self.digests) - set(listed)):
            self.report.add("file-mismatch", f"{name} is not listed in {MANIFEST}", member=name)

    # -- key and checkpoint -----------------------------------------------------------------

    def _key(self, vkey: bytes | None) -> Verifier | None:
        bundled: Verifier | None = None
        if vkey is not None:
            try:
                bundled = Verifier.from_vkey(vkey.decode("utf-8", errors="replace"))
            except FormatError as exc:
                # Only the key in use can fail the bundle; a pinned one makes this one moot.
                kind: FindingKind = "bad-key" if self.pinned is None else "key-differs"
                self.report.add(kind, f"{VKEY}: {exc}", member=VKEY)
        if self.pinned is not None:
            if bundled is not None and bundled.vkey != self.pinned.vkey:
                self.report.add(
                    "key-differs",
                    f"{VKEY} holds {bundled.name}+{bundled.key_id:08x}, not the pinned key "
                    f"{self.pinned.name}+{self.pinned.key_id:08x}; only the pinned key counts",
                    member=VKEY,
                )
            return self.pinned
        if bundled is not None:
            self.report.add(
                "origin-not-proven",
                f"checked with the bundle's own key {bundled.name}+{bundled.key_id:08x}: this "
                "proves the events agree with that key's checkpoint, not that they come from "
                "that ledger; pin the key obtained out of band (--key) to prove origin",
                member=VKEY,
            )
        return bundled

    def _checkpoint(self, note: bytes | None, vkey: bytes | None) -> None:
        key = self._key(vkey)
        self.report.key = None if key is None else key.vkey
        if note is None:
            return
        self.note = note.decode("utf-8", errors="replace")
        if key is None:
            self.report.add(
                "bad-checkpoint",
                f"{CHECKPOINT}: no key to check its signature with",
                member=CHECKPOINT,
            )
        else:
            try:
                # C2SP signed-note with the one trusted key; the origin must be its name.
                self.cp = open_checkpoint(note, [key], key.name)
                self.trusted = True
            except (VerificationError, FormatError) as exc:
                self.report.add("bad-checkpoint", f"{CHECKPOINT}: {exc}", member=CHECKPOINT)
        if self.cp is None:  # still name the events that disagree with what it says
            try:
                self.cp = Checkpoint.parse(split_note(note)[0])
            except FormatError:
                return
        self.report.origin = self.cp.origin
        self.report.checkpoint_size = self.cp.size
        self.report.checkpoint_root = self.cp.root
        self._manifest_vs_checkpoint(self.cp)

    def _manifest_vs_checkpoint(self, cp: Checkpoint) -> None:
        m = self.manifest
        if m is None:
            return
        claims = (
            ("origin", m.origin, cp.origin),
            ("tree size", m.checkpoint.size, cp.size),
            ("root", m.checkpoint.root, base64.b64encode(cp.root).decode()),
        )
        for what, said, signed in claims:
            if said != signed:
                self.report.add(
                    "manifest-mismatch",
                    f"{MANIFEST} says {what} {said!r}, {CHECKPOINT} says {signed!r}",
                    member=MANIFEST,
                )

    # -- events -------------------------------------------------------------------------------

    def _events(self) -> None:
        if EVENTS not in self.members or PROOFS not in self.members:
            return
        try:
            with (
                MemberReader(self.zf, self.members[EVENTS]) as events,
                MemberReader(self.zf, self.members[PROOFS]) as proofs,
            ):
                self._lines(events, proofs)
                events.drain()
                proofs.drain()
                self.digests[EVENTS] = events.digest()
                self.digests[PROOFS] = proofs.digest()
        except FormatError as exc:
            self.report.add("unreadable", str(exc))

    def _lines(self, events: MemberReader, proofs: MemberReader) -> None:
        expected: Iterator[int] | None = None
        if self.manifest is not None:
            expected = iter_indexes(self.manifest.indexes)
        n, previous = 0, -1
        while True:
            raw = events.readline(self.limits.max_line_bytes + 1)
            block = _next_block(proofs)
            if not raw and block is None:
                break
            n += 1
            if not raw:
                self.report.add(
                    "count-mismatch",
                    f"{PROOFS} block {n}: {EVENTS} has no line {n} for it",
                    line=n,
                    member=EVENTS,
                )
                continue
            self.report.events += 1
            line = self._line(events, raw, n)
            receipt = self._receipt(block, n)
            want = None if expected is None else next(expected, None)
            if receipt is not None:
                index = receipt.index
                if index <= previous:
                    self.report.add(
                        "index-mismatch",
                        f"index {index}: not ascending after index {previous} (line {n})",
                        index=index,
                        line=n,
                    )
                previous = max(previous, index)
                if expected is not None and want != index:
                    listed = "no more indexes" if want is None else f"index {want}"
                    self.report.add(
                        "index-mismatch",
                        f"line {n}: its proof is for index {index}, {MANIFEST} lists {listed}",
                        index=index,
                        line=n,
                    )
            if line is None:
                continue
            canonical = self._content(line, n, None if receipt is None else receipt.index)
            proved = receipt is not None and self._proof(receipt, line, n)
            if canonical and proved and self.trusted:
                self.report.verified += 1
        if self.manifest is not None and n != self.manifest.count:
            self.report.add(
                "count-mismatch",
                f"{EVENTS} has {self.report.events} lines and {PROOFS} blocks for {n}, "
                f"{MANIFEST} says {self.manifest.count}",
                member=EVENTS,
            )

    def _line(self, events: MemberReader, raw: bytes, n: int) -> bytes | None:
        """The line's bytes without its newline; None when over the limit."""
        limit = self.limits.max_line_bytes
        if len(raw) > limit:
            events.skip_line(_CHUNK)
            self.report.add("bad-event", f"line {n}: longer than {limit} bytes", line=n)
            return None
        if not raw.endswith(b"\n"):
            self.report.add("bad-event", f"line {n}: the last line has no newline", line=n)
        return raw.removesuffix(b"\n")

    def _receipt(self, block: str | None, n: int) -> Receipt | None:
        if block is None:
            self.report.add(
                "count-mismatch", f"line {n}: {PROOFS} has no proof block for it", line=n
            )
            return None
        if block in _BAD_BLOCKS:
            self.report.add("bad-proof", f"line {n}: {PROOFS} block {n} {block}", line=n)
            return None
        try:
            # A block followed by the checkpoint note is a C2SP tlog-proof: parse it as one.
            return Receipt.parse(block + "\n" + (self.note or "-\n"))
        except FormatError as exc:
            self.report.add("bad-proof", f"line {n}: {PROOFS} block {n}: {exc}", line=n)
            return None

    def _content(self, line: bytes, n: int, index: int | None) -> bool:
        where = f"line {n}" if index is None else f"line {n} (index {index})"
        try:
            again = canonicalize(line)
        except EventError as exc:
            self.report.add(
                "bad-event",
                f"{where}: not a proctor.access/v1 event: {exc}",
                index=index,
                line=n,
            )
            return False
        if again != line:
            self.report.add(
                "not-canonical",
                f"line {n}: not canonical" + ("" if index is None else f" (index {index})"),
                index=index,
                line=n,
            )
            return False
        return True

    def _proof(self, receipt: Receipt, line: bytes, n: int) -> bool:
        cp = self.cp
        if cp is None:
            return False
        try:
            # RFC 9162 §2.1.3.2 on the leaf SHA-256(0x00 || line).
            verify_inclusion(receipt.index, cp.size, leaf_hash(line), receipt.hashes, cp.root)
        except VerificationError as exc:
            root = "the signed root" if self.trusted else "the checkpoint's (unverified) root"
            self.report.add(
                "proof-mismatch",
                f"index {receipt.index}: inclusion proof does not match {root} (line {n}: {exc})",
                index=receipt.index,
                line=n,
            )
            return False
        return True


_TOO_LONG: Final = "is too long"
_UNTERMINATED: Final = "does not end with an empty line"
_BAD_BLOCKS: Final = frozenset({_TOO_LONG, _UNTERMINATED})


def _next_block(proofs: MemberReader) -> str | None:
    """The next proof block's text (without its closing empty line), a ``_BAD_BLOCKS``
    message, or None at the end of ``proofs.txt``."""
    lines: list[bytes] = []
    while True:
        line = proofs.readline(_MAX_BLOCK_LINE)
        if not line:
            return None if not lines else _UNTERMINATED
        if line == b"\n":
            return b"".join(lines).decode("utf-8", errors="replace")
        lines.append(line)
        if len(lines) > MAX_PROOF_HASHES + 3 or not line.endswith(b"\n"):
            # Skip to the block's end so the next one is read in step with the next line.
            while (rest := proofs.readline(_MAX_BLOCK_LINE)) != b"\n":
                if not rest:
                    break
            return _TOO_LONG


_READ_APART: Final = frozenset({EVENTS, PROOFS, MANIFEST})
