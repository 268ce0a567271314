"""Evidence bundles: ledger events an auditor verifies offline, with the bundle alone.

- ``bundle``     ``write_bundle(ledger, indexes, out)``: the selected entries, one inclusion
                 proof each, all against one signed checkpoint, into a zip written aside and
                 renamed when complete (flat memory for any selection).
- ``verify``     ``verify_bundle(path, key=...)``: a ``BundleReport`` that is falsy when any
                 check failed, naming each member, line and index at fault.
- ``_format``    member names, ``manifest.json`` (``Manifest``) and the reader's ``BundleLimits``.
- ``_safezip``   reading an untrusted zip: safe unique names, bounded sizes, never extracted.
- ``_readme``    the ``README.md`` in every bundle: layout, how to verify by hand, the key warning.
- ``_standalone`` the ``verify_bundle.py`` in every bundle: Python 3 + ``cryptography`` only.

Data flows: ``Ledger`` → ``write_bundle`` → ``bundle.zip`` → (another machine) →
``verify_bundle`` → ``BundleReport``. Uses ``ledger`` (checkpoints, proofs, receipts, notes) and
``events`` (canonical form); the CLI is ``proctor evidence`` and ``proctor verify-bundle``.
"""

from proctor.evidence._format import BundleLimits
from proctor.evidence.bundle import BundleSummary, write_bundle
from proctor.evidence.verify import BundleReport, Finding, verify_bundle

__all__ = [
    "BundleLimits",
    "BundleReport",
    "BundleSummary",
    "Finding",
    "verify_bundle",
    "write_bundle",
]
