"""C2SP signed notes: the Go reference vectors, strict parsing, and fuzzed input."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import FormatError, ProctorError, VerificationError
from proctor.ledger.note import (
    MAX_SIGNATURES,
    Signer,
    Verifier,
    open_note,
    sign_note,
    split_note,
)

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


GO = _load("signed_note.json")
PETER, ENOCH, TEXT = GO["peter"], GO["enoch"], GO["text"]
PETER_SIG: str = PETER["sig_line"]
ENOCH_SIG: str = ENOCH["sig_line"]
B64_SIG = PETER_SIG.rstrip("\n").rsplit(" ", 1)[1]
GO_NOTE = TEXT + "\n" + PETER_SIG
C2SP_NOTE = _load("c2sp_examples.json")["signed_note"]


def _peter() -> Verifier:
    return Verifier.from_vkey(PETER["vkey"])


def _enoch() -> Verifier:
    return Verifier.from_vkey(ENOCH["vkey"])


def _sig_line(name: str, key_id: int, signature: bytes) -> str:
    return f"— {name} {base64.b64encode(key_id.to_bytes(4, 'big') + signature).decode()}\n"


def _insert_at_byte(line: str, at: int, extra: str) -> str:
    """Go's ``sig[:60] + "ABCD" + sig[60:]`` slices bytes (the em dash is three)."""
    raw = line.encode()
    return (raw[:at] + extra.encode() + raw[at:]).decode()


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", [PETER, ENOCH], ids=["PeterNeumann", "EnochRoot"])
def test_key_id_is_sha256_of_name_newline_type_and_key(who: dict[str, str]) -> None:
    raw = base64.b64decode(who["vkey"].split("+", 2)[2])
    assert raw[0] == 0x01
    want = hashlib.sha256(who["name"].encode() + b"\n" + raw).digest()[:4]
    assert want.hex() == who["key_id"]
    v = Verifier.from_vkey(who["vkey"])
    assert (v.name, v.key_id, v.public_key) == (who["name"], int(who["key_id"], 16), raw[1:])
    assert v.vkey == who["vkey"]


def test_signer_from_go_skey_matches_the_go_vkey() -> None:
    signer = Signer.from_skey(PETER["skey"])
    assert signer.name == PETER["name"]
    assert signer.key_id == int(PETER["key_id"], 16)
    assert signer.verifier == _peter()
    assert signer.skey == PETER["skey"]
    assert "AYEKFALV" not in repr(signer)


def test_mangled_verifier_keys_are_rejected() -> None:
    """Go's TestNewVerifier: every proper substring and every single-byte increment fails."""
    vkey = PETER["vkey"]
    bad = [vkey[i:j] for i in range(len(vkey) + 1) for j in range(i + 1, len(vkey) + 1)]
    bad.remove(vkey)
    bad += [vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :] for i in range(len(vkey))]
    bad += GO["bad_vkeys"]
    for key in bad:
        with pytest.raises(FormatError):
            Verifier.from_vkey(key)


def test_mangled_signer_keys_are_rejected() -> None:
    """Go's TestNewSigner: every proper substring and every single-byte increment fails."""
    skey = PETER["skey"]
    bad = [skey[i:j] for i in range(len(skey) + 1) for j in range(i + 1, len(skey) + 1)]
    bad.remove(skey)
    bad += [skey[:i] + chr(ord(skey[i]) + 1) + skey[i + 1 :] for i in range(len(skey))]
    for key in bad:
        with pytest.raises(FormatError):
            Signer.from_skey(key)


@pytest.mark.parametrize("name", ["", "Peter Neumann", "a+b", "tab\there", "nb\u00a0sp", "ctl\x01"])
def test_bad_key_names_are_rejected(name: str) -> None:
    with pytest.raises(FormatError):
        Signer.generate(name)


# --- signing --------------------------------------------------------------------------------------


def test_signature_is_byte_for_byte_the_go_one() -> None:
    """Ed25519 is deterministic (RFC 8032), so our note must equal Go's TestSign output."""
    assert sign_note(TEXT, [Signer.from_skey(PETER["skey"])]) == GO_NOTE


def test_sign_with_several_signers_in_order() -> None:
    a, b = Signer.generate("a.example/log"), Signer.generate("b.example/witness")
    note = sign_note(TEXT, [a, b])
    text, sigs = split_note(note)
    assert text == TEXT
    assert [(s.name, s.key_id) for s in sigs] == [(a.name, a.key_id), (b.name, b.key_id)]
    assert open_note(note, [b.verifier]) == TEXT


@pytest.mark.parametrize("text", ["abc", "", "no newline\nat end", "ctl\x01char\n", "cr\r\n"])
def test_sign_refuses_malformed_text(text: str) -> None:
    with pytest.raises(FormatError):
        sign_note(text, [Signer.generate("x")])


# --- opening: Go's TestOpen -----------------------------------------------------------------------


def test_open_go_note() -> None:
    assert open_note(GO_NOTE, [_peter()]) == TEXT
    assert open_note(GO_NOTE.encode(), [_peter()]) == TEXT


def test_open_with_one_known_and_one_unknown_signature() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [_peter()]) == TEXT
    assert open_note(note, [_enoch()]) == TEXT
    assert open_note(note, [_peter(), _enoch()]) == TEXT


def test_open_without_a_known_key_is_rejected() -> None:
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])


def test_unknown_signatures_sharing_a_name_or_key_id_are_ignored() -> None:
    """signed-note: a signature is a known key's only when both name and key ID match."""
    peter_id = int(PETER["key_id"], 16)
    junk = bytes(64)
    note = (
        TEXT
        + "\n"
        + _sig_line(PETER["name"], peter_id ^ 1, junk)
        + _sig_line("SomeoneElse", peter_id, junk)
        + PETER_SIG
    )
    assert open_note(note, [_peter()]) == TEXT
    only_unknown = TEXT + "\n" + _sig_line(PETER["name"], peter_id ^ 1, junk)
    with pytest.raises(VerificationError):
        open_note(only_unknown, [_peter()])


def test_a_bad_signature_by_a_known_key_rejects_the_note() -> None:
    bad = _insert_at_byte(PETER_SIG, 60, "ABCD")
    with pytest.raises(VerificationError, match="bad signature"):
        open_note(TEXT + "\n" + bad, [_peter()])
    wrong_bytes = _sig_line(PETER["name"], int(PETER["key_id"], 16), bytes(64))
    with pytest.raises(VerificationError, match="bad signature"):
        open_note(TEXT + "\n" + wrong_bytes + PETER_SIG, [_peter()])


def test_repeated_and_broken_unknown_signatures_are_ignored() -> None:
    enoch_abcd = _insert_at_byte(ENOCH_SIG, 60, "ABCD")
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    assert open_note(note, [_peter()]) == TEXT


def test_tampered_text_is_rejected() -> None:
    tampered = GO_NOTE.replace("cryptography", "cryptographY")
    with pytest.raises(VerificationError):
        open_note(tampered, [_peter()])


def test_signature_count_limit() -> None:
    assert open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [_peter()]) == TEXT
    for verifiers in ([_peter()], []):
        with pytest.raises(FormatError):
            open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), verifiers)


GO_BAD_MESSAGES = [
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    TEXT + "\n" + "— Bad Name " + B64_SIG,
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
]


@pytest.mark.parametrize("note", GO_BAD_MESSAGES)
def test_go_malformed_messages(note: str) -> None:
    for form in (note, note.encode()):
        with pytest.raises(FormatError):
            split_note(form)
        with pytest.raises(FormatError):
            open_note(form, [_peter()])


def test_invalid_utf8_is_malformed() -> None:
    with pytest.raises(FormatError):
        open_note(b"\xff" + GO_NOTE.encode(), [_peter()])


MALFORMED = {
    "no trailing newline": GO_NOTE[:-1],
    "no blank line": TEXT + PETER_SIG,
    "no signature lines": TEXT + "\n",
    "bad base64": TEXT + "\n— PeterNeumann !!!!" + B64_SIG[4:] + "\n",
    "base64 without padding": TEXT + "\n— PeterNeumann " + B64_SIG.rstrip("=") + "\n",
    "base64 with a space": TEXT + "\n— PeterNeumann " + B64_SIG[:8] + " " + B64_SIG[8:] + "\n",
    "signature of 3 bytes": TEXT + "\n— PeterNeumann AAAA\n",
    "signature of 4 bytes (key ID only)": TEXT + "\n— PeterNeumann AAAAAA==\n",
    "hyphen instead of em dash": TEXT + "\n- PeterNeumann " + B64_SIG + "\n",
    "no space after em dash": TEXT + "\n—PeterNeumann " + B64_SIG + "\n",
    "no name": TEXT + "\n—  " + B64_SIG + "\n",
    "name with plus": TEXT + "\n— Peter+Neumann " + B64_SIG + "\n",
    "CR between signature lines": GO_NOTE[:-1] + "\r" + PETER_SIG,
    "U+2028 between signature lines": GO_NOTE[:-1] + "\u2028" + PETER_SIG,
    "tab in the text": "tab\there\n\n" + PETER_SIG,
    "control character in a signature line": GO_NOTE[:-1] + "\x0b\n",
}


@pytest.mark.parametrize("note", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_notes_raise_format_error(note: str) -> None:
    with pytest.raises(FormatError):
        open_note(note, [_peter()])


def test_text_is_split_at_the_last_blank_line() -> None:
    """signed-note: the text may hold empty lines; the last one separates the signatures."""
    text, sigs = split_note(C2SP_NOTE["note"])
    assert text == C2SP_NOTE["text"]
    assert [s.name for s in sigs] == [C2SP_NOTE["name"]]
    assert len(sigs[0].signature) == 64
    signer = Signer.generate("example.com/log")
    assert open_note(sign_note(text, [signer]), [signer.verifier]) == text


def test_oversized_note_is_rejected() -> None:
    huge = "x" * (1 << 20) + "\n\n" + PETER_SIG
    with pytest.raises(FormatError, match="larger than"):
        split_note(huge)
    with pytest.raises(FormatError, match="larger than"):
        split_note(huge.encode())


# --- hypothesis: parsers only raise the project's errors ------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_random_input_raises_only_project_errors(data: bytes | str) -> None:
    with contextlib.suppress(ProctorError):
        split_note(data)
    with contextlib.suppress(ProctorError):
        open_note(data, [_peter()])


_NOTE_ALPHABET = st.sampled_from(["\n", " ", "—", "+", "=", "/", "A", "a", "0", "\r", "\x00", "é"])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_an_edited_note_opens_to_the_same_text_or_not_at_all(data: st.DataObject) -> None:
    """Insert, delete or replace characters anywhere: never a different verified text."""
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        at = data.draw(st.integers(0, len(note)), label="at")
        cut = data.draw(st.integers(0, 3), label="cut")
        new = data.draw(st.text(_NOTE_ALPHABET, max_size=3), label="new")
        note = note[:at] + new + note[at + cut :]
    try:
        got = open_note(note, [_peter(), _enoch()])
    except ProctorError:
        return
    assert got == TEXT
