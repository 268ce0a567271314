"""The tamper-evident ledger.

Bottom to top:

- ``merkle``    pure RFC 9162 math: leaf/node hashes, roots, inclusion and consistency proofs.
- ``tiles``     node hashes stored as C2SP tlog-tiles; roots and proofs from O(log n) tiles.
- ``note``, ``checkpoint``  C2SP signed notes (Ed25519) carrying tlog-checkpoint bodies.
- ``receipt``   C2SP tlog-proof receipts, verified with the verifier key alone.
- ``store``     SQLite (WAL): entries, tiles, checkpoints; append-only tables.
- ``appender``  group commit from many producers; signs checkpoints after a consistency check.
- ``ledger``    a ledger directory: the facade the rest of Proctor appends to and proves from.
- ``verify``    full verification with findings (``verify_sigs``, ``verify_diagnose`` help).

Imports nothing of Proctor but ``errors`` and ``events``.
"""
