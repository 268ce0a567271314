"""Proctor: an access gateway whose every decision is explained and every record provable.

Map of the package (data flows top to bottom):

- ``events``  the one event schema ``proctor.access/v1`` (typed, frozen structs), its canonical
  JSON form (RFC 8785) and the clock that stamps events with their time quality.
- ``ledger``  the tamper-evident log: RFC 9162 Merkle math, C2SP tiles, signed-note
  checkpoints, tlog-proof receipts, a SQLite store, the group-commit appender and the verifier.
- ``risk``, ``policy``, ``decision``  an explained risk score, Cedar policies, and the
  decision event that records both.
- ``identity`` who a client is beyond Proctor's own users: OpenID Connect tokens and their keys.
- ``gateway``  protocol gateways (PostgreSQL): decide and record every statement before it runs.
- ``sessions`` live sessions, re-decided when anything changes, cut when no longer allowed.
- ``runtime``  a configuration's ledger, policies, risk engine and decider, opened together.
- ``cli``     the ``proctor`` command: a thin skin over the library.

``ledger`` and ``events`` import nothing else of Proctor.
"""

__version__ = "0.1.0"
