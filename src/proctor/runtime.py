"""The running parts a configuration describes, opened together and closed together.

:func:`open_runtime` turns a checked ``proctor.toml`` (``config.py``) into the ledger (created
on first use, with its signer key kept beside it), the policy archive and live policies (their
reloads recorded in the ledger, watched for changes), the risk baselines and engine, and the
Decider that ties them up. Side files live in the ledger directory.
"""

from __future__ import annotations

import logging
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
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine
from proctor.risk.network import GeoRow, GeoTable, NetworkClassifier, read_cidr_file
from proctor.risk.signals import DEFAULT_POINTS, RiskConfig

__all__ = ["ARCHIVE_NAME", "BASELINES_NAME", "Runtime", "open_ledger", "open_runtime"]

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

    def close(self) -> None:
        """Stop watching policies, then close baselines, archive and ledger (in that order)."""
        self.policies.close()
        for login in self.logins.values():
            if login.oidc is not None:
                login.oidc.close()
        self.baselines.close()
        self.archive.close()
        self.ledger.close()


def open_ledger(loaded: Loaded) -> Ledger:
    """The configured ledger, open for appending (created with its signer key on first use)."""
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
    return Ledger(directory, signer=load_signer(key), durability=cfg.durability)


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
    ledger = open_ledger(loaded)
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
        for part in (baselines, archive, ledger):
            if part is not None:
                part.close()
        raise
    policies.watch(c.policies.watch_interval_s)
    return Runtime(loaded, ledger, archive, policies, baselines, decider, logins)
