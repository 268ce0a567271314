"""Helpers for policy tests: write a policy directory, build a request context."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proctor.events.context import RequestContext, decode_context
from proctor.policy.engine import PolicyEngine
from proctor.policy.loader import load_policies

EXAMPLES = Path(__file__).parents[2] / "examples"


def request(**parts: Any) -> RequestContext:
    """An analyst reading a table at 10:00 UTC on a Monday, with ``parts`` overriding."""
    base: dict[str, Any] = {
        "principal": {"id": "alice", "roles": ["analyst"]},
        "action": {"class": "read", "operation": "SELECT"},
        "resource": {"type": "table", "name": "public.orders", "database": "shop"},
        "time": "2026-11-23T10:00:00Z",
    }
    base.update(parts)
    return decode_context(base)


@pytest.fixture
def engine_for(tmp_path: Path) -> Callable[..., PolicyEngine]:
    """Write ``{file name: text}`` into a fresh directory and load an engine from it."""

    def make(files: dict[str, str] | None = None, **texts: str) -> PolicyEngine:
        directory = tmp_path / "policies"
        directory.mkdir(exist_ok=True)
        for name, text in {**(files or {}), **{f"{k}.cedar": v for k, v in texts.items()}}.items():
            (directory / name).write_text(text)
        return PolicyEngine(load_policies(directory))

    return make
