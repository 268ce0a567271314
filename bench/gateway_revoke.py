"""Revocation latency: from the admin's request to the client seeing its session end.

Sessions are opened through Proctor with libpq (psycopg), in batches, and put into one state
each: idle, idle inside a transaction, waiting on a running ``SELECT pg_sleep(5)``, or in
the middle of reading a long result (a ``generate_series`` streamed in the select list, so
PostgreSQL sends rows as it makes them). Then each is revoked on its own through the admin
socket (``{"op": "revoke", "session": …}``).

The clock starts just before the request is written to the admin socket and stops when the
client's socket reaches end-of-file, after the FATAL ErrorResponse (SQLSTATE 57P01) that
precedes it. The client side reads the socket itself (a duplicate of libpq's descriptor),
as fast as it can, so a streamed result is drained at socket speed rather than at the
speed of a Python row loop; what it has to drain is what the client would have to read
before it learns the session is over.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg

from gateway_stack import Target

STATES: Final = ("idle", "in a transaction", "running pg_sleep(5)", "streaming a result")
_STREAM_SQL: Final = "SELECT generate_series(1, 2000000000) AS n, repeat('x', 100) AS pad"
_SLEEP_SQL: Final = "SELECT pg_sleep(5)"
_RUNNING_S: Final = 0.1  # how long a statement runs before it is revoked
_STREAMED: Final = 2 << 20  # bytes of result read before the revocation
_TIMEOUT_S: Final = 10.0
_FATAL: Final = b"C57P01\x00"  # the ErrorResponse's SQLSTATE field: admin_shutdown


@dataclass(frozen=True)
class Revocation:
    """One session revoked."""

    state: str
    load: str
    client_ms: float
    """Until the client's socket closed after the FATAL (NaN: it never did, in time)."""
    answer_ms: float
    """Until the admin socket answered."""
    fatal_seen: bool
    """The client received ErrorResponse 57P01 before the close."""
    drained: int
    """Bytes the client read after the request was sent (a streamed result's backlog)."""


def _query(sql: str) -> bytes:
    body = sql.encode() + b"\x00"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


def _admin(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(_TIMEOUT_S)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


@contextmanager
def _sessions(target: Target, n: int, *, in_transaction: bool) -> Iterator[list[Any]]:
    """``n`` libpq sessions through the target (closed at the end, whatever state)."""
    conns: list[Any] = []
    try:
        for _ in range(n):
            conn = psycopg.connect(target.dsn(), autocommit=not in_transaction)
            if in_transaction:  # psycopg opens the transaction (BEGIN) before the SELECT
                conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = 1").fetchall()
            conns.append(conn)
        yield conns
    finally:
        for conn in conns:
            with suppress(psycopg.Error):
                conn.close()


def revoke_batch(
    target: Target, admin_socket: Path, state: str, n: int, load: str
) -> list[Revocation]:
    """Open ``n`` sessions in ``state`` and revoke them one after the other."""
    out = []
    with _sessions(target, n, in_transaction=state == "in a transaction") as conns:
        live = _admin(admin_socket, {"op": "list"})["sessions"]
        by_client = {s["client"]: s["id"] for s in live}
        for conn in conns:
            fd = os.dup(conn.pgconn.socket)
            with socket.socket(fileno=fd) as sock:
                sock.setblocking(True)
                here = sock.getsockname()
                session = by_client.get(f"{here[0]}:{here[1]}")
                if session is None:
                    raise RuntimeError(f"the gateway does not list the session from {here}")
                out.append(_revoke_one(sock, admin_socket, session, state, load))
    return out


def _revoke_one(
    sock: socket.socket, admin_socket: Path, session: str, state: str, load: str
) -> Revocation:
    if state == "running pg_sleep(5)":
        sock.sendall(_query(_SLEEP_SQL))
        time.sleep(_RUNNING_S)
    elif state == "streaming a result":
        sock.sendall(_query(_STREAM_SQL))
        got = 0
        while got < _STREAMED:
            chunk = sock.recv(1 << 18)
            if not chunk:
                raise RuntimeError("the stream ended before the revocation")
            got += len(chunk)
    request = {"op": "revoke", "session": session, "reason": "benchmark"}
    line = json.dumps(request).encode() + b"\n"
    with socket.socket(socket.AF_UNIX) as admin:
        admin.connect(str(admin_socket))
        sock.setblocking(False)
        admin.setblocking(False)
        t0 = time.perf_counter_ns()
        admin.sendall(line)
        client_ns = answer_ns = 0
        tail, drained, answer = b"", 0, b""
        watch = [sock, admin]
        deadline = t0 + int(_TIMEOUT_S * 1e9)
        while watch and time.perf_counter_ns() < deadline:
            ready, _, _ = select.select(watch, [], [], 0.5)
            for s in ready:
                try:
                    chunk = s.recv(1 << 18)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    chunk = b""
                now = time.perf_counter_ns()
                if s is sock:
                    drained += len(chunk)
                    tail = (tail + chunk)[-4096:]
                    if not chunk:
                        client_ns = now - t0
                        watch.remove(sock)
                else:
                    answer += chunk
                    if not chunk or answer.endswith(b"\n"):
                        answer_ns = now - t0
                        watch.remove(admin)
    if answer and json.loads(answer).get("revoked") != 1:
        raise RuntimeError(f"the gateway did not revoke session {session}: {answer!r}")
    return Revocation(
        state=state,
        load=load,
        client_ms=client_ns / 1e6 if client_ns else float("nan"),
        answer_ms=answer_ns / 1e6 if answer_ns else float("nan"),
        fatal_seen=_FATAL in tail,
        drained=drained,
    )
