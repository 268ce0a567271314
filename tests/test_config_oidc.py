"""The ``[oidc]`` section: token logins configured, every problem named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.config import ConfigError, load_config
from tests.test_config import BASE, _write

GOOD = """
[oidc]
issuer = "https://idp.example.com"
audience = "proctor"
jwks_url = "https://idp.example.com/.well-known/jwks.json"
"""


def test_defaults(tmp_path: Path) -> None:
    o = load_config(_write(tmp_path, BASE.format(upstream_extra="") + GOOD)).config.oidc
    assert o is not None
    assert o.algorithms == ("RS256", "ES256", "EdDSA") and o.require_tls
    assert (o.user_claim, o.roles_claim, o.groups_claim) == (
        "preferred_username",
        "roles",
        "groups",
    )
    assert o.leeway_s == 30 and o.jwks_refetch_s <= o.jwks_refresh_s
    assert load_config(_write(tmp_path, BASE.format(upstream_extra=""))).config.oidc is None


def test_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    text = GOOD.replace(
        'jwks_url = "https://idp.example.com/.well-known/jwks.json"', 'jwks_file = "jwks.json"'
    )
    assert load_config(_write(tmp_path, BASE.format(upstream_extra="") + text)).config.oidc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('issuer = "https://idp.example.com"\n', ""),
            "oidc: Object missing required field `issuer`",
        ),
        (
            ('audience = "proctor"\n', 'audience = ""\n'),
            r"oidc.audience: Expected `str` of length >= 1",
        ),
        (("jwks_url", "colour = 1\njwks_url"), "oidc: Object contains unknown field `colour`"),
        (("jwks_url", 'jwks_file = "jwks.json"\njwks_url'), "oidc: give jwks_url or jwks_file"),
        (
            ('jwks_url = "https://idp.example.com/.well-known/jwks.json"\n', ""),
            "oidc: give jwks_url",
        ),
        (("https://idp.example.com/.well", "ftp://idp.example.com/.well"), "oidc.jwks_url: 'ftp:"),
        (
            ("https://idp.example.com/.well", "http://idp.example.com/.well"),
            "oidc.jwks_url: plain http is allowed only to a loopback address",
        ),
        (("jwks_url", 'algorithms = ["RS256", "none"]\njwks_url'), r"oidc.algorithms\[1\]: none"),
        (("jwks_url", 'algorithms = ["HS256"]\njwks_url'), r"oidc.algorithms\[0\]: HS256 is not"),
        (("jwks_url", 'algorithms = ["hs512"]\njwks_url'), r"oidc.algorithms\[0\]: hs512 is not"),
        (("jwks_url", 'algorithms = ["RS257"]\njwks_url'), r"algorithms\[0\]: unknown algorithm"),
        (("jwks_url", "algorithms = []\njwks_url"), "oidc.algorithms: name at least one"),
        (("jwks_url", "leeway_s = 3600\njwks_url"), r"oidc.leeway_s: Expected `int` <= 300"),
        (
            ("jwks_url", "jwks_refresh_s = 10\njwks_refetch_s = 60\njwks_url"),
            "oidc.jwks_refetch_s: must not be longer than jwks_refresh_s",
        ),
        (
            ("jwks_url", "jwks_timeout_s = 20\njwks_url"),
            "oidc.jwks_timeout_s: must be shorter than limits.connect_timeout_s",
        ),
        (("jwks_url", 'require_tls = "no"\njwks_url'), "oidc.require_tls: Expected `bool`"),
    ],
)
def test_bad_oidc_settings_name_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = BASE.format(upstream_extra="") + GOOD.replace(*change, 1)
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    text = GOOD.replace(
        'jwks_url = "https://idp.example.com/.well-known/jwks.json"', 'jwks_file = "nope.json"'
    )
    with pytest.raises(ConfigError, match=r"oidc.jwks_file: no file nope.json"):
        load_config(_write(tmp_path, BASE.format(upstream_extra="") + text))
