"""The running parts a configuration describes, opened together and closed together.

:func:`open_runtime` turns a checked ``proctor.toml`` (``config.py``) into the ledger (created
on first use, with its signer key kept beside it), the policy archive and live policies (their
reloads recorded in the ledger, watched for changes), the risk baselines and engine, and the
Decider that ties them up. Side files live in the ledger directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from proctor.config import Loaded, read_secret
from proctor.decision import Decider, record_reloads
from proctor.errors import UsageError
from proctor.gateway.postgres.scram import parse_verifier
from proctor.gateway.postgres.startup import Account, Login, UpstreamLogin
from proctor.identity.jwks import JwksClient
from proctor.ledger.ledger import DB_NAME, SKEY_NAME, VKEY_NAME, Ledger, load_signer
from proctor.ledger.note import Signer
from proctor.policy.archive import PolicyArchive
from proctor.policy.engine import EngineConfig
from proctor.policy.live import LivePolicies
from proctor.privacy.erasure import erasure_event
from proctor.privacy.keys import KEYS_NAME, KeyStore, read_master_key
from proctor.privacy.seal import Sealer
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine
from proctor.risk.network import GeoRow, GeoTable, NetworkClassifier, read_cidr_file
from proctor.risk.signals import DEFAULT_POINTS, RiskConfig

__all__ = [
    "ARCHIVE_NAME",
    "BASELINES_NAME",
    "Runtime",
    "close_ledger",
    "open_ledger",
    "open_runtime",
]

log = logging.getLogger(__name__)

ARCHIVE_NAME: Final = "policies.sqlite"
BASELINES_NAME: Final = "baselines.sqlite"


@dataclass
class Runtime:
    """Ledger, policies, risk and decider for one configuration."""

    loaded: Loaded
    ledger: Ledger
    archive: PolicyArchive
    policies: LivePolicies
    baselines: Baselines
    decider: Decider
    logins: dict[str, Login] = field(default_factory=dict)
    """Per listener address: who may log in and where they go."""
    keys: KeyStore | None = None
    """Per-subject keys when personal fields are sealed (``[privacy]``)."""

    def close(self) -> None:
        """Stop watching policies, then close baselines, archive and ledger (in that order)."""
        self.policies.close()
        for login in self.logins.values():
            if login.oidc is not None:
                login.oidc.close()
        self.baselines.close()
        self.archive.close()
        close_ledger(self.ledger, self.keys)


def open_ledger(
    loaded: Loaded, environ: Mapping[str, str] | None = None
) -> tuple[Ledger, KeyStore | None]:
    """The configured ledger, open for appending (created with its signer key on first use).

    With ``[privacy]``, the ledger seals personal fields under per-subject keys kept in the key
    store returned beside it (close both with :func:`close_ledger`); an erasure a crash
    interrupted is finished and recorded here.
    """
    cfg = loaded.config.ledger
    directory = loaded.path(cfg.directory)
    key = loaded.path(cfg.signer_key) if cfg.signer_key else directory / SKEY_NAME
    if not (directory / DB_NAME).exists() and cfg.signer_key is None:
        # First start: a new ledger whose signer key stays beside it (mode 0600).
        signer = Signer.generate(loaded.config.gateway)
        Ledger.init(directory, signer, keep_signer=True)
        log.warning("created a new ledger in %s; its verifier key is %s", directory, VKEY_NAME)
    if not key.exists():
        raise UsageError(f"ledger.signer_key: {key} does not exist")
    ledger = Ledger(directory, signer=load_signer(key), durability=cfg.durability)
    privacy = loaded.config.privacy
    if privacy is None:
        return ledger, None
    # Only the process that holds the ledger opens its keys (and finishes their erasures).
    env = os.environ if environ is None else environ
    try:
        master = read_master_key(
            file=loaded.path(privacy.master_key_file) if privacy.master_key_file else None,
            env_value=env.get(privacy.master_key_env) if privacy.master_key_env else None,
        )
        keys = KeyStore(directory / KEYS_NAME, master)
    except BaseException:
        ledger.close()
        raise
    ledger.sealer = Sealer(keys.key_for, privacy.fields)
    for done in keys.completed:
        reason = f"{done.reason} (finished after an interruption)"
        event = erasure_event(
            done.subject, done.key_ids, reason=reason, by="proctor", instance=loaded.config.gateway
        )
        ledger.append(event)
    return ledger, keys


def close_ledger(ledger: Ledger, keys: KeyStore | None) -> None:
    """Close the ledger, then its key store (if it seals)."""
    ledger.close()
    if keys is not None:
        keys.close()


def _risk(loaded: Loaded, baselines: Baselines) -> RiskEngine:
    r = loaded.config.risk
    points = dict(DEFAULT_POINTS)
    points.update(r.points)
    config = RiskConfig(
        scorer=r.scorer,
        sensitivity=r.sensitivity,
        points=points,
        alert_lifetime_s=r.alert_lifetime_s,
    )
    rows = [
        GeoRow(
            g.cidr,
            g.country,
            g.city,
            None if g.latitude is None else round(g.latitude * 1e6),
            None if g.longitude is None else round(g.longitude * 1e6),
            g.asn,
        )
        for g in r.geo
    ]
    network = NetworkClassifier(
        labels=r.labels,
        deny=read_cidr_file(loaded.path(r.deny_list)) if r.deny_list else (),
        anonymizers=read_cidr_file(loaded.path(r.anonymizer_list)) if r.anonymizer_list else (),
        geo=GeoTable(rows, mmdb=[loaded.path(p) for p in r.mmdb]),
    )
    return RiskEngine(baselines, config, network, timezone=loaded.config.policies.timezone)


def _logins(loaded: Loaded, environ: Mapping[str, str] | None) -> dict[str, Login]:
    c = loaded.config
    accounts = {u.name: Account(u, parse_verifier(u.scram_verifier)) for u in c.users}
    upstreams = {u.name: u for u in c.upstreams}
    oidc = None
    if c.oidc is not None:
        source = c.oidc.jwks_url or str(loaded.path(c.oidc.jwks_file or ""))
        oidc = JwksClient(c.oidc, source)
    out = {}
    for listener in c.listeners:
        up = upstreams[listener.upstream]
        out[listener.address] = Login(
            gateway=c.gateway,
            upstream=UpstreamLogin(up, read_secret(loaded, up, environ)),
            accounts=accounts,
            tls=listener.tls_cert is not None,
            oidc=oidc,
        )
    return out


def open_runtime(loaded: Loaded, environ: Mapping[str, str] | None = None) -> Runtime:
    """Open everything ``loaded`` describes; close it with :meth:`Runtime.close`."""
    c = loaded.config
    logins = _logins(loaded, environ)
    ledger, keys = open_ledger(loaded, environ)
    directory = ledger.directory
    archive = baselines = None
    try:
        archive = PolicyArchive(directory / ARCHIVE_NAME)
        baselines = Baselines(directory / BASELINES_NAME)
        policies = LivePolicies(
            loaded.path(c.policies.directory),
            archive=archive,
            config=EngineConfig(timezone=c.policies.timezone, mfa_fresh_s=c.policies.mfa_fresh_s),
        )
        record_reloads(policies, ledger)
        decider = Decider(policies, _risk(loaded, baselines), gateway=c.gateway)
    except BaseException:
        for part in (baselines, archive):
            if part is not None:
                part.close()
        close_ledger(ledger, keys)
        raise
    policies.watch(c.policies.watch_interval_s)
    return Runtime(loaded, ledger, archive, policies, baselines, decider, logins, keys)
