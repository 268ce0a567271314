"""Bad input, a failing ledger, cancel, TLS and psql: each connection fails alone, closed."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proctor.gateway.postgres.protocol import BackendReader, StartupMessage
from proctor.gateway.postgres.scram import ScramClient
from tests.gateway.postgres.conftest import (
    DB,
    PASSWORDS,
    Running,
    certificate,
    pg_direct,
    run_gateway,
    write_config,
)

I32 = struct.Struct("!i")


def raw_connect(gateway: Running) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=5)


def read_all(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def login(gateway: Running, user: str = "alice") -> tuple[socket.socket, BackendReader]:
    """Log in over a raw socket with SCRAM; the socket after ReadyForQuery."""
    sock = raw_connect(gateway)
    sock.sendall(StartupMessage(196608, {"user": user, "database": DB}).encode())
    reader = BackendReader()
    scram = ScramClient(PASSWORDS[user])

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + I32.pack(len(body) + 4) + body

    while True:
        frames = reader.frames(sock.recv(65536))
        for kind, body in frames:
            if kind == b"R":
                (code,) = I32.unpack_from(body)
                if code == 10:
                    first = scram.first()
                    payload = b"SCRAM-SHA-256\x00" + I32.pack(len(first)) + first
                    sock.sendall(message(b"p", payload))
                elif code == 11:
                    sock.sendall(message(b"p", scram.final(body[4:])))
            elif kind == b"Z":
                return sock, reader
            elif kind == b"E":
                raise AssertionError(body)


def test_garbage_before_startup_closes_that_connection_only(gateway: Running) -> None:
    keep = gateway.connect("alice")
    for garbage in (b"\x7f\xff\xff\xff" + b"x" * 8, b"GET / HTTP/1.1\r\n\r\n", I32.pack(8) * 2):
        sock = raw_connect(gateway)
        sock.sendall(garbage)
        answer = read_all(sock)
        assert answer.startswith(b"E") and b"08P01" in answer
        sock.close()
    assert keep.execute("SELECT 1").fetchone() == (1,)
    keep.close()


def test_a_stalled_half_message_is_dropped_after_the_startup_timeout(gateway: Running) -> None:
    sock = raw_connect(gateway)
    started = time.monotonic()
    sock.sendall(I32.pack(40) + I32.pack(196608) + b"user\x00al")  # and nothing more
    answer = read_all(sock)
    assert b"did not finish in time" in answer
    assert 1.5 < time.monotonic() - started < 5  # limits.connect_timeout_s = 2


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (b"Q" + I32.pack(2), b"claims length"),  # a length below its own size
        (b"Q" + I32.pack(64 << 20), b"claims length"),  # over limits.max_message_bytes
        (b"Q" + I32.pack(8) + b"abcd", b"not terminated"),  # a string without its NUL
        (b"p" + I32.pack(8) + b"pass", b"unexpected message"),  # a password after login
    ],
)
def test_malformed_frames_after_login_end_the_session_with_an_event(
    gateway: Running, frame: bytes, needle: bytes
) -> None:
    sock, _ = login(gateway)
    sock.sendall(frame)
    answer = read_all(sock)
    assert b"08P01" in answer and needle in answer
    sock.close()
    ends = gateway.events("session.end")
    assert ends[-1]["outcome"] == {"status": "error", "rows": 0, "sqlstate": "08P01"}


def test_ledger_unavailable_refuses_statements(gateway: Running) -> None:
    conn = gateway.connect("alice")
    appender = gateway.runtime.ledger._appender
    assert appender is not None
    gateway.call(appender.close)
    # Refused with 58000, or the session cut because its events could not be recorded:
    # either way the ledger's failure is named and the statement does not run.
    with pytest.raises(psycopg.Error, match="audit ledger"):
        conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="ledger"):
        gateway.connect("erin")
    conn.close()


def test_cancel_reaches_the_right_backend(gateway: Running) -> None:
    conn = gateway.connect("erin")
    other = gateway.connect("erin")
    # cancel_safe, not cancel: libpq's blocking PQcancel holds the GIL while it waits, and
    # this test's gateway runs in a thread of the same process.
    timer = threading.Timer(0.3, conn.cancel_safe)
    timer.start()
    started = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(10)")
    assert time.monotonic() - started < 5
    assert other.execute("SELECT 3").fetchone() == (3,)
    assert conn.execute("SELECT 4").fetchone() == (4,)
    conn.close()
    other.close()
    statuses = [e["outcome"] for e in gateway.events("outcome")]
    assert {"status": "error", "sqlstate": "57014"}.items() <= statuses[0].items()


@pytest.fixture
def tls_gateway(tmp_path: Path) -> Iterator[Running]:
    cert, key = certificate(tmp_path)
    config = write_config(tmp_path)
    text = config.read_text().replace(
        'upstream = "pg"\n', f'upstream = "pg"\ntls_cert = "{cert}"\ntls_key = "{key}"\n', 1
    )
    config.write_text(text)
    yield from run_gateway(config)


def test_tls_termination(tls_gateway: Running) -> None:
    dsn = tls_gateway.dsn("alice", sslmode="require")
    with psycopg.connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 5").fetchone() == (5,)


def test_no_tls_is_a_clean_refusal_of_sslrequest(gateway: Running) -> None:
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(gateway.dsn("alice", sslmode="require"))
    with psycopg.connect(gateway.dsn("alice", sslmode="prefer")) as conn:
        assert not conn.pgconn.ssl_in_use


def test_psql_through_the_gateway(gateway: Running) -> None:
    env = {**os.environ, "PGPASSWORD": PASSWORDS["alice"]}
    args = ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(gateway.port), "-U", "alice"]
    res = subprocess.run(
        [*args, "-d", DB, "-c", "SELECT 40 + 2", "-c", "CREATE TABLE nope (x int)"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.stdout.strip() == "42"
    assert "Proctor denied this statement" in res.stderr or "step-up" in res.stderr


def test_sql_is_read_the_way_the_server_reads_it(gateway: Running) -> None:
    with pytest.raises(psycopg.OperationalError, match="client_encoding SJIS is not supported"):
        psycopg.connect(gateway.dsn("erin", client_encoding="SJIS"))
    with gateway.connect("bob") as conn:  # a DBA may run anything, but not these
        for sql in (
            "SET client_encoding = 'SJIS'",
            "SET standard_conforming_strings = off",
            "SET search_path = hr",
            "SELECT set_config('search_path', 'hr', false)",
        ):
            with pytest.raises(psycopg.Error, match=r"Proctor pins|step-up"):
                conn.execute(sql.encode())


def msg(kind: bytes, body: bytes = b"") -> bytes:
    """One typed message on the wire."""
    return kind + I32.pack(len(body) + 4) + body


def until(
    sock: socket.socket, reader: BackendReader, kind: bytes, times: int = 1
) -> list[tuple[bytes, bytes]]:
    """The gateway's messages up to the ``times``-th of ``kind``, when nothing more is due."""
    got: list[tuple[bytes, bytes]] = []
    while sum(k == kind for k, _ in got) < times:
        data = sock.recv(65536)
        assert data, f"the gateway closed the connection after {got}"
        got += reader.frames(data)
    assert got[-1][0] == kind, f"more than was due: {got}"
    return got


@pytest.fixture
def copied() -> Iterator[None]:
    """A table to COPY into, set up directly."""
    with pg_direct() as db:
        db.execute("DROP TABLE IF EXISTS copied; CREATE TABLE copied (id int, v text)")
    yield
    with pg_direct() as db:
        db.execute("DROP TABLE copied")


def test_a_message_that_breaks_copy_in_ends_the_session(gateway: Running, copied: None) -> None:
    """In COPY IN PostgreSQL takes only COPY data, Flush and Sync; a Bind there (which has to
    wait for the server's answers) ends the session as PostgreSQL would, instead of hanging."""
    sock, _ = login(gateway, "erin")
    parse = msg(b"P", b"s1\x00SELECT 1\x00\x00\x00")  # s1's answer comes with the COPY's
    copy = msg(b"Q", b"COPY copied FROM STDIN\x00")
    sock.sendall(parse + copy + msg(b"B", b"\x00s1\x00" + bytes(6)))
    answer = read_all(sock)
    assert b"C08P01\x00" in answer and b"unexpected Bind message during COPY" in answer
    sock.close()
    ends = gateway.events("session.end")
    assert ends[-1]["outcome"] == {"status": "error", "rows": 0, "sqlstate": "08P01"}


def test_a_sync_during_copy_in_is_ignored_as_postgresql_ignores_it(
    gateway: Running, copied: None
) -> None:
    sock, reader = login(gateway, "erin")
    run = msg(b"P", b"\x00COPY copied FROM STDIN\x00\x00\x00") + msg(b"B", bytes(8))
    sock.sendall(run + msg(b"E", bytes(5)) + msg(b"S"))  # as libpq sends it
    assert [k for k, _ in until(sock, reader, b"G")] == [b"1", b"2", b"G"]
    sock.sendall(msg(b"S") + msg(b"d", b"1\tx\n") + msg(b"H") + msg(b"S") + msg(b"c") + msg(b"S"))
    assert until(sock, reader, b"Z") == [(b"C", b"COPY 1\x00"), (b"Z", b"I")]
    sock.sendall(msg(b"Q", b"SELECT 1\x00"))
    assert [k for k, _ in until(sock, reader, b"Z")] == [b"T", b"D", b"C", b"Z"]
    sock.close()


def test_a_masked_portal_keeps_its_description_when_sql_forgets_names(gateway: Running) -> None:
    """Execute of a portal under mask asks for its description; a SQL PREPARE handled before
    the answer makes the gateway forget every name, but the answer is still the portal's."""
    with pg_direct() as db:
        db.execute("DROP TABLE IF EXISTS masked; CREATE TABLE masked (id int, email text)")
        db.execute("INSERT INTO masked VALUES (1, 'a@example.com')")
    sock, reader = login(gateway, "alice")
    bind = msg(b"P", b"\x00SELECT id, email FROM masked\x00\x00\x00") + msg(b"B", bytes(8))
    sock.sendall(bind + msg(b"H"))
    assert [k for k, _ in until(sock, reader, b"2")] == [b"1", b"2"]
    prepare = msg(b"Q", b"PREPARE s1 AS SELECT 1\x00")
    sock.sendall(msg(b"E", bytes(5)) + prepare + msg(b"S"))
    got = until(sock, reader, b"Z", times=2)
    assert got[0] == (b"D", b"\x00\x02" + I32.pack(1) + b"1" + I32.pack(-1))  # email NULL
    assert [k for k, _ in got[1:]] == [b"C", b"C", b"Z", b"Z"]
    sock.close()
    with pg_direct() as db:
        db.execute("DROP TABLE masked")


def test_messages_after_an_extended_error_do_not_desynchronize_replies(gateway: Running) -> None:
    """An error makes PostgreSQL skip to Sync; what the client sends meanwhile is dropped,
    so later results are still matched to their own statements (and still masked)."""
    with pg_direct() as db:
        db.execute("DROP TABLE IF EXISTS masked; CREATE TABLE masked (id int, email text)")
        db.execute("INSERT INTO masked VALUES (1, 'a@example.com')")
        db.commit()
    sock, reader = login(gateway, "alice")

    def msg(kind: bytes, body: bytes) -> bytes:
        return kind + I32.pack(len(body) + 4) + body

    def until_ready() -> list[tuple[bytes, bytes]]:
        got: list[tuple[bytes, bytes]] = []
        while not got or got[-1][0] != b"Z":
            got += reader.frames(sock.recv(65536))
        return got

    sock.sendall(msg(b"P", b"\x00SELECT * FROM nope\x00\x00\x00"))  # fails upstream
    time.sleep(0.3)  # the error has arrived before the next messages are sent
    sock.sendall(msg(b"Q", b"SELECT 1\x00") + msg(b"S", b""))
    assert [k for k, _ in until_ready()] == [b"E", b"Z"]
    sock.sendall(msg(b"Q", b"SELECT id, email FROM masked\x00"))
    rows = [body for kind, body in until_ready() if kind == b"D"]
    assert rows == [b"\x00\x02" + I32.pack(1) + b"1" + I32.pack(-1)]  # the email is NULL
    sock.close()
    with pg_direct() as db:
        db.execute("DROP TABLE masked")
