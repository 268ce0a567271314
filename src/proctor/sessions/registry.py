"""Every live session, and the re-decisions that can end one (continuous authorization).

A gateway registers each session once it is logged in. The registry re-decides sessions when
something changes (a policy reload, a principal's roles, a grant's ``@recheck`` running out,
an administrator's revocation) and has those no longer allowed cut at once.

The registry knows sessions only through :class:`LiveSession`, so any gateway can register.
It is not thread-safe: call it on the gateway's event loop (threads hand over with
``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from proctor.decision import Decided
from proctor.events.context import Principal

__all__ = ["LiveSession", "SessionInfo", "SessionRegistry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionInfo:
    """One line of ``proctor sessions list``."""

    id: str
    user: str
    client: str
    target: str
    started: str
    statements: int
    denied: int
    risk: int


class LiveSession(Protocol):
    """What the registry needs of a session."""

    @property
    def id(self) -> str:
        """The session id (a UUID)."""
        ...

    @property
    def principal(self) -> Principal:
        """Who the session acts for."""
        ...

    def info(self) -> SessionInfo:
        """A summary for listings."""
        ...

    def recheck(self, principal: Principal | None = None) -> Decided:
        """Decide the connection again now (with an updated principal, when given)."""
        ...

    def cut(self, reason: str, decided: Decided | None) -> None:
        """End the session now: tell the client why, close both sides, record it."""
        ...


class SessionRegistry:
    """The live sessions of one gateway."""

    def __init__(self) -> None:
        self._live: dict[str, LiveSession] = {}

    def add(self, session: LiveSession) -> None:
        """Register a logged-in session."""
        self._live[session.id] = session

    def remove(self, session_id: str) -> None:
        """Forget a session that ended."""
        self._live.pop(session_id, None)

    def __iter__(self) -> Iterator[LiveSession]:
        return iter(list(self._live.values()))

    def __len__(self) -> int:
        return len(self._live)

    def get(self, session_id: str) -> LiveSession | None:
        """The live session with this id."""
        return self._live.get(session_id)

    def infos(self) -> list[SessionInfo]:
        """Every live session, oldest first."""
        return sorted((s.info() for s in self), key=lambda i: i.started)

    def revoke(self, *, user: str | None = None, session_id: str | None = None, reason: str) -> int:
        """Cut the sessions of ``user`` or the one with ``session_id``; how many were cut."""
        if (user is None) == (session_id is None):
            raise ValueError("revoke takes a user or a session id")
        chosen = [s for s in self if (s.id == session_id if session_id else s.principal.id == user)]
        for s in chosen:
            s.cut(f"revoked by an administrator: {reason}", None)
        return len(chosen)

    def recheck(self, why: str, *, user: str | None = None) -> int:
        """Re-decide every live session (or one user's); cut those no longer allowed."""
        cut = 0
        for s in self:
            if user is None or s.principal.id == user:
                cut += self.recheck_one(s, why)
        return cut

    def recheck_one(self, s: LiveSession, why: str, principal: Principal | None = None) -> bool:
        """Re-decide one session; True when it was cut."""
        try:
            decided = s.recheck(principal)
        except Exception:  # cannot decide: cannot keep it (fail closed)
            log.exception("re-decision of session %s failed", s.id)
            s.cut(f"{why}: the session could not be decided again", None)
            return True
        if decided.decision.allowed:
            return False
        reason = "; ".join(decided.decision.reasons) or "no policy permits it any more"
        s.cut(f"{why}: {reason}", decided)
        return True

    def update_principal(self, user: str, principal: Principal, why: str) -> int:
        """A user's roles or attributes changed: re-decide their sessions with the new ones."""
        cut = 0
        for s in self:
            if s.principal.id == user:
                cut += self.recheck_one(s, why, principal)
        return cut
