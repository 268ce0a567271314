"""The configuration file: typed, strict, every problem named by its key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proctor.config import ConfigError, load_config, read_secret

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "proctor.toml"

BASE = """
[[listeners]]
address = "127.0.0.1:6432"
upstream = "db"

[[upstreams]]
name = "db"
database = "shop"
user = "proctor"
{upstream_extra}

[policies]
directory = "policies"

[ledger]
directory = "ledger"
"""


def _write(tmp_path: Path, text: str, *, policies: bool = True) -> Path:
    if policies:
        (tmp_path / "policies").mkdir(exist_ok=True)
    path = tmp_path / "proctor.toml"
    path.write_text(text)
    return path


def test_the_example_loads() -> None:
    loaded = load_config(EXAMPLE)
    c = loaded.config
    assert c.listeners[0].upstream == "local" and c.upstreams[0].port == 5432
    assert loaded.path(c.policies.directory) == EXAMPLE.parent / "policies"
    assert c.risk.sensitivity[0] == ("postgres/hr.*", "restricted")


def test_secrets_come_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.format(upstream_extra='password_env = "DB_PASSWORD"'))
    with pytest.raises(ConfigError, match=r"upstreams\[0\].password_env: DB_PASSWORD is not set"):
        load_config(path, environ={})
    loaded = load_config(path, environ={"DB_PASSWORD": "s3cret"})
    assert read_secret(loaded, loaded.config.upstreams[0], {"DB_PASSWORD": "s3cret"}) == "s3cret"
    secret = tmp_path / "db.secret"
    secret.write_text("from-file\n")
    os.chmod(secret, 0o644)
    path = _write(tmp_path, BASE.format(upstream_extra='password_file = "db.secret"'))
    with pytest.raises(ConfigError, match="readable by group or others"):
        load_config(path)
    os.chmod(secret, 0o600)
    loaded = load_config(path)
    assert read_secret(loaded, loaded.config.upstreams[0]) == "from-file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE.format(upstream_extra="port = 70000"),
            r"upstreams\[0\].port: Expected `int` <= 65535",
        ),
        (
            BASE.format(upstream_extra='colour = "red"'),
            r"upstreams\[0\]: Object contains unknown field `colour`",
        ),
        (
            BASE.replace('upstream = "db"', 'upstream = "nope"').format(upstream_extra=""),
            r"listeners\[0\].upstream: no upstream named 'nope'",
        ),
        (
            BASE.replace("127.0.0.1:6432", "localhost:6432").format(upstream_extra=""),
            "is not an IP address",
        ),
        (
            BASE.format(upstream_extra="") + '[risk]\nlabels = { corp = ["10.0.0.0/33"] }\n',
            r"risk.labels.corp\[0\]",
        ),
        (
            BASE.format(upstream_extra="") + '[risk]\nmmdb = ["nope.mmdb"]\n',
            r"risk.mmdb\[0\]: no file nope.mmdb",
        ),
        (
            BASE.format(upstream_extra="").replace(
                'directory = "policies"', 'directory = "policies"\ntimezone = "Mars/Base"'
            ),
            "unknown time zone",
        ),
        (
            BASE.format(upstream_extra="") + '[[risk.geo]]\ncidr = "10.0.0.0/40"\n',
            r"risk.geo\[0\].cidr",
        ),
        (
            BASE.format(upstream_extra="") + '[[risk.geo]]\ncidr = "10.0.0.0/8"\nlatitude = 1.0\n',
            r"risk.geo\[0\]: latitude and longitude go together",
        ),
        (
            BASE.format(upstream_extra="") + '[[risk.geo]]\ncidr = "10.0.0.0/8"\ncountry = "de"\n',
            r"risk.geo\[0\].country",
        ),
        ("not = [valid", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_every_cross_check_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = BASE.replace('upstream = "db"', 'upstream = "nope"').format(
        upstream_extra='password_env = "UNSET_VAR"'
    )
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text, policies=False), environ={})
    problems = info.value.problems
    assert len(problems) == 3
    assert any("policies.directory" in p for p in problems)
    assert any("UNSET_VAR" in p for p in problems)
    assert "and 2 more" in str(info.value)


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
