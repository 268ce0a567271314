"""From the first packet to ReadyForQuery: TLS, login, the connect decision, the upstream login.

:func:`handshake` is one generator of commands (``commands.py``):

1. SSLRequest → ``S`` and TLS when the listener has a certificate, else ``N``;
   GSSENCRequest → ``N``; CancelRequest is returned for the shell to route.
2. StartupMessage: the database must be the one this listener serves.
3. SCRAM-SHA-256 against the user's stored verifier (unknown users run the same exchange and
   fail the same way). With ``[oidc]`` configured, a user with no verifier is asked for a
   cleartext password instead, which must be a token (JWT) from the identity provider
   (``identity/oidc.py``; only over TLS unless ``require_tls = false``). A failure is recorded
   (``auth.failed``, with its reason) and feeds the risk baselines.
4. The ``connect`` request is decided and its decision recorded before anything else: a deny
   or step-up ends the login with the policy's reason; no ledger, no login.
5. The gateway logs into the upstream with its own credentials (SCRAM-SHA-256, md5, password
   or trust); the client never sees them. The upstream's ParameterStatus messages pass on;
   its BackendKeyData is kept and the client gets a key of Proctor's own, for cancel routing.
"""

from __future__ import annotations

import logging
import secrets
import struct
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from proctor.config import Upstream, UserEntry
from proctor.decision import Decider
from proctor.events.context import ActionInfo, Principal
from proctor.events.ids import format_time, new_event_id, now_ns
from proctor.events.schema import Action, Actor, Event, Outcome, Source
from proctor.events.schema import Session as SessionPart
from proctor.gateway.postgres import sqlstate
from proctor.gateway.postgres.commands import (
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    Record,
    SendClient,
    SendUpstream,
    SigningKey,
    StartTLS,
)
from proctor.gateway.postgres.protocol import (
    PROTOCOL_3_0,
    CancelRequest,
    GSSENCRequest,
    ProtocolError,
    Raw,
    SSLRequest,
    StartupMessage,
    Terminate,
    check_backend,
    error_response,
)
from proctor.gateway.postgres.scram import (
    MECHANISM,
    AuthError,
    ScramClient,
    ScramServer,
    Verifier,
    md5_response,
)
from proctor.gateway.postgres.session import Identity, Session
from proctor.gateway.postgres.sql import Analyzer
from proctor.identity.jwks import JwksClient
from proctor.identity.oidc import (
    KeysUnavailable,
    TokenError,
    TokenLogin,
    check_token,
    read_header,
)

__all__ = ["Account", "Login", "UpstreamLogin", "handshake"]

log = logging.getLogger(__name__)

_INT32 = struct.Struct("!i")
# Startup parameters a client may pass on to the upstream; anything else (``options`` can
# set any server setting, ``role``, ``replication``) stays with Proctor. The settings that
# change how SQL text is read (client_encoding, standard_conforming_strings) and which tables
# unqualified names mean (search_path) are pinned: Proctor analyses SQL as PostgreSQL will
# read it only if both read it the same way (session.py refuses changing them later).
_PASSED: Final = frozenset(
    {
        "application_name",
        "DateStyle",
        "datestyle",
        "IntervalStyle",
        "TimeZone",
        "timezone",
        "extra_float_digits",
    }
)
_PINNED: Final = {"client_encoding": "UTF8", "standard_conforming_strings": "on"}
_UTF8: Final = frozenset({"utf8", "utf-8", "unicode"})


@dataclass(frozen=True)
class Account:
    """A Proctor user: who it is and its SCRAM verifier."""

    entry: UserEntry
    verifier: Verifier


@dataclass(frozen=True)
class UpstreamLogin:
    """The upstream database and the gateway's own credentials for it."""

    config: Upstream
    password: str | None


@dataclass(frozen=True)
class Login:
    """What a listener needs to let clients in."""

    gateway: str
    upstream: UpstreamLogin
    accounts: dict[str, Account]
    """Shared by every listener; ``set-user`` updates it in place."""
    tls: bool
    oidc: JwksClient | None = None
    """Token logins for users without a verifier (``[oidc]``), shared by every listener."""


class _Refused(Exception):
    """The login ends with this FATAL error (already recorded where that is due)."""

    def __init__(self, state: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.packet = error_response(state, message, detail, severity="FATAL")


def _auth(code: int, data: bytes = b"") -> bytes:
    return Raw(b"R", _INT32.pack(code) + data).encode()


def handshake(
    login: Login,
    decider: Decider,
    analyzer: Analyzer,
    client: tuple[str, int],
) -> Generator[Any, Any, Session | CancelRequest | None]:
    """Run one connection's startup; a ready Session, a CancelRequest to route, or None."""
    try:
        first, secure = yield from _startup(login)
        if isinstance(first, CancelRequest):
            return first
        return (yield from _login(login, decider, analyzer, client, first, secure))
    except _Refused as refused:
        yield SendClient(refused.packet)
        return None
    except AuthError as exc:
        yield SendClient(error_response(exc.sqlstate, str(exc), severity="FATAL"))
        return None


def _startup(
    login: Login,
) -> Generator[Any, Any, tuple[StartupMessage | CancelRequest, bool]]:
    """The startup packet, and whether the connection is now TLS."""
    secure = False
    while True:
        msg = yield ReadClient()
        if isinstance(msg, SSLRequest):
            yield SendClient(b"S" if login.tls else b"N")
            if login.tls:
                yield StartTLS()
                secure = True
        elif isinstance(msg, GSSENCRequest):
            yield SendClient(b"N")
        elif isinstance(msg, CancelRequest | StartupMessage):
            return msg, secure
        else:
            raise ProtocolError("expected a startup packet")


def _login(
    login: Login,
    decider: Decider,
    analyzer: Analyzer,
    client: tuple[str, int],
    startup: StartupMessage,
    secure: bool,
) -> Generator[Any, Any, Session | None]:
    params = startup.parameters
    user = params.get("user", "")
    if not user:
        raise _Refused(sqlstate.INVALID_AUTHORIZATION, "no user name in the startup packet")
    encoding = params.get("client_encoding", "UTF8")
    if encoding.strip().strip("'").lower() not in _UTF8:  # asyncpg sends 'utf-8', quoted
        raise _Refused(
            sqlstate.FEATURE_NOT_SUPPORTED,
            f"client_encoding {encoding} is not supported: Proctor speaks UTF8",
        )
    if "replication" in params:
        raise _Refused(sqlstate.FEATURE_NOT_SUPPORTED, "replication connections are not proxied")
    up = login.upstream.config
    database = params.get("database") or user
    if database not in (up.database, up.name):
        raise _Refused(
            sqlstate.UNDEFINED_DATABASE,
            f'database "{database}" does not exist',
            f'this listener serves "{up.database}"',
        )
    if startup.version != PROTOCOL_3_0 or any(k.startswith("_pq_.") for k in params):
        # NegotiateProtocolVersion: Proctor speaks 3.0 and no protocol options.
        options = [k for k in params if k.startswith("_pq_.")]
        body = _INT32.pack(0) + _INT32.pack(len(options))
        body += b"".join(o.encode() + b"\x00" for o in options)
        yield SendClient(Raw(b"v", body).encode())
    account = login.accounts.get(user)
    expires: float | None = None
    if account is None and login.oidc is not None:
        token = yield from _token(login.oidc, user, secure, decider, client)
        principal, expires, proof = token.principal, token.expires, b""
    else:
        server_final = yield from _authenticate(account, user)
        if server_final is None or account is None:
            yield from _auth_failed(decider, user, client)
            raise _Refused(
                sqlstate.INVALID_PASSWORD, f'password authentication failed for user "{user}"'
            )
        entry = account.entry
        principal = Principal(
            id=entry.name,
            kind=entry.kind,
            roles=entry.roles,
            groups=entry.groups,
            auth_method="scram",
        )
        proof = _auth(12, server_final)  # AuthenticationSASLFinal
    identity = Identity(
        principal=principal,
        client_ip=client[0],
        client_address=_address(client),
        upstream=up.name,
        database=up.database,
        gateway=login.gateway,
        application=params.get("application_name"),
        expires=expires,
    )
    session = Session(
        identity, decider, analyzer, session_id=str(uuid.uuid4()), started_ns=now_ns()
    )
    ctx = session.context(ActionInfo(class_="connect", operation="CONNECT"), session_start=True)
    decided = session.decide(ctx)
    session.connect = decided
    try:
        yield Record((decided.event,))
    except Exception as exc:
        log.error("ledger refused a connect decision: %s", exc)
        raise _Refused(
            sqlstate.AUDIT_UNAVAILABLE,
            "the audit ledger is unavailable, so no session starts (no log, no access)",
        ) from None
    d = decided.decision
    if not d.allowed:
        reason = "; ".join(d.reasons) or "no policy permits it"
        state = sqlstate.STEP_UP if d.effect == "step_up" else sqlstate.INVALID_AUTHORIZATION
        word = "needs a step-up for" if d.effect == "step_up" else "denied"
        raise _Refused(
            state, f"Proctor {word} this connection: {reason}", f"decision {decided.event.id}"
        )
    greeting = yield from _upstream_login(login.upstream, params, session)
    session.key = (secrets.randbits(31), secrets.token_bytes(4))
    key = Raw(b"K", _INT32.pack(session.key[0]) + session.key[1]).encode()
    yield SendClient(proof + _auth(0) + greeting + key + Raw(b"Z", b"I").encode())
    session.outbox.append(
        session.event(
            "session.start",
            session=SessionPart(
                id=session.id, client=session.identity.application, protocol="postgresql/3.0"
            ),
            action=Action(class_="connect", operation="CONNECT"),
            links=None,
        )
    )
    try:
        decider.risk.learn(decided.context)
    except Exception:
        log.exception("risk baselines could not learn a session start")
    return session


def _authenticate(account: Account | None, user: str) -> Generator[Any, Any, bytes | None]:
    """SCRAM-SHA-256 (RFC 5802 §3 over PostgreSQL's SASL messages); server-final or None."""
    server = ScramServer(account.verifier if account is not None else None, user)
    yield SendClient(_auth(10, MECHANISM.encode() + b"\x00\x00"))  # AuthenticationSASL
    msg = yield ReadClient()
    if isinstance(msg, Terminate):
        raise _Refused(sqlstate.INVALID_PASSWORD, "the client left during authentication")
    if not (isinstance(msg, Raw) and msg.type == b"p"):
        raise ProtocolError("expected SASLInitialResponse")
    body = msg.body
    end = body.find(b"\x00")
    if end < 0 or len(body) < end + 5:
        raise ProtocolError("SASLInitialResponse: malformed")
    if body[:end].decode(errors="replace") != MECHANISM:
        raise AuthError(f"only {MECHANISM} is offered")
    (size,) = _INT32.unpack_from(body, end + 1)
    data = body[end + 5 :]
    if size != len(data):
        raise ProtocolError("SASLInitialResponse: length does not match")
    yield SendClient(_auth(11, server.first(data)))  # AuthenticationSASLContinue
    msg = yield ReadClient()
    if not (isinstance(msg, Raw) and msg.type == b"p"):
        raise ProtocolError("expected SASLResponse")
    try:
        return server.final(msg.body)
    except AuthError:
        return None


def _token(
    keys: JwksClient, user: str, secure: bool, decider: Decider, client: tuple[str, int]
) -> Generator[Any, Any, TokenLogin]:
    """A token (JWT) sent as a cleartext password, checked (``identity/oidc.py``)."""
    config = keys.config
    if config.require_tls and not secure:
        # Asked before the client sends anything: a bearer token read off the wire logs in.
        reason = "a token login needs a TLS connection (sslmode=require)"
        state = sqlstate.INVALID_AUTHORIZATION
        yield from _auth_failed(
            decider, user, client, method="jwt", reason=reason, state=state, count=False
        )
        raise _Refused(state, f"Proctor refused the login: {reason}")
    yield SendClient(_auth(3))  # AuthenticationCleartextPassword
    msg = yield ReadClient()
    if isinstance(msg, Terminate):
        raise _Refused(sqlstate.INVALID_PASSWORD, "the client left during authentication")
    if not (isinstance(msg, Raw) and msg.type == b"p"):
        raise ProtocolError("expected PasswordMessage")
    if not msg.body.endswith(b"\x00") or b"\x00" in msg.body[:-1]:
        raise ProtocolError("PasswordMessage: malformed")
    try:
        if not _printable(user):
            raise TokenError("the user name cannot be a token's user")
        try:
            token = msg.body[:-1].decode("ascii")
        except UnicodeDecodeError:
            raise TokenError("the password is not a well-formed signed token (JWT)") from None
        kid, alg = read_header(token, config)
        try:
            jwk = yield SigningKey(keys, kid)
        except TokenError:
            raise
        except Exception as exc:
            log.exception("the identity provider's keys could not be looked up")
            raise KeysUnavailable("the identity provider's keys are not available") from exc
        return check_token(token, alg, jwk, user, config)
    except TokenError as exc:
        yield from _auth_failed(
            decider,
            user,
            client,
            method="jwt",
            reason=str(exc),
            state=exc.sqlstate,
            count=exc.client_fault,
        )
        raise _Refused(
            exc.sqlstate, f'token authentication failed for user "{user}": {exc}'
        ) from None


def _auth_failed(
    decider: Decider,
    user: str,
    client: tuple[str, int],
    *,
    method: str = "scram",
    reason: str | None = None,
    state: str = sqlstate.INVALID_PASSWORD,
    count: bool = True,
) -> Generator[Any, Any, None]:
    """Record a failed login and, when the client is to blame, tell the risk baselines."""
    if count:
        try:
            decider.risk.baselines.record_auth_failure(user, now_ns())
        except Exception:
            log.exception("could not count a failed login")
    stamp, clock = decider.clock.now()
    event = Event(
        id=new_event_id(),
        kind="auth.failed",
        time=format_time(stamp),
        clock=clock,
        actor=Actor(
            id=user if _printable(user) else "(invalid)",
            kind="human",
            auth_method=method,
            ip=client[0],
        ),
        outcome=Outcome(status="error", sqlstate=state, message=reason),
        source=Source(system="proctor", gateway=decider.gateway, address=_address(client)),
    )
    try:
        yield Record((event,))
    except Exception as exc:
        log.error("ledger refused an auth.failed event: %s", exc)


def _printable(name: str) -> bool:
    return 0 < len(name) <= 256 and name.isprintable()


def _address(client: tuple[str, int]) -> str:
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _upstream_login(
    up: UpstreamLogin, params: Mapping[str, str], session: Session
) -> Generator[Any, Any, bytes]:
    """Log into the upstream; the ParameterStatus and notices to pass on to the client."""
    cfg = up.config
    try:
        yield OpenUpstream()
    except OSError as exc:
        log.error("upstream %s unreachable: %s", cfg.name, exc)
        raise _Refused(
            sqlstate.CONNECTION_REJECTED, "the upstream database is unreachable"
        ) from None
    passed = {k: v for k, v in params.items() if k in _PASSED}
    wanted = {"user": cfg.user, "database": cfg.database, **passed, **_PINNED}
    startup = StartupMessage(PROTOCOL_3_0, wanted)
    yield SendUpstream(startup.encode())
    greeting: list[bytes] = []
    scram: ScramClient | None = None
    while True:
        kind, body = yield ReadUpstream()
        check_backend(kind, body)
        if kind == b"R":
            (code,) = _INT32.unpack_from(body)
            reply = _upstream_auth(up, code, body[4:], scram)
            if isinstance(reply, ScramClient):
                scram = reply
                yield SendUpstream(Raw(b"p", _sasl_initial(scram)).encode())
            elif reply:
                yield SendUpstream(Raw(b"p", reply).encode())
        elif kind == b"E":
            log.error("upstream %s refused the gateway's login: %r", cfg.name, body[:200])
            raise _Refused(
                sqlstate.CONNECTION_REJECTED, "the upstream database refused the gateway's login"
            )
        elif kind == b"K":
            session.upstream_key = (_INT32.unpack_from(body)[0], body[4:])
        elif kind in (b"S", b"N"):
            greeting.append(Raw(kind, body).encode())
        elif kind == b"Z":
            return b"".join(greeting)
        elif kind != b"v":
            raise ProtocolError(f"upstream sent {kind!r} during login")


def _sasl_initial(scram: ScramClient) -> bytes:
    data = scram.first()
    return MECHANISM.encode() + b"\x00" + _INT32.pack(len(data)) + data


def _upstream_auth(
    up: UpstreamLogin, code: int, data: bytes, scram: ScramClient | None
) -> bytes | ScramClient:
    """The answer to one upstream Authentication request (b"" for none)."""
    cfg, password = up.config, up.password
    if code == 0:  # AuthenticationOk
        if scram is not None and not scram.verified:
            raise _Refused(
                sqlstate.CONNECTION_REJECTED, "the upstream skipped proving it knows the password"
            )
        return b""
    if password is None:
        log.error("upstream %s asks for a password and none is configured", cfg.name)
        raise _Refused(
            sqlstate.CONNECTION_REJECTED, "the gateway has no credentials for the upstream"
        )
    if code == 3:  # AuthenticationCleartextPassword
        return password.encode() + b"\x00"
    if code == 5:  # AuthenticationMD5Password
        return md5_response(cfg.user, password, data[:4]) + b"\x00"
    if code == 10:  # AuthenticationSASL: a list of mechanisms
        if MECHANISM.encode() not in data.split(b"\x00"):
            raise _Refused(
                sqlstate.CONNECTION_REJECTED, "the upstream offers no SASL mechanism Proctor has"
            )
        return ScramClient(password)
    if code == 11 and scram is not None:  # AuthenticationSASLContinue
        return scram.final(data)
    if code == 12 and scram is not None:  # AuthenticationSASLFinal
        scram.check(data)
        return b""
    raise _Refused(
        sqlstate.CONNECTION_REJECTED, f"the upstream asks for an unsupported login ({code})"
    )
