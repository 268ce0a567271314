"""Cutting a .cedar file into statements with their first lines."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proctor.policy._source import split_statements


def test_statements_start_at_their_first_token() -> None:
    text = (
        "// a comment; with a semicolon\n"
        '@id("a;b")  // trailing ; comment\n'
        'permit(principal, action, resource) when { context.operation == "x;\\"y;" };\n'
        "\n"
        "\n"
        '  @id("c")\n'
        "forbid(principal, action, resource);\n"
        "permit(principal,\n"
    )
    got = split_statements(text)
    assert [s.line for s in got] == [2, 6, 8]
    assert got[0].text.startswith("// a comment")  # comments before a policy stay with it
    assert got[0].text.rstrip().endswith("};")
    assert got[2].text.strip() == "permit(principal,"


def test_strings_spanning_lines_and_escaped_newlines_count_lines() -> None:
    text = '@reason("two\nlines\\\n") permit(principal, action, resource);\n'
    text += '@id("z") forbid(principal, action, resource);'
    assert [s.line for s in split_statements(text)] == [1, 4]


def test_empty_and_comment_only_files_have_no_statements() -> None:
    assert split_statements("") == []
    assert split_statements("// nothing ; here\n\n") == []


@given(st.text(alphabet='ab ;"\\/\n', max_size=60))
def test_never_fails_and_keeps_every_character_in_order(text: str) -> None:
    parts = split_statements(text)
    joined = "".join(p.text for p in parts)
    assert joined in text  # statements are consecutive slices; only leading/trailing junk drops
    assert all(1 <= p.line <= text.count("\n") + 1 for p in parts)
