"""Only the policies that can apply: the policy set sliced by action and principal.

Cedar evaluates every policy of a set for every request, so a decision's cost grows with the
set (bench/bench_decision.py). A policy whose scope names another action, or a principal the
request's user is not and does not belong to, can never be satisfied; Cedar does not even
evaluate its conditions, so it can neither determine the decision nor raise an error. Leaving
such policies out therefore changes nothing, and a request is decided by the slice for its
action and its user's own identity, roles and groups.

That holds because Proctor's principals have a flat hierarchy: a user's ancestors are exactly
its roles and groups (the engine gives Role and Group entities no parents). A scope this
module does not understand keeps its policy in every slice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cedarpy

__all__ = ["Applicability", "applicability", "slice_set"]

Uid = tuple[str, str]
Applicability = tuple[frozenset[Uid] | None, frozenset[str] | None]
"""(principals it may apply to, actions it may apply to); None means any."""


def _uid(node: Any) -> Uid | None:
    if (
        isinstance(node, dict)
        and isinstance(node.get("type"), str)
        and isinstance(node.get("id"), str)
    ):
        return (node["type"], node["id"])
    return None


def _principals(scope: Any) -> frozenset[Uid] | None:
    if not isinstance(scope, dict):
        return None
    op = scope.get("op")
    if op in ("==", "in") and (uid := _uid(scope.get("entity"))) is not None:
        return frozenset({uid})
    if op == "is" and isinstance(scope.get("in"), dict):
        uid = _uid(scope["in"].get("entity"))
        return None if uid is None else frozenset({uid})
    return None  # All, a bare `is`, anything else: may apply to anyone


def _actions(scope: Any) -> frozenset[str] | None:
    if not isinstance(scope, dict):
        return None
    op = scope.get("op")
    entities = (
        scope.get("entities") if op == "in" and "entities" in scope else [scope.get("entity")]
    )
    if op not in ("==", "in"):
        return None
    ids = [_uid(e) for e in entities or []]
    if not ids or any(u is None or u[0] != "Action" for u in ids):
        return None
    return frozenset(u[1] for u in ids if u is not None)


def applicability(body: Mapping[str, Any]) -> Applicability:
    """Which principals and actions a policy's scope can match."""
    return _principals(body.get("principal")), _actions(body.get("action"))


def slice_set(
    bodies: Mapping[str, Any],
    scopes: Mapping[str, Applicability],
    action: str,
    principal: frozenset[Uid],
) -> cedarpy.PolicySet:
    """The policy set of those that may apply to ``action`` by ``principal``."""
    chosen = {}
    for pid, body in bodies.items():
        who, what = scopes[pid]
        if (what is None or action in what) and (who is None or not who.isdisjoint(principal)):
            chosen[pid] = body
    doc = {"staticPolicies": chosen, "templates": {}, "templateLinks": []}
    return cedarpy.PolicySet.from_json_str(json.dumps(doc))
