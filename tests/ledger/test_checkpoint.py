"""C2SP tlog-checkpoint bodies: format, strict parsing, and signed round trips."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import FormatError, ProctorError, VerificationError
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.merkle import EMPTY_ROOT, leaf_hash
from proctor.ledger.note import Signer, sign_note, split_note

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


SPEC = _load("c2sp_examples.json")["checkpoint"]
ROOT = leaf_hash(b"checkpoint test")
ROOT_B64 = base64.b64encode(ROOT).decode()
ORIGIN = "proctor.example/ledger"
URLSAFE_B64 = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()


def test_body_is_origin_size_root_and_extensions() -> None:
    cp = Checkpoint(origin=ORIGIN, size=42, root=ROOT)
    assert cp.body() == f"{ORIGIN}\n42\n{ROOT_B64}\n"
    ext = Checkpoint(origin=ORIGIN, size=0, root=EMPTY_ROOT, extensions=("a b", "— c"))
    empty_b64 = base64.b64encode(EMPTY_ROOT).decode()
    assert ext.body() == f"{ORIGIN}\n0\n{empty_b64}\na b\n— c\n"


def test_spec_example_body_parses() -> None:
    text, sigs = split_note(SPEC["note"])
    cp = Checkpoint.parse(text)
    assert (cp.origin, cp.size, cp.root) == (
        SPEC["origin"],
        SPEC["size"],
        base64.b64decode(SPEC["root_b64"]),
    )
    assert cp.extensions == ()
    assert cp.body() == text
    assert [s.name for s in sigs] == [SPEC["origin"]]


def test_spec_example_is_rejected_without_its_key() -> None:
    with pytest.raises(VerificationError):
        open_checkpoint(SPEC["note"], [Signer.generate(SPEC["origin"]).verifier])


@pytest.mark.parametrize(
    "extensions", [(), ("one",), ("k=v", "spaces and — unicode", "=")], ids=["none", "one", "many"]
)
def test_parse_inverts_body(extensions: tuple[str, ...]) -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root=ROOT, extensions=extensions)
    assert Checkpoint.parse(cp.body()) == cp


def test_non_ascii_origin_is_allowed() -> None:
    """The spec only requires a non-empty origin; the URL form is a recommendation."""
    cp = Checkpoint(origin="journal.exemple/ç", size=1, root=ROOT)
    assert Checkpoint.parse(cp.body()) == cp


def test_largest_uint64_size() -> None:
    cp = Checkpoint(origin=ORIGIN, size=(1 << 64) - 1, root=ROOT)
    assert Checkpoint.parse(cp.body()).size == (1 << 64) - 1


BAD_BODIES = {
    "empty": "",
    "origin only": f"{ORIGIN}\n",
    "no root line": f"{ORIGIN}\n1\n",
    "no trailing newline": f"{ORIGIN}\n1\n{ROOT_B64}",
    "empty origin": f"\n1\n{ROOT_B64}\n",
    "leading zero": f"{ORIGIN}\n01\n{ROOT_B64}\n",
    "two zeros": f"{ORIGIN}\n00\n{ROOT_B64}\n",
    "negative size": f"{ORIGIN}\n-1\n{ROOT_B64}\n",
    "plus sign": f"{ORIGIN}\n+1\n{ROOT_B64}\n",
    "space before size": f"{ORIGIN}\n 1\n{ROOT_B64}\n",
    "decimal point": f"{ORIGIN}\n1.0\n{ROOT_B64}\n",
    "underscore": f"{ORIGIN}\n1_000\n{ROOT_B64}\n",
    "hex size": f"{ORIGIN}\n0x10\n{ROOT_B64}\n",
    "non-ASCII digits": f"{ORIGIN}\n\u0661\u0662\n{ROOT_B64}\n",
    "superscript digit": f"{ORIGIN}\n\u00b2\n{ROOT_B64}\n",
    "empty size": f"{ORIGIN}\n\n{ROOT_B64}\n",
    "size above uint64": f"{ORIGIN}\n{1 << 64}\n{ROOT_B64}\n",
    "size of 5000 digits": f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n",
    "root not base64": f"{ORIGIN}\n1\n{'!' * 44}\n",
    "root without padding": f"{ORIGIN}\n1\n{ROOT_B64.rstrip('=')}\n",
    "root in URL-safe base64": f"{ORIGIN}\n1\n{URLSAFE_B64}\n",
    "root with a space": f"{ORIGIN}\n1\n {ROOT_B64}\n",
    "root of 31 bytes": f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
    "root of 33 bytes": f"{ORIGIN}\n1\n{base64.b64encode(ROOT + b'x').decode()}\n",
    "root in hex": f"{ORIGIN}\n1\n{ROOT.hex()}\n",
    "empty root": f"{ORIGIN}\n1\n\n",
    "empty extension line": f"{ORIGIN}\n1\n{ROOT_B64}\n\n",
    "empty line between extensions": f"{ORIGIN}\n1\n{ROOT_B64}\na\n\nb\n",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_malformed_bodies_raise_format_error(body: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.parse(body)


def test_sign_and_open_round_trip() -> None:
    log, witness = Signer.generate(ORIGIN), Signer.generate("witness.example/w1")
    cp = Checkpoint(origin=ORIGIN, size=1234, root=ROOT, extensions=("ext",))
    note = cp.sign([log, witness])
    assert note.startswith(cp.body() + "\n— " + ORIGIN + " ")
    assert open_checkpoint(note, [log.verifier], origin=ORIGIN) == cp
    assert open_checkpoint(note.encode(), [witness.verifier]) == cp


def test_origin_mismatch_is_rejected() -> None:
    log = Signer.generate(ORIGIN)
    note = Checkpoint(origin=ORIGIN, size=1, root=ROOT).sign([log])
    with pytest.raises(FormatError, match=r"expected 'other\.example/log'"):
        open_checkpoint(note, [log.verifier], origin="other.example/log")


def test_unknown_key_and_tampered_size_are_rejected() -> None:
    log = Signer.generate(ORIGIN)
    note = Checkpoint(origin=ORIGIN, size=10, root=ROOT).sign([log])
    with pytest.raises(VerificationError):
        open_checkpoint(note, [Signer.generate(ORIGIN).verifier])
    with pytest.raises(VerificationError):
        open_checkpoint(note.replace("\n10\n", "\n11\n", 1), [log.verifier])


def test_a_signed_malformed_body_is_still_rejected() -> None:
    """A valid signature does not make a bad body acceptable."""
    log = Signer.generate(ORIGIN)
    note = sign_note(f"{ORIGIN}\n007\n{ROOT_B64}\n", [log])
    with pytest.raises(FormatError):
        open_checkpoint(note, [log.verifier])


# --- hypothesis -----------------------------------------------------------------------------------

_LINE = st.text(
    st.characters(exclude_categories=["Cs"], min_codepoint=0x20, exclude_characters="\x7f"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    origin=_LINE,
    size=st.integers(0, (1 << 64) - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3).map(tuple),
)
def test_any_checkpoint_round_trips(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin=origin, size=size, root=root, extensions=extensions)
    assert Checkpoint.parse(cp.body()) == cp


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_project_errors(text: str) -> None:
    with contextlib.suppress(ProctorError):
        Checkpoint.parse(text)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["0", "1", "9", "", "=", "A", "\n", "-", " ", ROOT_B64]), max_size=12)
)
def test_checkpoint_like_text_raises_only_project_errors(parts: list[str]) -> None:
    with contextlib.suppress(ProctorError):
        Checkpoint.parse("".join(parts))
