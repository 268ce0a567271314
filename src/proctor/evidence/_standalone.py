#!/usr/bin/env python3
"""Verify a Proctor evidence bundle (proctor.evidence/v1) without installing Proctor.

Needs Python 3.9 or later and the ``cryptography`` package (``pip install cryptography``):

    python3 verify_bundle.py bundle.zip --key LEDGER.vkey

Checks the members and their SHA-256 against manifest.json, the checkpoint's C2SP signed-note
Ed25519 signature with the key, each event's RFC 9162 inclusion proof against the signed root,
and that each line is canonical JSON (RFC 8785). It does not check the proctor.access/v1
schema: ``proctor verify-bundle`` does. Without --key the bundle's own verifier.vkey is used,
which proves integrity relative to that key only, not where the events come from.
Exit status 0 when everything verified, 1 when anything failed (each failure printed), 2 for
bad arguments.

This file ships inside every bundle (Proctor writes it from proctor/evidence/_standalone.py);
it imports nothing of Proctor on purpose, so it is written apart from Proctor's own verifier.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import itertools
import json
import sys
import zipfile
from collections.abc import Iterator
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "proctor.evidence/v1"
MEMBERS = (
    "manifest.json",
    "events.jsonl",
    "proofs.txt",
    "checkpoint.note",
    "verifier.vkey",
    "README.md",
    "verify_bundle.py",
)
DATA = ("events.jsonl", "proofs.txt")
MAX_DATA = 16 << 30
MAX_MANIFEST = 64 << 20
MAX_SMALL = 1 << 20
MAX_LINE = 16 << 20
MAX_PATH = 64
PROOF_HEADER = "c2sp.org/tlog-proof@v1"


class Failure(Exception):
    """A check that failed; the message names the line, index or file."""


def b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise Failure(f"{what} is not valid base64") from None


# -- C2SP signed notes and checkpoints --------------------------------------------------------


def parse_vkey(text: str) -> tuple[str, bytes, bytes]:
    """NAME+KEYID+BASE64(0x01 || public key); KEYID = SHA-256(NAME || 0x0A || 0x01 || key)[:4]."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise Failure("verifier key is not NAME+KEYID+BASE64")
    name, hex_id, key_b64 = parts
    raw = b64(key_b64, "verifier key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise Failure("verifier key is not an Ed25519 key")
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != hex_id:
        raise Failure(f"verifier key id {hex_id} does not match the key ({key_id.hex()})")
    return name, key_id, raw[1:]


def open_checkpoint(note: str, name: str, key_id: bytes, public: bytes) -> tuple[str, int, bytes]:
    """Verify the note's signature by the key; return the checkpoint's origin, size, root."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise Failure("checkpoint is not a signed note")
    text, signatures = note[: cut + 1], note[cut + 2 :].split("\n")[:-1]
    verified = False
    for line in signatures:
        if not line.startswith("\u2014 "):
            raise Failure("checkpoint signature line does not start with an em dash")
        signer, _, sig_b64 = line[2:].partition(" ")
        raw = b64(sig_b64, "checkpoint signature")
        if signer != name or raw[:4] != key_id:
            continue  # another key's signature: ignored, as the spec says
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], text.encode())
        except InvalidSignature:
            raise Failure(f"checkpoint signature by {name} does not verify") from None
        verified = True
    if not verified:
        raise Failure(f"checkpoint has no signature by {name}+{key_id.hex()}")
    lines = text.split("\n")
    if len(lines) < 4 or not lines[1].isdigit():
        raise Failure("checkpoint text is not origin, size, root")
    if lines[0] != name:
        raise Failure(f"checkpoint is for log {lines[0]!r}, the key is {name!r}")
    root = b64(lines[2], "checkpoint root")
    if len(root) != 32:
        raise Failure("checkpoint root is not 32 bytes")
    return lines[0], int(lines[1]), root


# -- RFC 9162 -------------------------------------------------------------------------------


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 steps 1-5."""
    if not 0 <= index < size:
        raise Failure(f"index {index} is outside the tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Failure(f"index {index}: inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Failure(f"index {index}: inclusion proof is too short")
    return r


# -- RFC 8785 for the JSON Proctor writes (integers, strings, booleans, null) ------------------


def _no_floats(text: str) -> object:
    raise ValueError(f"number {text} is not an integer")


def jcs(value: object) -> str:
    if isinstance(value, dict):
        # RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names.
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(f"{jcs(k)}:{jcs(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    # json.dumps spells strings, integers, true, false and null as RFC 8785 §3.2.2 does.
    return json.dumps(value, ensure_ascii=False)


def is_canonical(line: bytes) -> bool:
    try:
        value = json.loads(line, parse_float=_no_floats, parse_constant=_no_floats)
        return isinstance(value, dict) and jcs(value).encode("utf-8") == line
    except (ValueError, UnicodeError, RecursionError):
        return False


# -- the bundle -------------------------------------------------------------------------------


class Bundle:
    """The zip, its members checked by name and size, each read at most once."""

    def __init__(self, path: str) -> None:
        self.zf = zipfile.ZipFile(path)
        self.failures: list[str] = []
        self.digests: dict[str, tuple[str, int]] = {}
        self.ok: set[str] = set()
        infos = self.zf.infolist()
        if len(infos) > 4 * len(MEMBERS):
            raise Failure(f"the zip has {len(infos)} members; a bundle has at most {len(MEMBERS)}")
        names = [i.orig_filename for i in infos]
        for info in infos:
            name = info.orig_filename
            limit = MAX_DATA if name in DATA else MAX_SMALL
            limit = MAX_MANIFEST if name == "manifest.json" else limit
            if name not in MEMBERS or name != info.filename:
                self.failures.append(f"unexpected member {name!r} (not read)")
            elif names.count(name) > 1:
                self.failures.append(f"member {name!r} appears more than once (not read)")
            elif info.flag_bits & 1:
                self.failures.append(f"member {name!r} is encrypted")
            elif info.file_size > limit:
                self.failures.append(f"member {name!r} is over the size limit of {limit} bytes")
            else:
                self.ok.add(name)

    def read(self, name: str) -> bytes:
        if name not in self.ok:
            raise Failure(f"{name} is missing or was not read")
        with self.zf.open(name) as f:
            data = f.read()
        self.digests[name] = (hashlib.sha256(data).hexdigest(), len(data))
        return data

    def lines(self, name: str, limit: int) -> Iterator[bytes]:
        if name not in self.ok:
            raise Failure(f"{name} is missing or was not read")
        sha, size = hashlib.sha256(), 0
        with self.zf.open(name) as f:
            while line := f.readline(limit + 1):
                sha.update(line)
                size += len(line)
                if len(line) > limit:
                    raise Failure(f"{name}: a line is longer than {limit} bytes")
                yield line
        self.digests[name] = (sha.hexdigest(), size)


def blocks(lines: Iterator[bytes]) -> Iterator[list[str]]:
    block: list[str] = []
    for raw in lines:
        line = raw.decode("ascii", errors="replace").rstrip("\n")
        if line:
            block.append(line)
            if len(block) > MAX_PATH + 3:
                raise Failure("proofs.txt has a block that is too long")
        else:
            yield block
            block = []
    if block:
        raise Failure("proofs.txt does not end with an empty line")


def parse_block(block: list[str], n: int) -> tuple[int, list[bytes]]:
    if len(block) < 2 or block[0] != PROOF_HEADER or not block[1].startswith("index "):
        raise Failure(f"line {n}: proofs.txt block {n} is not a tlog-proof")
    digits = block[1][6:]
    if not digits.isdigit():
        raise Failure(f"line {n}: proofs.txt block {n} has a bad index")
    path = [b64(h, f"line {n}: proof hash") for h in block[2:]]
    if any(len(h) != 32 for h in path):
        raise Failure(f"line {n}: proofs.txt block {n} has a hash that is not 32 bytes")
    return int(digits), path


def check_events(
    bundle: Bundle, manifest: dict[str, object], size: int, root: bytes, fail: list[str]
) -> int:
    ranges = manifest.get("indexes")
    if not isinstance(ranges, list):
        raise Failure("manifest.json has no index ranges")
    listed = (i for first, last in ranges for i in range(first, last + 1))
    events = bundle.lines("events.jsonl", MAX_LINE)
    proofs = blocks(bundle.lines("proofs.txt", 256))
    verified, n = 0, 0
    for n, (raw, block) in enumerate(itertools.zip_longest(events, proofs), start=1):
        if raw is None or block is None:
            fail.append(f"line {n}: events.jsonl and proofs.txt do not have as many entries")
            break
        index, path = parse_block(block, n)
        want = next(listed, None)
        if want != index:
            fail.append(f"line {n}: its proof is for index {index}, the manifest lists {want}")
        line = raw.removesuffix(b"\n")
        leaf = hashlib.sha256(b"\x00" + line).digest()
        good = True
        try:
            if root_from_inclusion(index, size, leaf, path) != root:
                fail.append(f"index {index}: inclusion proof does not match the signed root")
                good = False
        except Failure as exc:
            fail.append(str(exc))
            good = False
        if not is_canonical(line):
            fail.append(f"line {n}: not canonical (index {index})")
            good = False
        verified += good
    if n != manifest.get("count"):
        fail.append(f"events.jsonl has {n} lines, the manifest says {manifest.get('count')}")
    return verified


def verify(path: str, key_text: str | None) -> tuple[list[str], list[str], int]:
    """(failures, notes, events verified)."""
    bundle = Bundle(path)
    fail, notes = bundle.failures, []
    manifest = json.loads(bundle.read("manifest.json"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Failure(f"manifest.json is not a {FORMAT} manifest")
    bundled = bundle.read("verifier.vkey").decode("utf-8", errors="replace")
    if key_text is None:
        notes.append(
            "checked with the bundle's own verifier.vkey: this proves integrity relative to "
            "that key, not where the events come from; pass --key to prove origin"
        )
    name, key_id, public = parse_vkey(key_text if key_text is not None else bundled)
    note = bundle.read("checkpoint.note").decode("utf-8", errors="replace")
    origin, size, root = open_checkpoint(note, name, key_id, public)
    tree = manifest.get("checkpoint")
    claims = {"origin": origin, "size": size, "root": base64.b64encode(root).decode()}
    if not isinstance(tree, dict) or {**tree, "origin": manifest.get("origin")} != claims:
        fail.append("manifest.json does not describe the signed checkpoint")
    for name in ("README.md", "verify_bundle.py"):
        if name in bundle.ok:
            bundle.read(name)
    verified = check_events(bundle, manifest, size, root, fail)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise Failure("manifest.json lists no files")
    for name in sorted(set(files) | (set(bundle.digests) - {"manifest.json"})):
        want, got = files.get(name), bundle.digests.get(name)
        if not isinstance(want, dict) or got != (want.get("sha256"), want.get("size")):
            fail.append(f"{name}: SHA-256 or size is not what manifest.json says")
    return fail, notes, verified


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description="Verify a Proctor evidence bundle offline.")
    parser.add_argument("bundle", help="the bundle (.zip)")
    parser.add_argument("--key", help="the ledger's verifier key file, obtained out of band")
    args = parser.parse_args(argv)
    try:
        key = None
        if args.key is not None:
            with open(args.key, encoding="utf-8") as f:
                key = f.read()
        fail, notes, verified = verify(args.bundle, key)
    except (Failure, OSError, ValueError, zipfile.BadZipFile) as exc:
        fail, notes, verified = [str(exc)], [], 0
    for note in notes:
        print(f"note: {note}", file=out)
    for failure in fail:
        print(f"FAIL: {failure}", file=out)
    if fail:
        print(f"FAILED: {len(fail)} findings", file=out)
        return 1
    print(f"OK: {verified} events verified", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
