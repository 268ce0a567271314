"""``proctor policy …`` in real processes: exit codes, FILE:LINE errors, explanations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.cli.test_cli import ROOT, proctor

POLICIES = ROOT / "examples" / "policies"
CASES = ROOT / "examples" / "policy-tests" / "cases.yaml"


def test_validate_the_examples() -> None:
    res = proctor("policy", "validate", POLICIES)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK: 9 policies in 2 files, revision ")
    doc = json.loads(proctor("policy", "validate", POLICIES, "--json").stdout)
    assert {p["id"] for p in doc["policies"]} >= {"analysts-read", "ddl-needs-mfa"}


def test_validate_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    d = tmp_path / "p"
    shutil.copytree(POLICIES, d)
    (d / "extra.cedar").write_text(
        '@id("a")\npermit(principal, action, resource) when { context.risk.score > "x" };\n'
        '@id("b")\npermit(principal, action resource);\n'
    )
    res = proctor("policy", "validate", d)
    assert res.returncode == 3
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: extra.cedar:1: [a] unexpected type"), res.stderr
    assert lines[1].startswith("error: extra.cedar:3: syntax error: unexpected token"), res.stderr


def test_the_example_cases_pass() -> None:
    res = proctor("policy", "test", CASES)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "10 passed, 0 failed" in res.stdout


def test_a_wrong_expectation_fails_with_what_differs(tmp_path: Path) -> None:
    text = CASES.read_text().replace("policies: ../policies", f"policies: {POLICIES}")
    text = text.replace(
        "expect: {effect: deny, policies: [critical-risk]}", "expect: {effect: allow}"
    )
    cases = tmp_path / "cases.yaml"
    cases.write_text(text)
    res = proctor("policy", "test", cases, "--json")
    assert res.returncode == 1
    rows = json.loads(res.stdout)["cases"]
    failed = [r for r in rows if not r["passed"]]
    assert len(failed) == 1
    assert failed[0]["mismatches"] == ["effect: expected allow, got deny"]


def test_a_bad_cases_file_names_the_case_and_field(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        f"policies: {POLICIES}\ncases:\n  - name: typo\n    request: {{principal: {{id: a}}, "
        "action: {class: read}, resource: {type: table, name: t}, time: '2026-11-23T10:00:00Z'}\n"
        "    expect: {effect: allow, polices: [x]}\n"
    )
    res = proctor("policy", "test", cases)
    assert res.returncode == 3
    assert "case 1 ('typo')" in res.stderr and "polices" in res.stderr, res.stderr
    cases.write_text("cases: [\n")
    res = proctor("policy", "test", cases)
    assert res.returncode == 3 and "cases.yaml:" in res.stderr


def test_explain_shows_policies_reasons_and_risk(tmp_path: Path) -> None:
    req = tmp_path / "req.yaml"
    req.write_text(
        "request:\n  principal: {id: dana, roles: [dba]}\n"
        "  action: {class: ddl, operation: DROP TABLE}\n"
        "  resource: {type: table, name: public.orders, database: shop}\n"
        "  time: '2026-11-23T10:00:00Z'\n"
        "risk: {score: 40, level: medium, factors:\n"
        "  [{signal: unusual_hour, points: 15, evidence: 'rarely at 10h'}]}\n"
    )
    res = proctor("policy", "explain", req, "--policies", POLICIES)
    assert res.returncode == 0, res.stderr
    assert "STEP_UP" in res.stdout
    assert "ddl-needs-mfa (forbid) at risk.cedar:" in res.stdout
    assert "unusual_hour" in res.stdout and "rarely at 10h" in res.stdout
    doc = json.loads(proctor("policy", "explain", req, "--policies", POLICIES, "--json").stdout)
    assert doc["effect"] == "step_up" and doc["locations"]["ddl-needs-mfa"].startswith(
        "risk.cedar:"
    )
    req.write_text("request: {principal: {id: 5}}\n")
    res = proctor("policy", "explain", req, "--policies", POLICIES)
    assert res.returncode == 3 and "$.request" in res.stderr, res.stderr
