"""How unlike this user a session's features are: the statistical scorer.

After Freeman, Jain, Dürmuth, Biggio and Giacinto, "Who Are You? A Statistical Approach to
Measuring User Authenticity" (NDSS 2016). For each feature k of a login (IP address, device,
user agent) the evidence of an attack is the likelihood ratio

    r_k = p(x_k | attack) / p(x_k | user u, legitimate)

and, features taken as independent, the login's score is the product of the r_k. As in the
paper, the attacker's distribution is approximated by the whole population's (an attacker
logs in from where people log in), estimated from every user's allowed sessions.

Features are hierarchical: an unseen IP in the user's usual network and country is far less
suspicious than one on another continent. Each feature's probability is a weighted mixture
over its levels (IP: address 0.6, ASN 0.3, country 0.1; the weights of the reference
implementation by the paper's group). Smoothing:

* population side, per level, as in the reference implementation: a value seen c times in N
  observations with d distinct values gets ``c/N · (1 − M/(N+M))`` and an unseen value
  ``1/(N+M)``, with ``M = d + 1`` (mass kept back for values not yet seen);
* user side (our choice; the reference caps an unseen value's ratio at 4): the user's
  counts shrunk toward the population, ``(c_u + β·p_pop) / (n_u + β)``. An unseen value then
  has ratio ``(n_u + β) / β``: no evidence for a new user, strong evidence against a user with
  a long, consistent history; a value the user always uses gives a ratio below 1.

The paper's prior term ``p(u|attack)/p(u|legit)`` (users with few logins look riskier) is
left out: it is the same for every login of a user and would only shift that user's scores.
Each feature's log2 ratio, in bits, becomes its points (``points_per_bit``), clipped, so
every factor explains its share of the score. By default familiarity earns no negative
points: a user's usual device must not buy off another signal (a bulk export at night from
that device is still a bulk export at night).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from proctor.risk.baselines import UserBaseline

__all__ = ["HIERARCHY", "FeatureScore", "feature_ratio", "score_session"]

HIERARCHY: Final[Mapping[str, Sequence[tuple[str, float]]]] = {
    "ip": (("ip", 0.6), ("asn", 0.3), ("country", 0.1)),
    "device": (("device", 1.0),),
    "user_agent": (("user_agent", 0.7), ("ua_product", 0.3)),
}
"""Feature → its levels (baseline feature names) with their mixture weights."""


@dataclass(frozen=True)
class FeatureScore:
    """One feature's likelihood ratio and what it is worth."""

    feature: str
    ratio: float
    bits: float
    points: int


def _population_p(pop: UserBaseline, level: str, value: str) -> float:
    n = pop.totals.get(level, 0)
    m = pop.distinct(level) + 1
    c = pop.count(level, value)
    if c:
        return c / n * (1 - m / (n + m))
    return 1 / (n + m)


def feature_ratio(
    levels: Sequence[tuple[str, float]],
    values: Mapping[str, str],
    user: UserBaseline,
    pop: UserBaseline,
    beta: float,
) -> float | None:
    """``p(x|population) / p(x|user)`` over the levels present in ``values``; None if none."""
    present = [(lv, w) for lv, w in levels if lv in values]
    if not present:
        return None
    weight = sum(w for _, w in present)
    p_attack = p_user = 0.0
    for level, w in present:
        value = values[level]
        pa = _population_p(pop, level, value)
        pu = (user.count(level, value) + beta * pa) / (user.totals.get(level, 0) + beta)
        p_attack += w / weight * pa
        p_user += w / weight * pu
    return p_attack / p_user


def score_session(
    values: Mapping[str, str],
    user: UserBaseline,
    pop: UserBaseline,
    *,
    beta: float = 1.0,
    points_per_bit: float = 5.0,
    clip: tuple[int, int] = (0, 30),
) -> list[FeatureScore]:
    """Every feature's score for a session with these feature values."""
    out = []
    for feature, levels in HIERARCHY.items():
        ratio = feature_ratio(levels, values, user, pop, beta)
        if ratio is None:
            continue
        bits = math.log2(ratio)
        points = max(clip[0], min(clip[1], round(bits * points_per_bit)))
        out.append(FeatureScore(feature, ratio, bits, points))
    return out
