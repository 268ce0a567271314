"""The ``[retention]`` section of ``proctor.toml``: rules, archive directory, schedule, limits.

Same conventions as ``proctor.config``: msgspec structs where an unknown key or a wrong type is
an error, then cross-checks that name each bad key (``retention.rules[2].kinds[0]: …``).
``retention_problems`` is what ``config.py`` calls for the section; ``load_retention`` reads
the section from any TOML file for ``proctor retention run --rules FILE`` (``proctor.toml``
itself works). Paths are relative to the file's directory.

::

    [retention]
    archive_dir = "archive"          # where archives go (created if missing)
    interval_s = 86400               # schedule: run every day (0: only by hand)

    [[retention.rules]]
    name = "sessions-7y"
    kinds = ["session.*"]
    keep_days = 2555

    [[retention.rules]]
    name = "queries-400d"
    kinds = ["query", "decision", "outcome"]
    sensitivity = ["public", "internal", "none"]     # "none": events without one
    keep_days = 400

The first rule that matches an event decides; an event no rule matches is kept forever.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from proctor.errors import UsageError
from proctor.events.schema import EVENT_KINDS

__all__ = [
    "SENSITIVITIES",
    "LoadedRetention",
    "RetentionConfig",
    "RetentionRule",
    "load_retention",
    "retention_problems",
    "rule_matches",
]

Sensitivity = Literal["public", "internal", "confidential", "restricted", "none"]
SENSITIVITIES: Final[tuple[Sensitivity, ...]] = (
    "public",
    "internal",
    "confidential",
    "restricted",
    "none",
)
"""Values a rule's ``sensitivity`` may list; ``none`` matches events that carry none."""

_Name = Annotated[str, Meta(pattern="^[A-Za-z0-9_.-]{1,64}$")]
_Glob = Annotated[str, Meta(min_length=1, max_length=64)]


class _Part(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Strict settings: an unknown key is an error, not ignored."""


class RetentionRule(_Part, frozen=True, kw_only=True):
    """Keep events of these kinds (globs) and/or target sensitivities for ``keep_days``."""

    name: _Name
    kinds: tuple[_Glob, ...] = ()
    """Event kinds, shell globs (``session.*``); empty: any kind."""
    sensitivity: tuple[Sensitivity, ...] = ()
    """``target.sensitivity`` values (``none``: events without one); empty: any."""
    keep_days: Annotated[int, Meta(ge=1, le=36_500)]


class RetentionConfig(_Part, frozen=True, kw_only=True):
    """How long events are kept, where pruned entries are archived, and how often to run."""

    rules: tuple[RetentionRule, ...] = ()
    archive_dir: Annotated[str, Meta(min_length=1)] = "archive"
    holds: str | None = None
    """The legal-hold database (default: ``holds.sqlite`` in the ledger directory)."""
    interval_s: Annotated[int, Meta(ge=0, le=30 * 86_400)] = 86_400
    """Run on a schedule this often (0: only by ``proctor retention run``)."""
    max_entries_per_archive: Annotated[int, Meta(ge=1, le=10_000_000)] = 50_000
    """One archive (and one prune event) covers at most this many entries (~1 KiB each of
    proofs): bounds the memory, time and file size of each step."""
    max_archives_per_run: Annotated[int, Meta(ge=1, le=100_000)] = 100
    """A run stops after this many archives; the next run goes on."""


def rule_matches(rule: RetentionRule, kind: str, sensitivity: str | None) -> bool:
    """Whether ``rule`` applies to an event of ``kind`` with ``target.sensitivity``."""
    if rule.kinds and not any(fnmatch.fnmatchcase(kind, g) for g in rule.kinds):
        return False
    return not rule.sensitivity or (sensitivity or "none") in rule.sensitivity


def retention_problems(config: RetentionConfig, key: str = "retention") -> list[str]:
    """Every cross-check problem as ``key: reason`` (empty when the section is usable)."""
    out: list[str] = []
    if not config.rules:
        out.append(f"{key}.rules: no rules; name at least one (an unmatched event is kept)")
    seen: set[str] = set()
    covered: set[tuple[str, str]] = set()  # (kind, sensitivity) pairs an earlier rule decides
    for i, rule in enumerate(config.rules):
        where = f"{key}.rules[{i}]"
        if rule.name in seen:
            out.append(f"{where}.name: {rule.name!r} is used twice")
        seen.add(rule.name)
        if not rule.kinds and not rule.sensitivity:
            out.append(f"{where}: give kinds or sensitivity (kinds = ['*'] to match every event)")
        for j, glob in enumerate(rule.kinds):
            if not any(fnmatch.fnmatchcase(k, glob) for k in EVENT_KINDS):
                out.append(f"{where}.kinds[{j}]: {glob!r} matches no event kind")
        pairs = {(k, s) for k in EVENT_KINDS for s in SENSITIVITIES if rule_matches(rule, k, s)}
        if pairs and pairs <= covered:
            out.append(f"{where}: never applies (rules before it match every event it matches)")
        covered |= pairs
    return out


@dataclass(frozen=True)
class LoadedRetention:
    """A checked ``[retention]`` section and the directory its paths are relative to."""

    config: RetentionConfig
    base: Path

    def path(self, value: str) -> Path:
        """A path from the file, made absolute."""
        p = Path(value)
        return p if p.is_absolute() else self.base / p


def load_retention(path: Path) -> LoadedRetention:
    """The ``[retention]`` table of a TOML file, checked; UsageError names every bad key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    if "retention" not in raw:
        raise UsageError(f"{path}: no [retention] section")
    try:
        config = msgspec.convert(raw["retention"], RetentionConfig)
    except msgspec.ValidationError as exc:
        message, sep, at = str(exc).rpartition(" - at `")
        sub = at.rstrip("`").removeprefix("$") if sep else ""
        raise UsageError(f"{path}: retention{sub}: {message if sep else exc}") from None
    problems = retention_problems(config)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if problems[1:] else ""
        raise UsageError(f"{path}: {problems[0]}{more}")
    return LoadedRetention(config, path.resolve().parent)
