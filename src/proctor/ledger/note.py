"""C2SP signed notes with Ed25519 keys (c2sp.org/signed-note).

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> base64(key ID || signature)``. The key ID is
``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` (signature type 0x01 = Ed25519). Keys are
written in the forms Go's ``golang.org/x/mod/sumdb/note`` reads:
verifier ``<name>+<hex key ID>+<base64(0x01 || public key)>``, signer
``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from proctor.errors import FormatError, VerificationError

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "NoteSignature",
    "Signer",
    "Verifier",
    "b64decode_strict",
    "open_note",
    "sign_note",
    "split_note",
]

ALG_ED25519 = 0x01
MAX_NOTE_BYTES = 1 << 20  # a note this size holds far more than the 16 signatures we must accept
MAX_SIGNATURES = 100
_DASH = "— "  # U+2014 EM DASH, U+0020


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4) with padding; anything else is a FormatError."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError(f"{what} is not valid base64") from None


def _check_name(name: str) -> None:
    # signed-note: key names are non-empty and contain no Unicode spaces and no '+'.
    if not name or "+" in name or any(ch.isspace() for ch in name) or not name.isprintable():
        raise FormatError(f"key name {name!r} must be non-empty with no spaces or '+'")


def _key_id(name: str, public: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note verifier key with its name and key ID."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex8>+<base64(0x01 || key)>``; the key ID must match the key."""
        text = vkey.strip()
        parts = text.split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise FormatError("verifier key must have the form NAME+KEYID+BASE64")
        name, hex_id, b64 = parts
        _check_name(name)
        if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
            raise FormatError("verifier key ID must be 8 lowercase hex digits")
        raw = b64decode_strict(b64, "verifier key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("verifier key is not an Ed25519 (type 0x01) key")
        public = raw[1:]
        key_id = _key_id(name, public)
        if key_id != int(hex_id, 16):
            raise FormatError(
                f"verifier key ID {hex_id} does not match its key (expected {key_id:08x})"
            )
        return cls(name=name, key_id=key_id, public_key=public)

    @property
    def vkey(self) -> str:
        """The key in ``NAME+KEYID+BASE64`` form."""
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 note signer; never printed or logged (its repr hides the key)."""

    __slots__ = ("_private", "key_id", "name", "verifier")

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._private = private
        public = _raw_public(private.public_key())
        self.key_id = _key_id(name, public)
        self.verifier = Verifier(name=name, key_id=self.key_id, public_key=public)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id:08x})"

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex8>+<base64(0x01 || seed)>``."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise FormatError("signer key must have the form PRIVATE+KEY+NAME+KEYID+BASE64")
        _, _, name, hex_id, b64 = parts
        raw = b64decode_strict(b64, "signer key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("signer key is not an Ed25519 (type 0x01) key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if f"{signer.key_id:08x}" != hex_id:
            raise FormatError("signer key ID does not match its key")
        return signer

    @property
    def skey(self) -> str:
        """The key in ``PRIVATE+KEY+NAME+KEYID+BASE64`` form (secret)."""
        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        b64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{b64}"

    def sign(self, text: bytes) -> bytes:
        """Ed25519 signature of the note text."""
        return self._private.sign(text)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_id: int
    signature: bytes


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end with a newline")
    bad = next((c for c in text if c < " " and c != "\n"), None)
    if bad is not None:
        raise FormatError(f"note contains control character U+{ord(bad):04X}")


def sign_note(text: str, signers: Iterable[Signer]) -> str:
    """The signed note: text, a blank line, one signature line per signer."""
    _check_text(text)
    lines = []
    for s in signers:
        sig = s.key_id.to_bytes(4, "big") + s.sign(text.encode())
        lines.append(f"{_DASH}{s.name} {base64.b64encode(sig).decode()}\n")
    if not lines:
        raise ValueError("a note needs at least one signer")
    return text + "\n" + "".join(lines)


def split_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a note into its text and signature lines, checking the format only."""
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise FormatError(f"note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("note is not valid UTF-8") from None
    if len(note) > MAX_NOTE_BYTES:
        raise FormatError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    if not note.endswith("\n"):
        raise FormatError("note must end with a newline")
    # The text is separated from the signatures by the *last* blank line.
    cut = note.rfind("\n\n")
    if cut < 0:
        raise FormatError("note has no blank line before its signatures")
    text, sig_block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    sigs: list[NoteSignature] = []
    # Split on U+000A only: str.splitlines would also split on CR, VT, FF, U+2028...,
    # accepting control characters the signed-note spec forbids.
    for line in sig_block.split("\n")[:-1]:
        if not line.startswith(_DASH):
            raise FormatError("note signature line must start with an em dash and a space")
        name, sep, b64 = line[len(_DASH) :].partition(" ")
        if not sep or " " in b64:
            raise FormatError("note signature line must be '— NAME SIGNATURE'")
        _check_name(name)
        raw = b64decode_strict(b64, f"signature of {name}")
        if len(raw) < 5:
            raise FormatError(f"signature of {name} is too short")
        sigs.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
        if len(sigs) > MAX_SIGNATURES:
            raise FormatError(f"note has more than {MAX_SIGNATURES} signatures")
    if not sigs:
        raise FormatError("note has no signatures")
    return text, sigs


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> str:
    """Return the note's text once a known key's signature verifies.

    Signatures from unknown keys (name and key ID not both matching) are ignored; a known
    key whose signature fails rejects the whole note; no verified known signature rejects it.
    """
    text, sigs = split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = False
    for sig in sigs:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            continue
        if not v.verify(text.encode(), sig.signature):
            raise VerificationError(f"bad signature by {sig.name} ({sig.key_id:08x})")
        verified = True
    if not verified:
        names = ", ".join(f"{s.name} ({s.key_id:08x})" for s in sigs)
        raise VerificationError(f"no signature by a known key (signed by: {names})")
    return text
