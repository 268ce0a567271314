"""Load a directory of ``.cedar`` files into a checked, immutable policy bundle.

Loading is all or nothing. Every file is parsed, every policy validated against Proctor's
schema (:mod:`proctor.policy.schema`) and every annotation checked; all problems are
reported together as ``FILE:LINE: message`` and nothing of a broken directory is used. The
bundle's revision is a SHA-256 over the schema and every file's name and bytes, so a
decision names exactly the text that made it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import cedarpy

from proctor.errors import InputError
from proctor.policy._source import Statement, split_statements
from proctor.policy.annotations import AnnotationError, parse_annotations
from proctor.policy.schema import SCHEMA_TEXT, cedar_schema

__all__ = ["Policy", "PolicyBundle", "PolicyError", "load_policies", "load_policy_texts"]

MAX_POLICY_FILES: Final = 10_000
MAX_FILE_BYTES: Final = 4 << 20
_REVISION_DOMAIN: Final = b"proctor.policy/v1\n"
_POLICY_PREFIX_RE: Final = re.compile(r"^for policy `policy\d+`, ")


class PolicyError(InputError):
    """Policies that cannot be loaded; ``problems`` lists each as ``FILE:LINE: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}" if problems else "no policies")

    def details(self) -> str:
        """Every problem, one per line."""
        return "\n".join(self.problems)


@dataclass(frozen=True)
class Policy:
    """One loaded policy: where it is, what it does, and what its annotations say."""

    id: str
    file: str
    line: int
    effect: Literal["permit", "forbid"]
    reason: str | None
    on_deny: Literal["deny", "step_up"]
    obligations: tuple[str, ...]
    recheck_s: int | None
    text: str


@dataclass(frozen=True)
class PolicyBundle:
    """A validated policy set: Cedar's parsed form plus Proctor's view of each policy."""

    policies: Mapping[str, Policy]
    revision: str
    files: Mapping[str, str]
    cedar: cedarpy.PolicySet
    context_keys: frozenset[str] | None = None
    """The ``context`` attributes any policy reads (None: a policy uses ``context`` whole)."""
    bodies: Mapping[str, Any] = field(default_factory=dict)
    """Each policy's Cedar JSON (EST) by id: what the engine slices the set by."""


def load_policies(directory: Path) -> PolicyBundle:
    """Every ``*.cedar`` file under ``directory`` (recursively), or PolicyError."""
    if not directory.is_dir():
        raise PolicyError([f"{directory}: not a directory of .cedar files"])
    files: dict[str, str] = {}
    problems: list[str] = []
    paths = sorted(directory.rglob("*.cedar"))
    if len(paths) > MAX_POLICY_FILES:
        raise PolicyError([f"{directory}: more than {MAX_POLICY_FILES} .cedar files"])
    for path in paths:
        name = path.relative_to(directory).as_posix()
        try:
            raw = path.read_bytes()
            if len(raw) > MAX_FILE_BYTES:
                problems.append(f"{name}: larger than {MAX_FILE_BYTES} bytes")
                continue
            files[name] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})")
        except OSError as exc:
            problems.append(f"{name}: cannot read: {exc.strerror}")
    if not paths:
        problems.append(f"{directory}: no .cedar files (an empty policy set would deny everything)")
    if problems:
        raise PolicyError(problems)
    return load_policy_texts(files)


def load_policy_texts(files: Mapping[str, str]) -> PolicyBundle:
    """A bundle from ``{file name: text}`` (the loader's core; also used to replay archives)."""
    problems: list[str] = []
    policies: dict[str, Policy] = {}
    cedar_json: dict[str, Any] = {}
    for name in sorted(files):
        for policy, body in _load_file(name, files[name], problems):
            seen = policies.get(policy.id)
            if seen is not None:
                problems.append(
                    f"{name}:{policy.line}: @id {policy.id!r} is already used at"
                    f" {seen.file}:{seen.line}"
                )
                continue
            policies[policy.id] = policy
            cedar_json[policy.id] = body
    if problems:
        raise PolicyError(problems)
    doc = {"staticPolicies": cedar_json, "templates": {}, "templateLinks": []}
    try:
        cedar = cedarpy.PolicySet.from_json_str(json.dumps(doc))
    except ValueError as exc:  # every policy parsed on its own; this would be a cedarpy bug
        raise PolicyError([f"policy set: {exc}"]) from None
    keys = _context_keys(cedar_json.values())
    return PolicyBundle(policies, revision_of(files), dict(files), cedar, keys, cedar_json)


def _context_keys(bodies: Iterable[Any]) -> frozenset[str] | None:
    """Which first-level ``context`` attributes the policies read, from their Cedar JSON.

    ``context.x`` and ``context has x`` both name ``x``; ``context`` used any other way (compared
    whole, say) means every attribute is needed, and the answer is None.
    """
    keys: set[str] = set()
    whole = False

    def walk(node: Any) -> None:
        nonlocal whole
        if isinstance(node, dict):
            for op in (".", "has"):
                inner = node.get(op)
                if isinstance(inner, dict) and inner.get("left") == {"Var": "context"}:
                    keys.add(str(inner.get("attr")))
                    return
            if node.get("Var") == "context":
                whole = True
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for body in bodies:
        walk(body.get("conditions", []))
    return None if whole else frozenset(keys)


def revision_of(files: Mapping[str, str], schema: str = SCHEMA_TEXT) -> str:
    """SHA-256 (hex) over the schema and each file's name and text, in name order."""
    h = hashlib.sha256(_REVISION_DOMAIN)
    for part in (schema, *(x for n in sorted(files) for x in (n, files[n]))):
        data = part.encode()
        h.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two inputs collide
        h.update(data)
    return h.hexdigest()


def _load_file(name: str, text: str, problems: list[str]) -> list[tuple[Policy, Any]]:
    """The file's policies with their Cedar JSON; problems appended, nothing returned then."""
    statements = split_statements(text)
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError:
        # Cedar names only the first syntax error and no position: parse statement by statement.
        for st in statements:
            try:
                cedarpy.policies_to_json_str(st.text)
            except ValueError as exc:
                problems.append(f"{name}:{st.line}: syntax error: {exc}")
            else:  # report the schema problems of the statements that do parse, too
                problems.extend(validate_text(name, st.text, [st]))
        if not any(p.startswith(f"{name}:") for p in problems):
            problems.append(f"{name}: syntax error")
        return []
    static: dict[str, Any] = parsed["staticPolicies"]
    templates: dict[str, Any] = parsed["templates"]
    if len(static) + len(templates) != len(statements):
        problems.append(f"{name}: could not map its {len(statements)} statements to policies")
        return []
    for pid in templates:
        problems.append(
            f"{name}:{_line(statements, pid)}: templates (?principal, ?resource) are not supported"
        )
    result = validate_text(name, text, statements)
    problems.extend(result)
    out: list[tuple[Policy, Any]] = []
    for pid, body in static.items():
        st = statements[int(pid.removeprefix("policy"))]
        effect = body["effect"]
        try:
            notes = parse_annotations(body.get("annotations", {}), effect)
        except AnnotationError as exc:
            problems.append(f"{name}:{st.line}: {exc}")
            continue
        policy = Policy(
            id=notes.id,
            file=name,
            line=st.line,
            effect=effect,
            reason=notes.reason,
            on_deny=notes.on_deny,
            obligations=notes.obligations,
            recheck_s=notes.recheck_s,
            text=st.text.strip(),
        )
        out.append((policy, body))
    return out if not result and not templates else []


def validate_text(name: str, text: str, statements: list[Statement]) -> list[str]:
    """Schema validation problems of one file's text, each as ``FILE:LINE: message``."""
    result = cedarpy.validate_policies(text, cedar_schema())
    out = []
    for err in result.errors:
        where = _line(statements, err.policy_id) if err.policy_id else "?"
        pid = result.id_annotations_by_policy_id.get(err.policy_id) if err.policy_id else None
        label = f"[{pid}] " if pid else ""
        out.append(f"{name}:{where}: {label}{_POLICY_PREFIX_RE.sub('', err.error)}")
    return out


def _line(statements: list[Statement], pid: str) -> int | str:
    try:
        return statements[int(pid.removeprefix("policy"))].line
    except (ValueError, IndexError):
        return "?"
