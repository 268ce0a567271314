"""The annotations Proctor reads on a policy, checked strictly when policies load.

    @id("ddl-needs-mfa")                   required, unique across the directory
    @reason("DDL on production needs a fresh MFA")   shown to users and recorded
    @on_deny("step_up")                    a forbid that MFA or an approval can cure
    @obligation("read_only; max_rows:1000; mask:email,ssn")   on a permit, enforced by the gateway
    @recheck("5m")                         how long a grant stands before it is re-decided

An obligation or duration Proctor cannot enforce is an error, never ignored: a permit whose
condition the gateway cannot honour must not load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["KNOWN_ANNOTATIONS", "AnnotationError", "Annotations", "parse_annotations"]

KNOWN_ANNOTATIONS: Final = frozenset({"id", "reason", "on_deny", "obligation", "recheck"})

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_COLUMN_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
_DURATION_RE: Final = re.compile(r"([1-9][0-9]{0,6})(s|m|h|d)")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_ROWS_LIMIT: Final = 1_000_000_000


class AnnotationError(ValueError):
    """An annotation Proctor cannot honour; the message says which and why."""


@dataclass(frozen=True)
class Annotations:
    """What one policy's annotations say, normalized."""

    id: str
    reason: str | None
    on_deny: Literal["deny", "step_up"]
    obligations: tuple[str, ...]
    recheck_s: int | None


def parse_annotations(values: Mapping[str, str], effect: str) -> Annotations:
    """Check and normalize a policy's annotations (``effect`` is ``permit`` or ``forbid``)."""
    unknown = sorted(set(values) - KNOWN_ANNOTATIONS)
    if unknown:
        raise AnnotationError(
            f"unknown annotation @{unknown[0]} (known: {', '.join(sorted(KNOWN_ANNOTATIONS))})"
        )
    pid = values.get("id")
    if pid is None:
        raise AnnotationError('every policy needs an @id("…")')
    if _ID_RE.fullmatch(pid) is None:
        raise AnnotationError(f"@id {pid!r} must match {_ID_RE.pattern}")
    reason = values.get("reason")
    if reason is not None and not reason.strip():
        raise AnnotationError("@reason is empty")
    on_deny = values.get("on_deny", "deny")
    if on_deny not in ("deny", "step_up"):
        raise AnnotationError(f'@on_deny must be "deny" or "step_up", not {on_deny!r}')
    if on_deny == "step_up" and effect != "forbid":
        raise AnnotationError("@on_deny applies to forbid policies only")
    obligations: tuple[str, ...] = ()
    if "obligation" in values:
        if effect != "permit":
            raise AnnotationError("@obligation applies to permit policies only")
        obligations = parse_obligations(values["obligation"])
    recheck = values.get("recheck")
    recheck_s = None if recheck is None else parse_duration(recheck, "@recheck")
    return Annotations(
        id=pid,
        reason=reason,
        on_deny="step_up" if on_deny == "step_up" else "deny",
        obligations=obligations,
        recheck_s=recheck_s,
    )


def parse_obligations(text: str) -> tuple[str, ...]:
    """``read_only; max_rows:N; mask:col,col`` → normalized obligation strings."""
    out: list[str] = []
    for raw in text.split(";"):
        item = raw.strip()
        name, _, arg = item.partition(":")
        if name == "read_only" and not arg:
            out.append("read_only")
        elif name == "max_rows" and arg.isdigit() and 0 < int(arg) <= MAX_ROWS_LIMIT:
            out.append(f"max_rows:{int(arg)}")
        elif name == "mask" and arg:
            cols = [c.strip() for c in arg.split(",")]
            bad = [c for c in cols if _COLUMN_RE.fullmatch(c) is None]
            if bad:
                raise AnnotationError(f"@obligation mask: {bad[0]!r} is not a column name")
            out.append("mask:" + ",".join(cols))
        else:
            raise AnnotationError(
                f"@obligation {item!r} is not one Proctor enforces"
                f" (read_only, max_rows:1..{MAX_ROWS_LIMIT}, mask:col[,col…])"
            )
    return tuple(out)


def parse_duration(text: str, what: str) -> int:
    """``30s``, ``5m``, ``2h``, ``1d`` → seconds."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise AnnotationError(f"{what} {text!r} is not a duration like 30s, 5m, 2h or 1d")
    return int(m.group(1)) * _UNIT_S[m.group(2)]
