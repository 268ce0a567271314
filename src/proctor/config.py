"""The one configuration file (TOML), checked whole before anything starts.

``load_config(path)`` reads ``proctor.toml`` into typed structs; every problem is a
:class:`ConfigError` that names the key (``upstreams[0].port``) and the reason. A wrong type
or an unknown key is reported first (the file is not read further); once the shape is right,
every cross-check problem (missing files, unknown upstreams, unset variables) is reported
together. Secrets never sit in the file: an upstream password comes from an
environment variable or a secret file, read when the gateway connects, and never logged.
``[oidc]`` names an identity provider whose tokens log in users without a SCRAM verifier; it
accepts public-key signature algorithms only.
Paths are relative to the file's own directory.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from proctor.errors import UsageError
from proctor.gateway.postgres.scram import parse_verifier
from proctor.privacy.seal import DEFAULT_FIELDS, SEALABLE
from proctor.retention.config import RetentionConfig, retention_problems

__all__ = [
    "ApiConfig",
    "Config",
    "ConfigError",
    "LedgerConfig",
    "Listener",
    "OidcConfig",
    "PoliciesConfig",
    "PrivacyConfig",
    "RiskSettings",
    "SyslogConfig",
    "Upstream",
    "UserEntry",
    "load_config",
    "read_secret",
]

_Name = Annotated[str, Meta(pattern="^[A-Za-z0-9_.-]{1,64}$")]
_Port = Annotated[int, Meta(ge=1, le=65535)]
_Positive = Annotated[int, Meta(ge=1)]
_Claim = Annotated[str, Meta(min_length=1, max_length=256)]

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Token signature algorithms ``[oidc]`` may accept: public-key ones only (RFC 7518 §3)."""


class ConfigError(UsageError):
    """A configuration that cannot be used; ``problems`` lists each as ``key: reason``."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{path}: {problems[0]}{more}")


class _Part(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Strict settings: an unknown key is an error, not ignored."""


class Listener(_Part, frozen=True, kw_only=True):
    """Where clients connect, and which upstream database they reach."""

    address: str
    upstream: _Name
    tls_cert: str | None = None
    tls_key: str | None = None


class Upstream(_Part, frozen=True, kw_only=True):
    """A database behind the gateway and the gateway's own credentials for it."""

    name: _Name
    host: str = "127.0.0.1"
    port: _Port = 5432
    database: str
    user: str
    password_env: str | None = None
    password_file: str | None = None


class UserEntry(_Part, frozen=True, kw_only=True):
    """A Proctor-managed user (SCRAM-SHA-256 verifier, as PostgreSQL stores them)."""

    name: _Name
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    kind: Literal["human", "agent", "service"] = "human"
    scram_verifier: str


class PoliciesConfig(_Part, frozen=True, kw_only=True):
    """The Cedar policy directory and how decisions read time."""

    directory: str
    watch_interval_s: Annotated[float, Meta(gt=0, le=3600)] = 1.0
    timezone: str = "UTC"
    mfa_fresh_s: Annotated[int, Meta(ge=0)] = 900


class LedgerConfig(_Part, frozen=True, kw_only=True):
    """Where decisions are recorded."""

    directory: str
    signer_key: str | None = None
    durability: Literal["os", "fsync"] = "os"


class GeoSetting(_Part, frozen=True, kw_only=True):
    """Where an address range is: for ranges no GeoIP database knows (offices, VPN exits)."""

    cidr: str
    country: Annotated[str, Meta(pattern="^[A-Z]{2}$")] | None = None
    city: Annotated[str, Meta(max_length=100)] | None = None
    latitude: Annotated[float, Meta(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Meta(ge=-180, le=180)] | None = None
    asn: Annotated[int, Meta(ge=0, le=4294967295)] | None = None


class RiskSettings(_Part, frozen=True, kw_only=True):
    """Scoring and what addresses and resources are (labels, lists, geo, sensitivity)."""

    scorer: Literal["statistical", "rules"] = "statistical"
    labels: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    deny_list: str | None = None
    anonymizer_list: str | None = None
    mmdb: tuple[str, ...] = ()
    geo: tuple[GeoSetting, ...] = ()
    alert_lifetime_s: Annotated[int, Meta(gt=0, le=7 * 86400)] = 900
    sensitivity: tuple[
        tuple[str, Literal["public", "internal", "confidential", "restricted"]], ...
    ] = ()
    points: dict[str, Annotated[int, Meta(ge=-100, le=100)]] = msgspec.field(default_factory=dict)


class Limits(_Part, frozen=True, kw_only=True):
    """Explicit limits (never magic numbers)."""

    max_message_bytes: Annotated[int, Meta(ge=1024, le=1 << 30)] = 64 << 20
    max_connections: _Positive = 1000
    connect_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 10.0


class OidcConfig(_Part, frozen=True, kw_only=True):
    """An OpenID Connect provider whose signed tokens (JWTs) log users in (docs/gateway.md)."""

    issuer: _Claim
    audience: _Claim
    jwks_url: str | None = None
    jwks_file: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    user_claim: _Claim = "preferred_username"
    roles_claim: _Claim = "roles"
    groups_claim: _Claim = "groups"
    leeway_s: Annotated[int, Meta(ge=0, le=300)] = 30
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
    jwks_refresh_s: Annotated[float, Meta(gt=0, le=86400)] = 300.0
    """How long fetched keys are used before they are fetched again."""
    jwks_refetch_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    """The least time between two fetches (an unknown key id asks for one at most this often)."""
    jwks_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0
    max_token_bytes: Annotated[int, Meta(ge=1024, le=1 << 20)] = 16384
    require_tls: bool = True
    """Accept a token (sent as a cleartext password) only over a TLS connection."""


class ApiConfig(_Part, frozen=True, kw_only=True):
    """The audit service's HTTP API (docs/service.md)."""

    address: str = "127.0.0.1:8480"
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_plaintext: bool = False
    """Serve without TLS on an address other than loopback (behind a TLS-terminating proxy)."""
    max_body_bytes: Annotated[int, Meta(ge=1024, le=1 << 30)] = 32 << 20
    """A request body larger than this is refused (413) before it is read whole."""
    max_items: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    """The most events one ingest request may carry."""
    oidc_roles: dict[Literal["admin", "auditor", "ingest"], tuple[str, ...]] = msgspec.field(
        default_factory=dict
    )
    """API role → the provider roles (from ``oidc.roles_claim``) that grant it to a token."""


class SyslogConfig(_Part, frozen=True, kw_only=True):
    """A syslog (RFC 5424 over TCP, RFC 6587 framing) listener whose messages are ingested."""

    address: str = "127.0.0.1:6514"
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_plaintext: bool = False
    """Listen without TLS on an address other than loopback."""
    max_frame: Annotated[int, Meta(ge=480, le=16 << 20)] = 65536
    """Largest message in octets (RFC 5425 asks receivers to take at least 2048)."""


class PrivacyConfig(_Part, frozen=True, kw_only=True):
    """GDPR erasure: which personal fields are sealed per subject, and the master key."""

    master_key_file: str | None = None
    """32 bytes (raw or base64), mode 0600, kept outside the ledger directory's backups."""
    master_key_env: str | None = None
    """Or: the name of an environment variable holding the key in base64."""
    fields: tuple[str, ...] = DEFAULT_FIELDS


class Config(_Part, frozen=True, kw_only=True):
    """The whole file."""

    gateway: str = "proctor"
    admin_socket: str | None = None
    """Unix socket for ``proctor sessions …`` (default: ``admin.sock`` in the ledger directory)."""
    listeners: tuple[Listener, ...] = ()
    upstreams: tuple[Upstream, ...] = ()
    users: tuple[UserEntry, ...] = ()
    oidc: OidcConfig | None = None
    policies: PoliciesConfig
    ledger: LedgerConfig
    risk: RiskSettings = RiskSettings()
    limits: Limits = Limits()
    api: ApiConfig | None = None
    privacy: PrivacyConfig | None = None
    syslog: SyslogConfig | None = None
    retention: RetentionConfig | None = None


@dataclass(frozen=True)
class Loaded:
    """A checked configuration and the directory its relative paths are relative to."""

    config: Config
    base: Path

    def path(self, value: str) -> Path:
        """A path from the file, made absolute."""
        p = Path(value)
        return p if p.is_absolute() else self.base / p


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read and check ``path``; ConfigError names every bad key."""
    env = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 at byte {exc.start}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(path, [_key_message(str(exc))]) from None
    loaded = Loaded(config, path.resolve().parent)
    problems = _cross_checks(loaded, env)
    if problems:
        raise ConfigError(path, problems)
    return loaded


def _key_message(text: str) -> str:
    """msgspec's ``… - at `$.upstreams[0].port``` as ``upstreams[0].port: …``."""
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        return text
    key = where.rstrip("`").removeprefix("$").removeprefix(".")
    return f"{key}: {message}" if key else message


def _cross_checks(loaded: Loaded, env: Mapping[str, str]) -> list[str]:
    c = loaded.config
    out: list[str] = []
    names = [u.name for u in c.upstreams]
    for i, u in enumerate(c.upstreams):
        if names.count(u.name) > 1 and names.index(u.name) != i:
            out.append(f"upstreams[{i}].name: {u.name!r} is used twice")
        if u.password_env is not None and u.password_file is not None:
            out.append(f"upstreams[{i}]: give password_env or password_file, not both")
        if u.password_env is not None and u.password_env not in env:
            out.append(f"upstreams[{i}].password_env: {u.password_env} is not set")
        if u.password_file is not None:
            out += _readable(loaded, f"upstreams[{i}].password_file", u.password_file, secret=True)
    for i, listener in enumerate(c.listeners):
        out += _address(f"listeners[{i}].address", listener.address)
        if listener.upstream not in names:
            out.append(f"listeners[{i}].upstream: no upstream named {listener.upstream!r}")
        if (listener.tls_cert is None) != (listener.tls_key is None):
            out.append(f"listeners[{i}]: tls_cert and tls_key go together")
        for key in ("tls_cert", "tls_key"):
            value = getattr(listener, key)
            if value is not None:
                out += _readable(loaded, f"listeners[{i}].{key}", value, secret=key == "tls_key")
    users = [u.name for u in c.users]
    for i, user in enumerate(c.users):
        if users.count(user.name) > 1 and users.index(user.name) != i:
            out.append(f"users[{i}].name: {user.name!r} is used twice")
        try:
            parse_verifier(user.scram_verifier)
        except UsageError as exc:
            out.append(f"users[{i}].scram_verifier: {exc}")
    if c.oidc is not None:
        out += _oidc(loaded, c.oidc)
        if c.oidc.jwks_timeout_s >= c.limits.connect_timeout_s:
            out.append(
                "oidc.jwks_timeout_s: must be shorter than limits.connect_timeout_s "
                "(a login may wait for a key fetch)"
            )
    if c.api is not None:
        out += _api(loaded, c.api, has_oidc=c.oidc is not None)
    if c.privacy is not None:
        out += _privacy(loaded, c.privacy, env)
    if c.syslog is not None:
        out += _listener(loaded, "syslog", c.syslog)
    if c.retention is not None:
        out += retention_problems(c.retention)
    if not loaded.path(c.policies.directory).is_dir():
        out.append(f"policies.directory: {c.policies.directory} is not a directory")
    out += _timezone(c.policies.timezone)
    if c.ledger.signer_key is not None:
        out += _readable(loaded, "ledger.signer_key", c.ledger.signer_key, secret=True)
    out += _risk_checks(loaded, c.risk)
    return out


def _listener(loaded: Loaded, name: str, part: ApiConfig | SyslogConfig) -> list[str]:
    """Checks of a TLS-capable listener section: address, the key pair, no clear text off
    loopback (tokens, or records with personal data, would cross the network readable)."""
    out = _address(f"{name}.address", part.address)
    if (part.tls_cert is None) != (part.tls_key is None):
        out.append(f"{name}: tls_cert and tls_key go together")
    host = part.address.rpartition(":")[0].strip("[]")
    if part.tls_cert is None and not part.allow_plaintext and not out and not _loopback(host):
        out.append(
            f"{name}.address: {part.address} is not loopback; add tls_cert and tls_key "
            "(or allow_plaintext = true behind a proxy that terminates TLS)"
        )
    for key in ("tls_cert", "tls_key"):
        value = getattr(part, key)
        if value is not None:
            out += _readable(loaded, f"{name}.{key}", value, secret=key == "tls_key")
    return out


def _api(loaded: Loaded, api: ApiConfig, *, has_oidc: bool) -> list[str]:
    out = _listener(loaded, "api", api)
    if api.oidc_roles and not has_oidc:
        out.append("api.oidc_roles: needs an [oidc] provider to check the tokens")
    return out


def _privacy(loaded: Loaded, p: PrivacyConfig, env: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    if (p.master_key_file is None) == (p.master_key_env is None):
        out.append("privacy: give master_key_file or master_key_env (one of them)")
    if p.master_key_file is not None:
        out += _readable(loaded, "privacy.master_key_file", p.master_key_file, secret=True)
    if p.master_key_env is not None and p.master_key_env not in env:
        out.append(f"privacy.master_key_env: {p.master_key_env} is not set")
    for i, name in enumerate(p.fields):
        if name not in SEALABLE:
            out.append(f"privacy.fields[{i}]: cannot seal {name!r} (one of {', '.join(SEALABLE)})")
    if not p.fields:
        out.append("privacy.fields: name at least one field")
    return out


def _risk_checks(loaded: Loaded, r: RiskSettings) -> list[str]:
    out: list[str] = []
    for key in ("deny_list", "anonymizer_list"):
        value = getattr(r, key)
        if value is not None:
            out += _readable(loaded, f"risk.{key}", value)
    for i, mmdb in enumerate(r.mmdb):
        out += _readable(loaded, f"risk.mmdb[{i}]", mmdb)
    for i, row in enumerate(r.geo):
        try:
            ipaddress.ip_network(row.cidr, strict=False)
        except ValueError as exc:
            out.append(f"risk.geo[{i}].cidr: {exc}")
        if (row.latitude is None) != (row.longitude is None):
            out.append(f"risk.geo[{i}]: latitude and longitude go together")
    for label, cidrs in r.labels.items():
        for j, cidr in enumerate(cidrs):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                out.append(f"risk.labels.{label}[{j}]: {exc}")
    return out


def _oidc(loaded: Loaded, o: OidcConfig) -> list[str]:
    out: list[str] = []
    if (o.jwks_url is None) == (o.jwks_file is None):
        out.append("oidc: give jwks_url or jwks_file (one of them)")
    if o.jwks_url is not None:
        out += _jwks_url(o.jwks_url)
    if o.jwks_file is not None:
        out += _readable(loaded, "oidc.jwks_file", o.jwks_file)
    if not o.algorithms:
        out.append("oidc.algorithms: name at least one")
    for i, alg in enumerate(o.algorithms):
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            # An unsigned token proves nothing, and an HMAC "verified" with a public key
            # lets anyone who has the key (everyone) sign: public-key algorithms only.
            out.append(f"oidc.algorithms[{i}]: {alg} is not accepted (public-key algorithms only)")
        elif alg not in ASYMMETRIC_ALGORITHMS:
            out.append(
                f"oidc.algorithms[{i}]: unknown algorithm {alg!r} "
                f"(one of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
            )
    if o.jwks_refetch_s > o.jwks_refresh_s:
        out.append("oidc.jwks_refetch_s: must not be longer than jwks_refresh_s")
    return out


def _jwks_url(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"oidc.jwks_url: {url!r} is not an http:// or https:// URL"]
    if parts.scheme == "http" and not _loopback(parts.hostname):
        # Keys fetched in clear from another machine could be swapped on the way.
        return ["oidc.jwks_url: plain http is allowed only to a loopback address; use https"]
    return []


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _readable(loaded: Loaded, key: str, value: str, *, secret: bool = False) -> list[str]:
    p = loaded.path(value)
    if not p.is_file():
        return [f"{key}: no file {value}"]
    if not os.access(p, os.R_OK):
        return [f"{key}: {value} is not readable"]
    if secret and p.stat().st_mode & 0o077:
        return [f"{key}: {value} is readable by group or others (chmod 600)"]
    return []


def _address(key: str, value: str) -> list[str]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:  # 0: any free port
        return [f"{key}: {value!r} is not host:port"]
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return [f"{key}: {host!r} is not an IP address"]
    return []


def _timezone(name: str) -> list[str]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 (only checked here)

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return [f"policies.timezone: unknown time zone {name!r}"]
    return []


def read_secret(
    loaded: Loaded, upstream: Upstream, environ: Mapping[str, str] | None = None
) -> str | None:
    """The upstream's password (None: none configured, e.g. trust authentication)."""
    env = os.environ if environ is None else environ
    if upstream.password_env is not None:
        return env[upstream.password_env]
    if upstream.password_file is not None:
        return loaded.path(upstream.password_file).read_text(encoding="utf-8").rstrip("\n")
    return None
