"""The gateway part of ``proctor demo``: real clients through a real gateway.

A scratch database on the local PostgreSQL, a gateway in front of it (embedded, with its own
ledger, the example policies and four users), then the story: an analyst's ordinary month;
her reading (a column masked, a restricted table refused); her account used from another
continent while her own session is open (the login needs a step-up, and her open session is
cut because the account looks taken over); a DBA whose DDL needs a step-up; a contractor
whose write is refused and who is then revoked in the middle of a transaction. Each step
prints the decisions the ledger recorded, with their risk factors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from rich.table import Table

from proctor.cli._app import out, plain
from proctor.cli.relay import Relay
from proctor.config import load_config
from proctor.errors import UsageError
from proctor.gateway.postgres.embedded import Embedded
from proctor.gateway.postgres.scram import make_verifier
from proctor.gateway.postgres.server import admin_request
from proctor.ledger.ledger import write_secret
from proctor.runtime import Runtime, open_runtime

__all__ = ["GEO_ROWS", "PG_ADMIN", "SCRATCH_DB", "GatewayStory"]

SCRATCH_DB: Final = "proctor_demo"
PG_ADMIN: Final = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
ABROAD: Final = "127.0.0.2"
USERS: Final = {
    "alice": 'roles = ["analyst"]',
    "bob": 'roles = ["dba"]',
    "carol": 'groups = ["contractors"]',
}
_SETUP: Final = """
CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Linus', 'linus@example.com'),
    (3, 'Grace', 'grace@example.com');
CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric);
INSERT INTO orders SELECT g, 1 + g % 3, g * 10 FROM generate_series(1, 50) g;
CREATE SCHEMA hr;
CREATE TABLE hr.salaries (who text, amount int);
INSERT INTO hr.salaries VALUES ('Ada', 9000);
"""
GEO_ROWS: Final = """
[[risk.geo]]
cidr = "127.0.0.1/32"
country = "DE"
city = "Berlin"
latitude = 52.52
longitude = 13.405

[[risk.geo]]
cidr = "127.0.0.2/32"
country = "BR"
city = "Sao Paulo"
latitude = -23.55
longitude = -46.63
"""
"""Where the demo's two loopback addresses are: 127.0.0.1 in Berlin, 127.0.0.2 in Sao Paulo."""
_CONFIG: Final = """
gateway = "proctor-demo"
admin_socket = "admin.sock"

[[listeners]]
address = "127.0.0.1:0"
upstream = "demo"

[[upstreams]]
name = "demo"
host = "127.0.0.1"
port = 5432
database = "{db}"
user = "postgres"

[policies]
directory = "policies"
mfa_fresh_s = 900

[ledger]
directory = "ledger"

[privacy]
master_key_file = "master.key"

[risk]
sensitivity = [["{db}/hr.*", "restricted"]]

{geo}"""


def prepare_database(name: str) -> None:
    """(Re)create the scratch database ``name`` with a few tables, straight on PostgreSQL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):  # an identifier, not SQL to parse
        raise UsageError(f"--database: {name!r} is not a plain lower-case identifier")
    ident = sql.Identifier(name)
    with psycopg.connect(PG_ADMIN, autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        db.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    with psycopg.connect(PG_ADMIN.replace("dbname=postgres", f"dbname={name}")) as db:
        db.execute(_SETUP)


def write_config(base: Path, policies: Path, database: str) -> tuple[Path, dict[str, str]]:
    """The demo's proctor.toml and the users' (fresh, random) passwords."""
    shutil.copytree(policies, base / "policies")
    passwords = {u: secrets.token_urlsafe(12) for u in USERS}
    users = "".join(
        f'\n[[users]]\nname = "{u}"\n{grant}\nscram_verifier = "{make_verifier(passwords[u])}"\n'
        for u, grant in USERS.items()
    )
    path = base / "proctor.toml"
    path.write_text(_CONFIG.format(db=database, geo=GEO_ROWS) + users)
    write_secret(base / "master.key", base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path, passwords


def _factors(doc: dict[str, Any]) -> str:
    risk = doc.get("risk") or {}
    parts = [f"{f['signal']} +{f['points']}" for f in risk.get("factors", [])[:4]]
    head = f"{risk.get('score', '')} {risk.get('level', '')}".strip()
    return head + (f" ({', '.join(parts)})" if parts else "")


def _what(doc: dict[str, Any]) -> str:
    action = doc.get("action") or {}
    text = action.get("statement") or action.get("operation") or doc["kind"]
    ip = (doc.get("actor") or {}).get("ip")
    return f"{text} from {ip}" if action.get("class") == "connect" and ip else text


def _verdict(doc: dict[str, Any]) -> str:
    d = doc.get("decision") or {}
    effect = d.get("effect", "")
    colour = {"allow": "green", "deny": "red", "step_up": "yellow"}.get(effect, "white")
    words = f"[{colour}]{effect.upper()}[/]"
    if doc["kind"] == "session.revoked":
        words = "[red]SESSION CUT[/]"
    why = "; ".join(d.get("reasons", []))
    oblig = ", ".join(d.get("obligations", []))
    return words + f"\n{plain(why)}" + (f"\nobligations: {plain(oblig)}" if oblig else "")


@dataclass
class GatewayStory:
    """Runs the story against an embedded gateway; ``ok`` turns False on any surprise."""

    runtime: Runtime
    embedded: Embedded
    passwords: dict[str, str]
    database: str
    ok: bool = True
    seen: int = 0

    # -- plumbing ----------------------------------------------------------------------------

    def dsn(self, user: str, port: int | None = None, **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(port or self.embedded.port), "user": user}
        parts |= {"password": self.passwords[user], "dbname": self.database, "sslmode": "disable"}
        return " ".join(f"{k}={v}" for k, v in (parts | extra).items())

    def connect(self, user: str, port: int | None = None, **extra: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(user, port, **extra), autocommit=True)

    def expect(self, what: str, good: bool) -> None:
        """Say whether the step did what the story says it does."""
        mark = "[green]as expected[/]" if good else "[bold red]NOT as expected[/]"
        out.print(f"  {what}: {mark}")
        self.ok &= good

    def attempt(self, conn: psycopg.Connection[Any], text: str) -> list[tuple[Any, ...]] | str:
        """Run one statement; its rows, or the error PostgreSQL-style as the client saw it."""
        prompt = f"  [dim]{conn.info.user}>[/] {plain(text)}\n    "
        try:
            cur = conn.execute(text)
            rows = cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            state = exc.sqlstate or "-----"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            out.print(f"{prompt}[red]ERROR {state}[/] {plain(first)}")
            return first
        out.print(prompt + plain(str(rows)))
        return rows

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until closed connections finished recording."""
        deadline = time.monotonic() + timeout
        while self.embedded.live() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # outcome events are recorded just after a connection's last reply

    def show(self, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Print the decisions and revocations recorded since the last call; return them."""
        docs = []
        for index, data in self.runtime.ledger.entries(self.seen):
            docs.append(json.loads(data) | {"_index": index})
        self.seen += len(docs)
        shown = [d for d in docs if d["kind"] in ("decision", "session.revoked", "auth.failed")]
        shown = [d for d in shown if keep is None or keep(d)]
        if shown:
            table = Table("#", "who", "what", "decision and why", "risk (top factors)")
            for d in shown:
                who = (d.get("actor") or {}).get("id", "")
                table.add_row(
                    str(d.get("_index", "")), who, plain(_what(d)), _verdict(d), _factors(d)
                )
            out.print(table)
        return docs


@contextlib.contextmanager
def running_gateway(config: Path) -> Iterator[tuple[Runtime, Embedded]]:
    """Open the runtime and start the embedded gateway; stop and close both afterwards."""
    runtime = open_runtime(load_config(config))
    try:
        with Embedded(runtime) as embedded:
            yield runtime, embedded
    finally:
        runtime.close()


def revoke_over_admin_socket(path: Path, user: str, reason: str) -> dict[str, Any]:
    """What ``proctor sessions revoke`` does: one request on the admin socket."""
    return asyncio.run(admin_request(path, {"op": "revoke", "user": user, "reason": reason}))


# -- the story ------------------------------------------------------------------------------------


def ordinary_month(story: GatewayStory, sessions: int) -> None:
    """Alice's usual sessions from the Berlin office teach the baselines what is normal."""
    for _ in range(sessions):
        with story.connect("alice", application_name="psql") as conn:
            conn.execute("SELECT count(*) FROM orders").fetchall()
    story.settle()
    docs = story.show(keep=lambda d: False)
    allowed = sum(1 for d in docs if (d.get("decision") or {}).get("effect") == "allow")
    out.print(
        f"  {sessions} sessions of alice from 127.0.0.1 (Berlin): {allowed} decisions, all allowed"
    )
    story.expect("the baselines learned her office, client and hours", allowed >= 2 * sessions)


def analyst_reads(story: GatewayStory) -> psycopg.Connection[Any]:
    """Alice reads customers (email masked) and is refused the restricted HR table."""
    conn = story.connect("alice", application_name="psql")
    rows = story.attempt(conn, "SELECT id, name, email FROM customers ORDER BY id LIMIT 2")
    story.expect("emails come back masked (NULL)", isinstance(rows, list) and rows[0][2] is None)
    refused = story.attempt(conn, "SELECT * FROM hr.salaries")
    story.expect("the restricted table is refused, the session goes on", isinstance(refused, str))
    still = story.attempt(conn, "SELECT count(*) FROM orders")
    story.expect("her session still works", isinstance(still, list))
    story.show()
    return conn


def login_from_abroad(story: GatewayStory, home: psycopg.Connection[Any]) -> None:
    """Her password used from Sao Paulo minutes after Berlin, while her session is open."""
    out.print(
        plain(
            "  (a local relay makes this connection come from 127.0.0.2, which the demo's\n"
            "   [[risk.geo]] rows place in Sao Paulo; her open session is in Berlin)"
        )
    )
    with Relay(ABROAD, ("127.0.0.1", story.embedded.port)) as relay:
        try:
            psycopg.connect(story.dsn("alice", relay.port, application_name="DBeaver"))
            story.expect("the login from abroad is refused", False)
        except psycopg.OperationalError as exc:
            said = [line for line in str(exc).splitlines() if "Proctor" in line] or [str(exc)]
            out.print(f"  [red]login refused:[/] {plain(said[0].split('FATAL:')[-1].strip())}")
            story.expect("the login from abroad needs a step-up", "step-up" in str(exc))
    time.sleep(0.1)  # the re-decision of her other session runs on the gateway's loop
    cut = story.attempt(home, "SELECT count(*) FROM orders")
    story.expect("her open Berlin session was cut too", isinstance(cut, str))
    home.close()
    story.settle()
    story.show()


def dba_ddl(story: GatewayStory) -> None:
    """Bob may administer, but schema changes need a fresh MFA."""
    with story.connect("bob", application_name="psql") as conn:
        ddl = story.attempt(conn, "CREATE TABLE public.notes (id int)")
        story.expect("DDL without a fresh MFA is a step-up", isinstance(ddl, str) and "MFA" in ddl)
        rows = story.attempt(conn, "SELECT who, amount FROM hr.salaries")
        story.expect("the DBA reads the restricted table", isinstance(rows, list))
    story.settle()
    story.show()


def contractor_revoked(story: GatewayStory, admin_socket: Path) -> None:
    """Carol reads on a read-only grant, is refused a write, then revoked mid-transaction."""
    conn = story.connect("carol", application_name="psql")
    story.attempt(conn, "SELECT id, total FROM orders ORDER BY id LIMIT 3")
    write = story.attempt(conn, "UPDATE orders SET total = 0 WHERE id = 1")
    story.expect("a write on her read-only grant is refused", isinstance(write, str))
    story.attempt(conn, "BEGIN")
    story.attempt(conn, "SELECT sum(total) FROM orders")
    started = time.perf_counter()
    answer = revoke_over_admin_socket(admin_socket, "carol", "contract ended")
    out.print(f"  [bold]admin:[/] proctor sessions revoke --user carol → {answer}")
    cut = story.attempt(conn, "SELECT count(*) FROM customers")
    elapsed_ms = (time.perf_counter() - started) * 1000
    story.expect(
        f"her transaction is ended at once ({elapsed_ms:.0f} ms from the request to her error)",
        isinstance(cut, str) and answer == {"revoked": 1},
    )
    conn.close()
    story.settle()
    story.show()
