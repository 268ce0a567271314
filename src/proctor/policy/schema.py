"""Proctor's Cedar schema: the entities, actions and context every policy is checked against.

Policies are validated against this schema when they are loaded, so a policy that names an
unknown attribute or compares a number with a string is refused with its file and line
instead of failing (and being skipped) at request time. ``docs/policies.md`` explains each
attribute; ``proctor policy schema`` prints this text.

Everything in the context is always present (absent facts have neutral values: an empty
set, ``false``), so policies need no ``has`` checks, with one exception: ``network.ip`` is
optional because not every caller knows an address.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import cedarpy

from proctor.events.context import ACTION_CLASSES

__all__ = ["RESOURCE_ENTITY", "SCHEMA_TEXT", "cedar_schema"]

RESOURCE_ENTITY: Final = {
    "database": "Database",
    "table": "Table",
    "route": "Route",
    "service": "Service",
}
"""Cedar entity type of each ``Resource.type``."""

_ACTIONS = ", ".join(f'"{name}"' for name in ACTION_CLASSES)

SCHEMA_TEXT: Final = f"""\
// Who: users carry their roles and groups as parents, free-form attributes as tags.
entity Role;
entity Group;
entity User in [Role, Group] = {{ name: String, kind: String }} tags String;

// What: databases hold tables; HTTP routes and services stand alone.
entity Database = {{ sensitivity: String }};
entity Table in [Database] = {{ sensitivity: String, database: String }};
entity Route = {{ sensitivity: String }};
entity Service = {{ sensitivity: String }};

type Risk = {{ score: Long, level: String, factors: Set<String> }};
type Mfa = {{ present: Bool, fresh: Bool, age_min: Long }};
type Device = {{ known: Bool, managed: Bool, compliant: Bool }};
type Network = {{ ip?: ipaddr, labels: Set<String>, country: String, asn: Long }};
type Clock = {{ hour: Long, weekday: Long }};
type Sql = {{
  statement_count: Long, has_where: Bool, objects: Set<String>, functions: Set<String>,
  writes_in_cte: Bool, copy_program: Bool
}};
type Context = {{
  risk: Risk, mfa: Mfa, auth_method: String, device: Device, network: Network, time: Clock,
  operation: String, sql: Sql, approved: Bool
}};

action {_ACTIONS} appliesTo {{
  principal: [User],
  resource: [Database, Table, Route, Service],
  context: Context
}};
"""


@cache
def cedar_schema() -> cedarpy.Schema:
    """The parsed schema (parsed once: a handle saves re-parsing it on every decision)."""
    return cedarpy.Schema.from_str(SCHEMA_TEXT)
