"""A request decided, recorded in a real ledger, read back and replayed."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from proctor.decision import Decider, replay
from proctor.errors import ProctorError, StorageError, UsageError
from proctor.events.canonical import canonical_bytes, decode_event
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.policy.archive import PolicyArchive
from proctor.policy.live import LivePolicies
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine
from tests.policy.conftest import EXAMPLES
from tests.risk.conftest import NETWORK, login


@pytest.fixture
def decider(tmp_path: Path) -> Decider:
    live = LivePolicies(EXAMPLES / "policies", archive=PolicyArchive(tmp_path / "archive.sqlite"))
    return Decider(live, RiskEngine(Baselines(), network=NETWORK), gateway="gw-1")


def _analyst_read(**more: object) -> object:
    return login(
        principal={"id": "alice", "roles": ["analyst"], "attributes": {"dept": "finance"}},
        action={"class": "read", "operation": "SELECT", "sql": {"objects": ["public.orders"]}},
        resource={"type": "table", "name": "public.orders", "database": "shop"},
        session_id="0b7c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d",
        **more,
    )


def test_decide_record_read_back_and_replay(tmp_path: Path, decider: Decider) -> None:
    signer = Signer.generate("audit.example/log")
    Ledger.init(tmp_path / "ledger", signer)
    decided = decider.evaluate(_analyst_read())  # type: ignore[arg-type]
    assert decided.decision.effect == "allow"
    assert decided.context.network is not None and decided.context.network.labels == ("corp",)
    event = decided.event
    assert event.kind == "decision" and event.decision is not None
    assert event.decision.policies == ("analysts-read",)
    assert event.decision.policy_revision == decider.engine.revision
    assert (
        event.actor is not None and event.actor.geo is not None and event.actor.geo.country == "DE"
    )
    assert event.risk is not None and event.risk.model == "proctor-risk/1;statistical"
    with Ledger(tmp_path / "ledger", signer=signer) as ledger:
        index = ledger.append(event)
        back = decode_event(ledger.entry(index))
    assert back == event
    result = replay(back, decider._policies.archive)  # type: ignore[union-attr]
    assert result.reproduced and result.differences == ()


def test_replay_names_what_differs_and_uses_the_recorded_revision(decider: Decider) -> None:
    decided = decider.evaluate(_analyst_read())  # type: ignore[arg-type]
    archive = decider._policies.archive  # type: ignore[union-attr]
    assert decided.event.input is not None
    # The record says "step_up"; the policies at that revision say "allow".
    dec = decided.event.decision
    assert dec is not None
    forged = msgspec.structs.replace(
        decided.event, decision=msgspec.structs.replace(dec, effect="step_up", policies=("x",))
    )
    r = replay(forged, archive)
    assert not r.reproduced
    assert r.differences[0] == "effect: recorded step_up, replayed allow"
    gone = msgspec.structs.replace(
        decided.event, decision=msgspec.structs.replace(dec, policy_revision="0" * 64)
    )
    with pytest.raises(UsageError, match="not in the archive"):
        replay(gone, archive)


def test_redacted_fields_are_not_recorded(decider: Decider) -> None:
    d = Decider(decider._policies, decider.risk, redact=["principal.attributes", "network.ip"])
    event = d.evaluate(_analyst_read()).event  # type: ignore[arg-type]
    assert event.input is not None and event.actor is not None
    assert event.input.context.principal.attributes == {}
    assert event.input.context.network is not None
    assert event.input.redacted == ("network.ip", "principal.attributes")
    assert event.actor.ip is None
    assert b"finance" not in canonical_bytes(event)
    with pytest.raises(UsageError, match=r"cannot redact 'principal\.id'"):
        Decider(decider._policies, decider.risk, redact=["principal.id"])


def test_every_decision_event_is_a_valid_canonical_event(decider: Decider) -> None:
    for ctx in (
        _analyst_read(),
        login(ip="200.1.2.3", device="unknown-pc", time="2026-11-23T03:00:00Z"),
        login(
            principal={"id": "dana", "roles": ["dba"]},
            action={"class": "ddl", "operation": "DROP TABLE"},
        ),
    ):
        event = decider.evaluate(ctx).event  # type: ignore[arg-type]
        assert decode_event(canonical_bytes(event)) == event


def test_policy_reloaded_event_is_valid(decider: Decider) -> None:
    from proctor.decision import policy_reloaded_event

    event = policy_reloaded_event("a" * 64, "b" * 64, decider.clock, policies=9, files=2)
    assert decode_event(canonical_bytes(event)) == event
    assert event.attributes["policy.previous"] == "a" * 64
    assert event.attributes["policy.revision"] == "b" * 64


READ = '@id("read") permit(principal, action == Action::"read", resource);\n'


def _read_only_policies(tmp_path: Path) -> tuple[Path, LivePolicies]:
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.cedar").write_text(READ)
    return d, LivePolicies(d)


def test_reloads_are_recorded_before_they_take_effect(tmp_path: Path) -> None:
    from proctor.decision import record_reloads

    signer = Signer.generate("audit.example/log")
    Ledger.init(tmp_path / "ledger", signer)
    d, live = _read_only_policies(tmp_path)
    first = live.revision
    ledger = Ledger(tmp_path / "ledger", signer=signer)
    record_reloads(live, ledger)
    (d / "a.cedar").write_text(
        READ + '@id("w") permit(principal, action == Action::"write", resource);\n'
    )
    assert live.reload()
    event = decode_event(ledger.entry(ledger.size() - 1))
    assert event.kind == "policy.reloaded"
    assert event.attributes["policy.previous"] == first
    assert event.attributes["policy.revision"] == live.revision
    assert event.attributes["policy.count"] == "2"
    second = live.revision
    ledger.close()  # the ledger cannot take the record now: the reload must not happen
    (d / "a.cedar").write_text(READ)
    with pytest.raises(ProctorError):
        live.reload()
    assert live.revision == second


def test_redaction_also_scrubs_evidence_and_replay_uses_the_recorded_settings(
    tmp_path: Path,
) -> None:
    from proctor.policy.engine import EngineConfig

    d = tmp_path / "p"
    d.mkdir()
    (d / "a.cedar").write_text(
        '@id("office-hours") permit(principal, action, resource)'
        " when { context.time.hour >= 9 && context.time.hour < 17 };\n"
    )
    live = LivePolicies(d, config=EngineConfig(timezone="America/New_York"))
    decider = Decider(
        live,
        RiskEngine(Baselines(), network=NETWORK),
        redact=["network.ip", "device.id", "action.sql.functions"],
    )
    ctx = login(
        ip="203.0.113.77",
        device="stolen-phone-99",
        time="2026-11-23T15:00:00Z",  # 10:00 in New York, office hours there
        action={"class": "read", "operation": "DELETE", "sql": {"functions": ["pg_read_file"]}},
    )
    decided = decider.evaluate(ctx)
    assert decided.decision.effect == "allow"
    data = canonical_bytes(decided.event)
    for secret in (b"203.0.113.77", b"stolen-phone-99", b"pg_read_file"):
        assert secret not in data, secret
    assert b"DELETE" in data  # whole values only are scrubbed
    assert any(f.signal == "denied_ip" for f in decided.risk.factors)  # the factor stays
    result = replay(decided.event, live.archive)
    assert result.reproduced, result.differences
    assert result.notes == (
        "fields redacted from the record: action.sql.functions, device.id, network.ip",
    )


def test_a_reload_whose_record_failed_is_tried_again(tmp_path: Path) -> None:
    d, live = _read_only_policies(tmp_path)
    first = live.revision
    down = [True]

    def record(_old: str, _new: object) -> None:
        if down[0]:
            raise StorageError("ledger down")

    live.on_reload = record
    (d / "a.cedar").write_text(READ + '@id("no") forbid(principal, action, resource);\n')
    with pytest.raises(StorageError):
        live.reload_if_changed()
    assert live.revision == first and isinstance(live.last_error, StorageError)
    down[0] = False  # the ledger is back; nothing changed on disk since
    assert live.reload_if_changed()
    assert live.revision != first and live.last_error is None
