"""The ``README.md`` shipped inside every bundle: what it is and how to check it by hand."""

from __future__ import annotations

import json
from dataclasses import dataclass

from proctor.evidence._format import CHECKPOINT, EVENTS, FORMAT, MANIFEST, PROOFS, SCRIPT, VKEY

__all__ = ["ReadmeFacts", "render_readme"]


@dataclass(frozen=True, kw_only=True)
class ReadmeFacts:
    """What the README says about this particular bundle."""

    origin: str
    vkey: str
    size: int
    root_b64: str
    count: int
    first_index: int
    last_index: int
    created: str
    query: str | None


_TEMPLATE = """\
# Evidence bundle ({format})

This zip holds {count} event(s) of the Proctor audit ledger `{origin}` (ledger indexes
{first_index} to {last_index}), each with a Merkle inclusion proof against one signed checkpoint
of that ledger: tree size {size}, root `{root_b64}` (base64). It was written at {created}{query}.

Everything here can be checked offline, with nothing but this file and the ledger's public key.

## Files

- `{events}`: the selected events, one per line, in ledger order. Each line is the exact
  entry the ledger hashed (RFC 8785 canonical JSON of a `proctor.access/v1` event), then a
  newline (0x0A).
- `{proofs}`: one proof block per line of `{events}`, in the same order: the line
  `c2sp.org/tlog-proof@v1`, `index N` (the event's ledger index), the inclusion path (base64
  SHA-256 hashes, the leaf's sibling first), an empty line.
- `{checkpoint}`: the signed checkpoint every proof is against, a C2SP tlog-checkpoint in a
  C2SP signed note.
- `{vkey}`: the ledger's verifier key as the bundle's writer saw it (`NAME+KEYID+BASE64`).
- `{manifest}`: format, origin, the checkpoint's size and root, creation time, the query, the
  count, the index ranges of the lines, the SHA-256 and size of every other file.
- `README.md`: this text.
- `{script}`: a standalone verifier needing only Python 3.9 or later and the `cryptography` package.

## Check it with Proctor

    proctor verify-bundle bundle.zip --key {key_file}

The exit status is 0 only when every check passed; each failure is printed, naming the line
and ledger index (`--json` for machines). Without Proctor:
`python3 {script} bundle.zip --key {key_file}` (needs `pip install cryptography`).

> **Pin the key.** Without `--key`, the key in `{vkey}` is used. That proves only that the
> events and proofs agree with a checkpoint signed by *that* key: anyone can make a new key,
> rewrite the events and re-sign. To prove that the events come from the ledger `{origin}`,
> get its verifier key from its operator out of band (not from this bundle) and pass it with
> `--key`. Its key id must read `{key_id}`.

## Check it by hand

1. **Files.** The SHA-256 and size of each member equal those in `{manifest}`; no other member
   is present. (The manifest is not signed: its `query` and `created` are the writer's claims,
   every other field is checked against the signed checkpoint below.)
2. **Key.** A verifier key is `NAME+KEYID+BASE64`, where BASE64 decodes to `0x01` (Ed25519)
   followed by the 32-byte public key, and KEYID is the first 4 bytes of
   `SHA-256(NAME ‖ 0x0A ‖ 0x01 ‖ public key)` in hex (C2SP signed-note).
3. **Checkpoint.** `{checkpoint}` is a C2SP signed note: the text (up to and including the
   newline before the last empty line), then signature lines `— NAME BASE64`, where BASE64
   decodes to the 4-byte key id followed by the 64-byte Ed25519 signature of the text's bytes.
   A signature line with the pinned key's name and key id must verify; others are ignored.
   The text is a C2SP tlog-checkpoint: the origin (equal to the key's name), the tree size in
   decimal, the base64 root hash, each on its own line.
4. **Events.** For line *k* of `{events}` (its bytes without the final 0x0A) and block *k* of
   `{proofs}`: the leaf hash is `SHA-256(0x00 ‖ line)`; RFC 9162 §2.1.3.2 with the block's
   index, the checkpoint's tree size, that leaf hash and the block's hashes (interior nodes
   `SHA-256(0x01 ‖ left ‖ right)`) must give the checkpoint's root. Block *k* followed by the
   whole of `{checkpoint}` is a complete C2SP tlog-proof, which `proctor verify-receipt` and
   Go's `golang.org/x/mod/sumdb/tlog` check as they are.
5. **Content.** Each line is valid `proctor.access/v1` JSON in RFC 8785 canonical form (parse
   it and canonicalize it again: the bytes are unchanged).

## What this does not prove

That the selection is complete (every event the query should have found): a bundle holds the
events it holds. To tie this checkpoint to the ledger's later state, keep `{checkpoint}` and
later run `proctor verify --since-checkpoint {checkpoint}` against the ledger.
"""


def render_readme(facts: ReadmeFacts) -> str:
    """The README for one bundle."""
    key_name, key_id, _ = facts.vkey.split("+", 2)
    query = f", for the query {json.dumps(facts.query, ensure_ascii=False)}" if facts.query else ""
    return _TEMPLATE.format(
        format=FORMAT,
        count=facts.count,
        origin=facts.origin,
        first_index=facts.first_index,
        last_index=facts.last_index,
        size=facts.size,
        root_b64=facts.root_b64,
        created=facts.created,
        query=query,
        events=EVENTS,
        proofs=PROOFS,
        checkpoint=CHECKPOINT,
        vkey=VKEY,
        manifest=MANIFEST,
        script=SCRIPT,
        key_file=f"{key_name.replace('/', '-')}.vkey",
        key_id=key_id,
    )
