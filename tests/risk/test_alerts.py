"""Account alerts: a takeover seen on one session weighs on the user's other sessions."""

from __future__ import annotations

from proctor.events.schema import Factor
from proctor.risk.alerts import AccountAlert, AccountAlerts

S1, S2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
MIN = 60 * 1_000_000_000


def f(signal: str, points: int) -> Factor:
    return Factor(signal=signal, points=points)


def test_account_signals_at_the_threshold_raise_an_alert_others_feel() -> None:
    alerts = AccountAlerts(lifetime_s=600)
    told: list[AccountAlert] = []
    alerts.on_alert(told.append)
    risky = [f("impossible_travel", 40), f("new_country", 25), f("ddl", 15)]
    alert = alerts.observe("alice", S2, "200.1.2.3", risky, threshold=60, now_ns=0)
    assert alert is not None and told == [alert]
    assert alert.points == 65 and alert.signals == ("impossible_travel", "new_country")
    other = alerts.factor("alice", S1, now_ns=MIN, cap=100)
    assert other is not None and other.signal == "account_risk" and other.points == 65
    assert other.evidence is not None and "200.1.2.3" in other.evidence
    assert alerts.factor("alice", S2, now_ns=MIN, cap=100) is None  # its own session
    assert alerts.factor("bob", S1, now_ns=MIN, cap=100) is None  # another user
    assert alerts.factor("alice", S1, now_ns=MIN, cap=30).points == 30  # type: ignore[union-attr]
    assert alerts.factor("alice", S1, now_ns=MIN, cap=0) is None  # switched off
    assert alerts.factor("alice", S1, now_ns=11 * MIN, cap=100) is None  # expired


def test_what_a_session_does_never_raises_one_nor_does_a_repeat() -> None:
    alerts = AccountAlerts()
    told: list[AccountAlert] = []
    alerts.on_alert(told.append)
    work = [f("copy_program", 40), f("destructive", 25), f("unusual_hour", 10)]
    assert alerts.observe("bob", S1, None, work, threshold=60, now_ns=0) is None
    assert alerts.observe("bob", S1, None, [f("denied_ip", 60)], threshold=60, now_ns=0)
    assert alerts.observe("bob", S1, None, [f("denied_ip", 60)], threshold=60, now_ns=1) is None
    assert alerts.observe("bob", None, None, [f("denied_ip", 90)], threshold=60, now_ns=1) is None
    assert len(told) == 1
