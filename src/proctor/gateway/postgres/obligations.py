"""What an allow obliges the gateway to do to a statement and its result.

* ``read_only``: statements that change anything (``write``, ``ddl``, ``admin``) are refused
  with SQLSTATE 25006.
* ``max_rows:N``: a result is cut after N rows, with a NoticeResponse saying so, and its
  CommandComplete tag reports the rows actually sent. Counted per statement, and per portal
  across the Execute messages that fetch it in pieces.
* ``mask:a,b``: the values of result columns named ``a`` or ``b`` are replaced by NULL in
  every DataRow. NULL, not a placeholder string, because it decodes for every type in both
  the text and the binary format, so no client breaks on a masked value.

Several permits may each add obligations: the smallest ``max_rows`` and every masked column
apply.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from proctor.events.context import ActionClass
from proctor.gateway.postgres.protocol import ProtocolError, check_backend

__all__ = ["NO_OBLIGATIONS", "Obligations", "column_names", "mask_row", "parse_obligations"]

_CHANGES: frozenset[ActionClass] = frozenset({"write", "ddl", "admin"})
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")


@dataclass(frozen=True)
class Obligations:
    """The obligations of one allow, parsed."""

    read_only: bool = False
    max_rows: int | None = None
    mask: frozenset[str] = frozenset()

    def forbids(self, action: ActionClass) -> bool:
        """True when ``read_only`` rules out an action of this class."""
        return self.read_only and action in _CHANGES

    @property
    def touches_rows(self) -> bool:
        """True when result rows must be counted or rewritten."""
        return self.max_rows is not None or bool(self.mask)


NO_OBLIGATIONS = Obligations()


def parse_obligations(items: Iterable[str]) -> Obligations:
    """Read the normalized strings the policy loader produced (``policy/annotations.py``)."""
    read_only, max_rows, mask = False, None, set[str]()
    for item in items:
        name, _, arg = item.partition(":")
        if name == "read_only":
            read_only = True
        elif name == "max_rows":
            n = int(arg)
            max_rows = n if max_rows is None else min(max_rows, n)
        elif name == "mask":
            mask.update(c.lower() for c in arg.split(","))
        else:  # the loader refuses unknown obligations; meeting one here is a bug: fail closed
            raise ValueError(f"unknown obligation {item!r}")
    if not (read_only or max_rows is not None or mask):
        return NO_OBLIGATIONS
    return Obligations(read_only, max_rows, frozenset(mask))


def column_names(row_description: bytes) -> tuple[str, ...]:
    """The column names in a RowDescription body (``T``), lower-cased as PostgreSQL folds them
    (ProtocolError when it is malformed)."""
    check_backend(b"T", row_description)
    (count,) = _I16.unpack_from(row_description)
    names, at = [], 2
    for _ in range(count):
        end = row_description.index(b"\x00", at)
        names.append(row_description[at:end].decode(errors="replace").lower())
        at = end + 1 + 18  # table oid, column no, type oid, size, modifier, format
    return tuple(names)


def mask_row(data_row: bytes, masked: frozenset[int]) -> bytes:
    """A DataRow body (``D``) with the values at the ``masked`` positions set to NULL
    (ProtocolError when it is malformed)."""
    try:
        (count,) = _I16.unpack_from(data_row)
        out, at = [data_row[:2]], 2
        for i in range(count):
            (size,) = _I32.unpack_from(data_row, at)
            end = at + 4 + max(size, 0)
            out.append(_I32.pack(-1) if i in masked else data_row[at:end])
            at = end
    except struct.error:
        raise ProtocolError("upstream sent a malformed DataRow") from None
    if at != len(data_row):
        raise ProtocolError("upstream sent a malformed DataRow")
    return b"".join(out)
