"""The statistical scorer's properties (Freeman et al. 2016, with shrinkage on the user side)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from proctor.risk.baselines import Baselines, SessionFacts
from proctor.risk.freeman import HIERARCHY, feature_ratio, score_session

IP = HIERARCHY["ip"]


def _world(alice_sessions: int = 40) -> Baselines:
    b = Baselines()
    for k in range(alice_sessions):
        b.learn_session(
            "alice", SessionFacts({"ip": "10.0.0.5", "asn": "64500", "country": "DE"}, 9, k)
        )
    for u in range(30):
        for k in range(5):
            values = {"ip": f"81.2.{u}.{k}", "asn": str(20000 + u % 3), "country": "GB"}
            b.learn_session(f"user{u}", SessionFacts(values, 10, k))
    return b


def test_a_value_never_seen_by_a_long_history_is_strong_evidence() -> None:
    b = _world()
    new = {"ip": "200.1.2.3", "asn": "28573", "country": "BR"}
    r = feature_ratio(IP, new, b.user("alice"), b.population, beta=1.0)
    assert r is not None and math.isclose(r, 41.0)  # (n_u + beta) / beta


def test_no_history_means_no_evidence() -> None:
    b = _world()
    new = {"ip": "200.1.2.3", "asn": "28573", "country": "BR"}
    assert math.isclose(feature_ratio(IP, new, b.user("nobody"), b.population, 1.0) or 0, 1.0)


def test_the_usual_values_lower_the_score_and_the_hierarchy_softens_a_new_address() -> None:
    b = _world()
    alice = b.user("alice")
    usual = feature_ratio(
        IP, {"ip": "10.0.0.5", "asn": "64500", "country": "DE"}, alice, b.population, 1.0
    )
    new_ip = feature_ratio(
        IP, {"ip": "10.0.0.99", "asn": "64500", "country": "DE"}, alice, b.population, 1.0
    )
    new_all = feature_ratio(
        IP, {"ip": "81.2.0.0", "asn": "20000", "country": "GB"}, alice, b.population, 1.0
    )
    assert usual is not None and new_ip is not None and new_all is not None
    assert usual < 1 and new_ip < 1 < new_all


def test_points_follow_bits_and_are_clipped() -> None:
    b = _world()
    scores = score_session(
        {"ip": "200.1.2.3", "device": "pc"}, b.user("alice"), b.population, points_per_bit=10
    )
    by = {s.feature: s for s in scores}
    assert by["ip"].points == 30  # log2(41) * 10 = 53.6, clipped to 30
    assert "user_agent" not in by  # no value, no factor


@given(st.integers(1, 60), st.integers(0, 60))
def test_unseen_ratio_grows_with_history(n: int, c: int) -> None:
    b = Baselines()
    for k in range(n):
        b.learn_session("u", SessionFacts({"device": "d1"}, 9, k))
    for k in range(c):
        b.learn_session(f"o{k}", SessionFacts({"device": f"x{k}"}, 9, k))
    r = feature_ratio(HIERARCHY["device"], {"device": "new"}, b.user("u"), b.population, 1.0)
    assert r is not None and math.isclose(r, n + 1)
