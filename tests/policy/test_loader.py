"""Loading a policy directory: all or nothing, every problem as FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.policy.loader import PolicyError, load_policies, load_policy_texts
from tests.policy.conftest import EXAMPLES

GOOD = '@id("ok")\npermit(principal, action == Action::"read", resource);\n'


def _problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policies(directory)
    return info.value.problems


def test_examples_load_with_ids_files_and_lines() -> None:
    bundle = load_policies(EXAMPLES / "policies")
    p = bundle.policies["ddl-needs-mfa"]
    assert (p.file, p.effect, p.on_deny) == ("risk.cedar", "forbid", "step_up")
    text = (EXAMPLES / "policies" / "risk.cedar").read_text().splitlines()
    assert text[p.line - 1].startswith('@id("ddl-needs-mfa")')
    assert len(bundle.revision) == 64


def test_revision_follows_every_byte_and_name() -> None:
    a = load_policy_texts({"a.cedar": GOOD}).revision
    assert load_policy_texts({"a.cedar": GOOD}).revision == a
    assert load_policy_texts({"a.cedar": GOOD + " "}).revision != a
    assert load_policy_texts({"b.cedar": GOOD}).revision != a


def test_syntax_errors_name_each_statement_line(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.cedar").write_text(
        GOOD + '\n\n@id("bad")\npermit(principal, action, resource) when { };\n'
    )
    (d / "b.cedar").write_text('@id("x") permit(principal action, resource);')
    problems = _problems(d)
    assert problems[0].startswith("a.cedar:5: syntax error")
    assert problems[1].startswith("b.cedar:1: syntax error")


def test_schema_errors_name_file_line_and_policy(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.cedar").write_text(
        GOOD
        + '\n@id("typo")\nforbid(principal, action, resource)\nwhen { context.risk.scor > 5 };\n'
        + '@id("str")\nforbid(principal, action, resource) when { context.risk.score > "high" };\n'
        + '@id("ent")\npermit(principal == Usr::"x", action, resource);\n'
    )
    problems = _problems(d)
    assert any(p.startswith("a.cedar:4: [typo]") and "scor" in p for p in problems), problems
    assert any(p.startswith("a.cedar:7: [str]") for p in problems), problems
    assert any(p.startswith("a.cedar:9: [ent]") for p in problems), problems


def test_annotation_duplicate_and_template_problems(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.cedar").write_text(
        GOOD + '@id("m")\n@obligation("teleport")\npermit(principal, action, resource);\n'
    )
    (d / "b.cedar").write_text(
        "// same id again\n"
        + GOOD
        + '@id("t") permit(principal == ?principal, action, resource);\n'
    )
    (d / "c.cedar").write_text("permit(principal, action, resource);\n")
    problems = _problems(d)
    assert "a.cedar:3: @obligation 'teleport' is not one Proctor enforces" in problems[0]
    assert any("b.cedar:4: templates" in p for p in problems), problems
    assert any("c.cedar:1: every policy needs an @id" in p for p in problems), problems
    # b.cedar's "ok" clashes with a.cedar's only when b's other problems are fixed
    (d / "b.cedar").write_text("// same id again\n" + GOOD)
    (d / "a.cedar").write_text(GOOD)
    (d / "c.cedar").unlink()
    assert _problems(d) == ["b.cedar:2: @id 'ok' is already used at a.cedar:1"]


def test_empty_missing_and_unreadable(tmp_path: Path) -> None:
    assert "not a directory" in _problems(tmp_path / "nope")[0]
    assert "no .cedar files" in _problems(tmp_path)[0]
    (tmp_path / "x.cedar").write_bytes(b'@id("\xff") permit(principal, action, resource);')
    assert _problems(tmp_path)[0].startswith("x.cedar: not UTF-8")


def test_subdirectories_are_loaded_with_their_relative_names(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "a.cedar").write_text(GOOD)
    bundle = load_policies(tmp_path)
    assert bundle.policies["ok"].file == "team/a.cedar"
