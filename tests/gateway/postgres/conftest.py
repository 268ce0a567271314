"""A real gateway in front of the machine's PostgreSQL, on a real socket, for each test.

The gateway runs on its own event loop in a thread, so tests can use blocking clients
(psycopg, psql) as well as asyncio ones (asyncpg). PostgreSQL must be up on 127.0.0.1:5432
(``.ci/run`` starts it); a test never skips because it is down.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proctor.config import load_config
from proctor.gateway.postgres.embedded import Embedded
from proctor.gateway.postgres.scram import make_verifier
from proctor.gateway.postgres.server import Gateway
from proctor.runtime import Runtime, open_runtime

ROOT = Path(__file__).resolve().parents[3]
# Each test run has a database of its own, so runs from several checkouts on one machine
# (and CI beside a working session) never drop each other's tables.
DB = f"proctor_t{os.getpid()}_{secrets.token_hex(3)}"
PG = f"host=127.0.0.1 port=5432 user=postgres dbname={DB}"
PASSWORDS = {"alice": "analyst-pw", "bob": "dba-pw", "carol": "contractor-pw", "erin": "eng-pw"}
GRANTS = {"alice": 'roles = ["analyst"]', "bob": 'roles = ["dba"]'}
GRANTS |= {"carol": 'groups = ["contractors"]', "erin": 'roles = ["engineer"]'}
CONFIG = """
gateway = "proctor-test"

[[listeners]]
address = "127.0.0.1:0"
upstream = "pg"

[[upstreams]]
name = "pg"
host = "127.0.0.1"
port = 5432
database = "{db}"
user = "postgres"

[policies]
directory = "policies"
watch_interval_s = 0.05

[ledger]
directory = "ledger"

[risk]
labels = {{ corp = ["127.0.0.0/8"] }}
sensitivity = [["{db}/hr.*", "restricted"]]

[limits]
connect_timeout_s = 2.0
max_message_bytes = 1048576
"""


@dataclass
class Running:
    """A gateway serving on ``port``, with its runtime and loop."""

    port: int
    runtime: Runtime
    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    directory: Path

    def dsn(self, user: str, password: str | None = None, **extra: str) -> str:
        """A libpq connection string through the gateway."""
        pw = PASSWORDS[user] if password is None else password
        parts = {"host": "127.0.0.1", "port": str(self.port), "user": user, "password": pw}
        parts |= {"dbname": DB, "sslmode": "disable", **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def connect(self, user: str, **kw: Any) -> psycopg.Connection[Any]:
        """A psycopg connection through the gateway (autocommit)."""
        return psycopg.connect(self.dsn(user), autocommit=True, **kw)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the gateway's loop and wait for it."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def live(self) -> int:
        """Connections still open at the gateway."""
        return sum(len(lst.connections) for lst in self.gateway.listeners)

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until every connection ended and its events were recorded."""
        deadline = time.monotonic() + timeout
        while self.live() and time.monotonic() < deadline:
            time.sleep(0.005)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every event recorded so far (optionally of one kind), oldest first; waits for
        closed connections to finish recording first."""
        self.settle()
        lg = self.runtime.ledger
        docs = [json.loads(data) for _, data in lg.entries()]
        return [d for d in docs if kind is None or d["kind"] == kind]


def pg_direct(dbname: str = DB) -> psycopg.Connection[Any]:
    """A connection straight to PostgreSQL (set-up and checks behind the gateway's back)."""
    try:
        return psycopg.connect(PG.replace(DB, dbname), autocommit=True)
    except psycopg.OperationalError as exc:  # not a skip: CI starts PostgreSQL
        raise AssertionError(f"PostgreSQL is not running on 127.0.0.1:5432: {exc}") from exc


@pytest.fixture(scope="session", autouse=True)
def _run_database() -> Iterator[None]:
    """Create this run's database before the first gateway test; drop it after the last."""
    with pg_direct("postgres") as db:
        db.execute(f"CREATE DATABASE {DB}")
    try:
        yield
    finally:
        with pg_direct("postgres") as db:
            db.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def write_config(directory: Path, policies: Path | None = None, extra: str = "") -> Path:
    """A proctor.toml for the local PostgreSQL, with the example policies and test users."""
    shutil.copytree(policies or ROOT / "examples" / "policies", directory / "policies")
    users = "".join(
        f'\n[[users]]\nname = "{u}"\n{GRANTS[u]}\nscram_verifier = "{make_verifier(pw)}"\n'
        for u, pw in PASSWORDS.items()
    )
    path = directory / "proctor.toml"
    path.write_text(CONFIG.format(db=DB) + users + extra)
    return path


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Running]:
    """A gateway in front of database ``test``."""
    yield from run_gateway(write_config(tmp_path))


def run_gateway(config: Path) -> Iterator[Running]:
    """Start a gateway for ``config`` on a thread of its own; stop it afterwards."""
    pg_direct().close()
    runtime = open_runtime(load_config(config))
    try:
        embedded = Embedded(runtime).start()
        assert embedded.gateway is not None
        try:
            yield Running(embedded.port, runtime, embedded.gateway, embedded.loop, config.parent)
        finally:
            embedded.stop()
    finally:
        runtime.close()


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (0600): the listener's TLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
