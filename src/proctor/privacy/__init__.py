"""GDPR erasure by crypto-shredding: personal fields sealed under per-subject keys.

- ``keys``     per-subject AES-256 keys, wrapped by a master key held outside the database;
  erasure destroys a subject's keys (intent first, then the ledger event, then the keys).
- ``seal``     the ledger's hook that seals configured fields of each event under its actor's
  key (the leaf commits to the ciphertext), and ``unseal`` for readers who may see them.
- ``erasure``  ``erase_subject``: the three durable steps of one erasure.

Data flows: event → ``Sealer`` (in ``Ledger.stamp``) → sealed event → ledger; reader →
``unseal`` with ``KeyStore.key`` → the readable view, or "erased" once the key is gone.
"""

from proctor.privacy.erasure import Erased, erase_subject
from proctor.privacy.keys import KEYS_NAME, KeyStore, PendingErasure, read_master_key
from proctor.privacy.seal import DEFAULT_FIELDS, SEALABLE, Opened, Sealer, seal, unseal

__all__ = [
    "DEFAULT_FIELDS",
    "KEYS_NAME",
    "SEALABLE",
    "Erased",
    "KeyStore",
    "Opened",
    "PendingErasure",
    "Sealer",
    "erase_subject",
    "read_master_key",
    "seal",
    "unseal",
]
