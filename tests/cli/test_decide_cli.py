"""``proctor decide`` records decisions in the ledger; ``proctor replay`` re-runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.cli.test_cli import ROOT, keys, ledger, proctor  # noqa: F401 (fixtures)

POLICIES = ROOT / "examples" / "policies"
REQUEST = """\
request:
  principal: {id: dana, roles: [dba]}
  action: {class: ddl, operation: DROP TABLE}
  resource: {type: table, name: public.orders, database: shop}
  time: '2026-11-23T10:00:00Z'
  network: {ip: 10.1.2.3}
"""


def test_decide_records_and_replay_reproduces(
    tmp_path: Path,
    keys: tuple[Path, Path],  # noqa: F811
    ledger: Path,  # noqa: F811
) -> None:
    req = tmp_path / "req.yaml"
    req.write_text(REQUEST)
    sk = ("--signer-key", keys[0])
    res = proctor("decide", req, "--policies", POLICIES, "--ledger", ledger, *sk, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["effect"] == "step_up" and doc["policies"] == ["ddl-needs-mfa"]
    entry = json.loads(proctor("ledger", "entry", str(doc["index"]), "--ledger", ledger).stdout)
    assert entry["kind"] == "decision" and entry["id"] == doc["event_id"]
    assert entry["input"]["context"]["principal"]["id"] == "dana"
    assert entry["risk"]["factors"][0]["signal"] == "destructive"

    res = proctor("replay", doc["event_id"], "--ledger", ledger)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("reproduced: step_up by ddl-needs-mfa")
    assert proctor("verify", "--ledger", ledger).returncode == 0

    # Someone rewrites the archived policy text: the replay refuses it.
    db = sqlite3.connect(ledger / "policies.sqlite")
    db.execute("DROP TRIGGER revisions_append_only_u")
    db.execute("UPDATE revisions SET files = ?", (json.dumps({"a.cedar": ""}),))
    db.commit()
    db.close()
    res = proctor("replay", doc["event_id"], "--ledger", ledger)
    assert res.returncode == 1 and "does not hash to it" in res.stderr


def test_replay_and_decide_errors(
    tmp_path: Path,
    keys: tuple[Path, Path],  # noqa: F811
    ledger: Path,  # noqa: F811
) -> None:
    sk = ("--signer-key", keys[0])
    res = proctor("replay", "0190f5a0-0000-7000-8000-000000000000", "--ledger", ledger)
    assert res.returncode == 2 and "no policy archive" in res.stderr
    req = tmp_path / "req.yaml"
    req.write_text(REQUEST + "risk: {score: 0, level: low}\n")
    res = proctor("decide", req, "--policies", POLICIES, "--ledger", ledger, *sk)
    assert res.returncode == 2 and "computed by decide" in res.stderr
    req.write_text(REQUEST)
    nowhere = tmp_path / "not-a-ledger"
    nowhere.mkdir()
    res = proctor("decide", req, "--policies", POLICIES, "--ledger", nowhere, *sk)
    assert res.returncode == 2 and "no ledger" in res.stderr
    assert list(nowhere.iterdir()) == []  # no side files left in a directory that is no ledger
    assert proctor("decide", req, "--policies", POLICIES, "--ledger", ledger, *sk).returncode == 0
    res = proctor("replay", "0190f5a0-0000-7000-8000-000000000000", "--ledger", ledger)
    assert res.returncode == 2 and "no event 0190f5a0" in res.stderr
    req.write_text(REQUEST.replace("class: ddl", "class: drop"))
    res = proctor("decide", req, "--policies", POLICIES, "--ledger", ledger, *sk)
    assert res.returncode == 3 and "$.request.action.class" in res.stderr, res.stderr


def test_explain_scores_risk_when_the_file_has_none(tmp_path: Path) -> None:
    req = tmp_path / "req.yaml"
    req.write_text(REQUEST)
    res = proctor("policy", "explain", req, "--policies", POLICIES, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["risk"]["factors"][0]["signal"] == "destructive"
    assert doc["effect"] == "step_up"
    missing = tmp_path / "typo.sqlite"
    res = proctor("policy", "explain", req, "--policies", POLICIES, "--baselines", missing)
    assert res.returncode == 2 and "no baselines file" in res.stderr
    assert not missing.exists()
