"""Account alerts: when one session of a user looks like an account takeover, every other
session of that user carries the risk too.

Risk signals about *who is behind the keyboard* (an unfamiliar network or device, impossible
travel, failed logins, a denied or anonymizing address, the identity provider's own risk) say
something about the account, not only about the session that showed them. When they add up to
the ``high`` threshold on one session, that session raises an alert for its user. For the
alert's lifetime every assessment of the same user on *another* session gets an
``account_risk`` factor worth the alert's points (capped by ``points["account_risk"]``), and
the alert's listeners are told, so the gateway re-decides that user's live sessions at once
instead of at their next statement. Which of the two sessions is the intruder cannot be
known, so both answer to the policies (typically: step up with MFA).

Only authenticated requests reach a decision, so nobody can raise an alert on someone else's
account without their credentials. Alerts live in memory: a restart forgets them (the
baselines that produced them are kept, so the next risky request raises it again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from proctor.events.schema import Factor

__all__ = ["ACCOUNT_SIGNALS", "AccountAlert", "AccountAlerts"]

ACCOUNT_SIGNALS: Final = frozenset(
    {
        "unfamiliar_network",
        "unfamiliar_device",
        "unfamiliar_client",
        "new_device",
        "new_network",
        "new_country",
        "impossible_travel",
        "auth_failures",
        "denied_ip",
        "anonymizer",
        "idp_risk_medium",
        "idp_risk_high",
        "device_compliance_lost",
    }
)
"""Signals about the person or device behind a request, not about what it does."""


@dataclass(frozen=True, slots=True)
class AccountAlert:
    """One user's raised alert: which session, how much, why, until when."""

    user: str
    session_id: str
    points: int
    signals: tuple[str, ...]
    ip: str | None
    raised_ns: int
    until_ns: int

    def describe(self) -> str:
        """One line for evidence and reasons."""
        where = f" from {self.ip}" if self.ip else ""
        return f"{', '.join(self.signals)} on session {self.session_id[:8]}{where}"


Listener = Callable[[AccountAlert], None]


class AccountAlerts:
    """Live alerts by user; safe to share between threads."""

    def __init__(self, lifetime_s: int = 900) -> None:
        self.lifetime_ns = lifetime_s * 1_000_000_000
        self._alerts: dict[str, AccountAlert] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def on_alert(self, listener: Listener) -> None:
        """Call ``listener`` (on the raising thread) for every new or stronger alert."""
        self._listeners.append(listener)

    def active(self, user: str, now_ns: int) -> AccountAlert | None:
        """The user's alert in force at ``now_ns``, if any."""
        alert = self._alerts.get(user)
        return alert if alert is not None and alert.until_ns > now_ns else None

    def factor(self, user: str, session_id: str | None, now_ns: int, cap: int) -> Factor | None:
        """The ``account_risk`` factor for a request on another session than the alert's."""
        alert = self.active(user, now_ns)
        if alert is None or cap <= 0 or alert.session_id == session_id:
            return None
        return Factor(
            signal="account_risk",
            points=min(alert.points, cap, 100),
            evidence=f"this account looked taken over: {alert.describe()}",
        )

    def observe(
        self,
        user: str,
        session_id: str | None,
        ip: str | None,
        factors: Iterable[Factor],
        threshold: int,
        now_ns: int,
    ) -> AccountAlert | None:
        """Raise an alert when the account signals among ``factors`` reach ``threshold``;
        the new alert (listeners already told) or None."""
        if session_id is None:
            return None
        mine = [f for f in factors if f.signal in ACCOUNT_SIGNALS and f.points > 0]
        points = sum(f.points for f in mine)
        if points < threshold:
            return None
        alert = AccountAlert(
            user=user,
            session_id=session_id,
            points=min(points, 100),
            signals=tuple(f.signal for f in mine),
            ip=ip,
            raised_ns=now_ns,
            until_ns=now_ns + self.lifetime_ns,
        )
        with self._lock:
            old = self.active(user, now_ns)
            if old is not None and old.session_id == session_id and old.points >= alert.points:
                return None  # the same session again: nothing new to tell
            self._alerts[user] = alert
        for listener in list(self._listeners):
            listener(alert)
        return alert
