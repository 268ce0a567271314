"""The tamper-evident ledger.

Bottom to top:

- ``merkle``    pure RFC 9162 math: leaf/node hashes, roots, inclusion and consistency proofs.
- ``tiles``     node hashes stored as C2SP tlog-tiles; roots and proofs from O(log n) tiles,
                through a shared cache of hashed tiles keyed by (level, index, width).
- ``note``, ``checkpoint``  C2SP signed notes (Ed25519) carrying tlog-checkpoint bodies.
- ``receipt``   C2SP tlog-proof receipts, verified with the verifier key alone.
- ``store``     SQLite (WAL): entries, tiles, checkpoints; append-only tables; WAL checkpoints
                from a background connection, off the commit path.
- ``appender``  group commit from many producers; signs checkpoints after a consistency check.
- ``ledger``    a ledger directory: the facade the rest of Proctor appends to and proves from.
- ``verify``    full verification with findings (``verify_sigs``, ``verify_diagnose`` help;
                ``verify_scan`` re-hashes tile ranges, ``verify_workers`` shares them out to
                worker processes for big ledgers; ``verify_prunes`` checks that every pruned
                range is recorded by a signed ``retention.pruned`` event).

Imports nothing of Proctor but ``errors`` and ``events``.
"""
