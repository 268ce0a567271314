"""The [retention] section: shapes, and problems that name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.errors import UsageError
from proctor.retention.config import (
    RetentionConfig,
    RetentionRule,
    load_retention,
    retention_problems,
)

GOOD = """
[gateway_stuff]
ignored = true

[retention]
archive_dir = "arch"
interval_s = 3600

[[retention.rules]]
name = "sessions-7y"
kinds = ["session.*"]
keep_days = 2555

[[retention.rules]]
name = "rest-400d"
kinds = ["*"]
keep_days = 400
"""


def _load(tmp_path: Path, text: str) -> RetentionConfig:
    path = tmp_path / "proctor.toml"
    path.write_text(text)
    return load_retention(path).config


def test_a_good_section_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "proctor.toml"
    path.write_text(GOOD)
    loaded = load_retention(path)
    assert [r.name for r in loaded.config.rules] == ["sessions-7y", "rest-400d"]
    assert loaded.path(loaded.config.archive_dir) == tmp_path / "arch"
    assert loaded.config.max_entries_per_archive == 50_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[retention]\nbogus = 1\n", "retention: Object contains unknown field `bogus`"),
        (
            '[retention]\n[[retention.rules]]\nname = "x"\nkinds = ["query"]\nkeep_days = 0\n',
            "retention.rules[0].keep_days: Expected `int` >= 1",
        ),
        ("[other]\n", "no [retention] section"),
        ("[retention]\n", "retention.rules: no rules"),
        (
            '[retention]\n[[retention.rules]]\nname = "x"\nkinds = ["sesion.*"]\nkeep_days = 9\n',
            "retention.rules[0].kinds[0]: 'sesion.*' matches no event kind",
        ),
        (
            '[retention]\n[[retention.rules]]\nname = "x"\nkeep_days = 9\n',
            "retention.rules[0]: give kinds or sensitivity",
        ),
        (
            '[retention]\n[[retention.rules]]\nname = "x"\nsensitivity = ["secret"]\n'
            "keep_days = 9\n",
            "retention.rules[0].sensitivity[0]: Invalid enum value 'secret'",
        ),
    ],
)
def test_problems_name_their_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        _load(tmp_path, text)
    assert message in str(caught.value)


def test_cross_checks_report_every_problem() -> None:
    config = RetentionConfig(
        rules=(
            RetentionRule(name="all", kinds=("*",), keep_days=10),
            RetentionRule(name="all", kinds=("query",), keep_days=5),
            RetentionRule(name="restricted", sensitivity=("restricted",), keep_days=5),
        )
    )
    assert retention_problems(config) == [
        "retention.rules[1].name: 'all' is used twice",
        "retention.rules[1]: never applies (rules before it match every event it matches)",
        "retention.rules[2]: never applies (rules before it match every event it matches)",
    ]
