"""Shared fixtures: a real ledger of real events, a bundle of some of them, a zip rewriter."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from proctor.events.canonical import decode_event
from proctor.events.ids import format_time, new_event_id, now_ns
from proctor.events.schema import Event
from proctor.evidence import write_bundle
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"
ORIGIN = "audit.example/ledger"
SIZE = 300  # more than one level-0 tile (256), so proofs climb into level-1 hashes
SELECTION = [3, 4, 5, 17, *range(250, 270), 299]


def events(count: int) -> list[Event]:
    """``count`` distinct, valid events cycling through the examples."""
    base = [decode_event(line) for line in EXAMPLES.read_bytes().splitlines() if line.strip()]
    return [
        msgspec.structs.replace(base[i % len(base)], id=new_event_id(), time=format_time(now_ns()))
        for i in range(count)
    ]


@dataclass(frozen=True)
class Fixture:
    """A closed ledger directory, its signer, and a bundle of ``SELECTION`` from it."""

    ledger: Path
    signer: Signer
    bundle: Path


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def ledger_dir(tmp_path: Path, signer: Signer) -> Path:
    d = tmp_path / "ledger"
    Ledger.init(d, signer)
    with Ledger(d, signer=signer) as lg:
        lg.append_many(events(SIZE))
    return d


@pytest.fixture
def made(tmp_path: Path, ledger_dir: Path, signer: Signer) -> Fixture:
    out = tmp_path / "bundle.zip"
    with Ledger(ledger_dir) as lg:
        write_bundle(lg, SELECTION, out, query="kind = query")
    return Fixture(ledger_dir, signer, out)


def members(path: Path) -> dict[str, bytes]:
    """Every member of a zip by name (a test's own bundle: trusted)."""
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rewrite(
    src: Path,
    dst: Path,
    replace: Mapping[str, bytes] | None = None,
    *,
    drop: Iterable[str] = (),
    add: Iterable[tuple[str, bytes]] = (),
    fix_manifest: bool = False,
) -> Path:
    """A copy of a bundle with members replaced, dropped or added (an attacker's edit).

    With ``fix_manifest`` the manifest's hashes and sizes are recomputed, as an attacker who
    knows the format would: what is left to catch them is the signed checkpoint and the proofs.
    """
    contents = members(src)
    contents.update(replace or {})
    for name in drop:
        del contents[name]
    if fix_manifest:
        manifest = json.loads(contents["manifest.json"])
        manifest["files"] = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in contents.items()
            if name != "manifest.json"
        }
        contents["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
        for name, data in add:
            zf.writestr(zipfile.ZipInfo(name), data)
    return dst
