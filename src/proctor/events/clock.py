"""The clock that stamps events: system time, or system time corrected against an SNTP server.

``ClockSource.now()`` returns ``(time_ns, Clock)`` and never raises: the time is an integer of
nanoseconds since the Unix epoch, and the :class:`~proctor.events.schema.Clock` record says how
it was obtained. Without a server, or when the last ``sync()`` failed or has aged past
``max_uncertainty_us``, the time is the system clock and the record says ``source="system"``.

``sync()`` is the only blocking call: it sends a few SNTP requests over UDP (codec in
:mod:`proctor.events._sntp`), keeps the sample with the smallest round-trip delay and raises
on failure. Run it at start-up and again whenever ``sync_due()`` says so, off the event loop
(``await asyncio.to_thread(clock.sync)``).

Between syncs the corrected time advances with the monotonic clock, which is never stepped, so
an administrator or a daemon setting the system clock does not move it; ``offset_us`` in each
record is the current difference from the system clock.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from proctor.errors import FormatError, InputError, UsageError
from proctor.events._sntp import NTP_PORT, Sample, build_request, parse_response
from proctor.events.schema import Clock

__all__ = ["DRIFT_PPM", "ClockSource"]

DRIFT_PPM = 15
"""Default frequency tolerance of our clock: NTP's PHI, 15 ppm (RFC 5905 Appendix A.1.1).

NTP lets a server's error bound grow at this rate since its last update (root_dist() in
RFC 5905 Appendix A.5.5.2); ours grows the same way between syncs. It holds for a host whose
clock frequency is disciplined (chronyd, ntpd, systemd-timesyncd: Linux slews the monotonic
clock too). A free-running PC crystal can be off by tens of ppm: pass a larger ``drift_ppm``.
"""

_RECV_BUFFER = 1024  # a reply is 48 bytes plus optional extension fields and MAC
_SYSTEM = Clock(source="system")
# Limits of the Clock schema fields this module fills in (events/schema.py).
_MAX_SERVER_LABEL = 256
_MAX_SAFE_INT = 2**53 - 1


@dataclass(frozen=True, slots=True)
class _Synced:
    """The result of the last successful sync, anchored on the monotonic clock."""

    server: str
    offset_ns: int  # measured: server time minus system time
    true_ns: int  # server-corrected Unix time at mono_ns
    mono_ns: int
    uncertainty_us: int  # bound at mono_ns; grows by drift_ppm afterwards


class ClockSource:
    """Event timestamps with their clock quality, from the system clock and an SNTP server."""

    def __init__(
        self,
        server: str | None = None,
        port: int = NTP_PORT,
        timeout_s: float = 1.0,
        refresh_s: float = 64.0,
        max_uncertainty_us: int = 100_000,
        *,
        samples: int = 4,
        sample_interval_s: float = 2.0,
        drift_ppm: int = DRIFT_PPM,
        wall_ns: Callable[[], int] = time.time_ns,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """Configure; nothing is sent until :meth:`sync`.

        - ``timeout_s``: how long to wait for each reply.
        - ``refresh_s``: how often :meth:`sync_due` asks for a new sync (64 s is NTP's
          minimum poll interval, RFC 5905 Appendix A.1.1 MINPOLL).
        - ``max_uncertainty_us``: a sync whose bound exceeds this is refused, and a stored one
          expires once its bound has grown past it (about 100 ms; RFC 5905's MAXDIST of 1 s is
          too loose for an audit record to be worth more than the system clock).
        - ``samples`` requests per sync, ``sample_interval_s`` apart (2 s, like ntpd's
          ``iburst``); the one with the smallest delay wins, as in NTP's clock filter
          (RFC 5905 §10). Use ``samples=1`` for public servers polled often.
        - ``drift_ppm``: how fast the bound grows between syncs (see :data:`DRIFT_PPM`).
        - ``wall_ns`` / ``mono_ns``: the system and monotonic clocks, replaceable in tests.
        """
        if server is not None and not server:
            raise UsageError("the NTP server name is empty; pass None for system time only")
        if not 0 < port < 65536:
            raise UsageError(f"NTP port {port} is not in 1-65535")
        for name, seconds in (
            ("timeout_s", timeout_s),
            ("refresh_s", refresh_s),
            ("sample_interval_s", sample_interval_s),
        ):
            if not (math.isfinite(seconds) and seconds >= 0):
                raise UsageError(f"{name} must be a finite number of seconds, got {seconds}")
        if not (timeout_s > 0 and refresh_s > 0):
            raise UsageError("timeout_s and refresh_s must be positive")
        if not 0 < max_uncertainty_us <= _MAX_SAFE_INT:
            raise UsageError(f"max_uncertainty_us must be in 1-{_MAX_SAFE_INT}")
        if samples <= 0:
            raise UsageError(f"samples must be positive, got {samples}")
        if drift_ppm < 0:
            raise UsageError(f"drift_ppm must not be negative, got {drift_ppm}")
        self._server = server
        self._port = port
        self._timeout_s = timeout_s
        self._refresh_ns = int(refresh_s * 1e9)
        self._max_uncertainty_us = max_uncertainty_us
        self._samples = samples
        self._interval_ns = int(sample_interval_s * 1e9)
        self._drift_ppm = drift_ppm
        self._wall_ns = wall_ns
        self._mono_ns = mono_ns
        self._label = _label(server, port) if server is not None else ""
        if len(self._label) > _MAX_SERVER_LABEL:
            raise UsageError(f"NTP server name is longer than {_MAX_SERVER_LABEL} characters")
        self._lock = threading.Lock()  # guards _synced and _attempt_mono_ns
        self._sync_lock = threading.Lock()  # one sync at a time: no doubled bursts
        self._synced: _Synced | None = None
        self._attempt_mono_ns: int | None = None

    @property
    def server(self) -> str | None:
        """The configured server as recorded in ``Clock.server`` (host, or host:port)."""
        return self._label or None

    def now(self) -> tuple[int, Clock]:
        """The current time in Unix nanoseconds and how it was obtained. Never raises."""
        with self._lock:
            synced = self._synced
        wall = self._wall_ns()
        if synced is None:
            return wall, _SYSTEM
        return self._corrected(synced, wall) or (wall, _SYSTEM)

    def sync_due(self) -> bool:
        """Whether a server is configured and ``refresh_s`` has passed since the last attempt.

        Failed attempts count too, so a caller looping on this backs off instead of hammering
        an unreachable or unwilling server.
        """
        if self._server is None:
            return False
        with self._lock:
            attempt = self._attempt_mono_ns
        return attempt is None or self._mono_ns() - attempt >= self._refresh_ns

    def sync(self) -> Clock:
        """Query the server, store the best sample and return the record it measured.

        Raises :class:`~proctor.errors.UsageError` without a server,
        :class:`~proctor.errors.FormatError` for an invalid or kiss-o'-death reply (no further
        requests are sent in this round), and :class:`~proctor.errors.InputError` when the
        server cannot be reached or its best sample is not precise enough. After any failure
        :meth:`now` falls back to the system clock until a sync succeeds.
        """
        if self._server is None:
            raise UsageError("no NTP server configured; now() uses the system clock")
        with self._sync_lock:
            with self._lock:
                self._attempt_mono_ns = self._mono_ns()
            try:
                synced = self._measure(self._server)
            except BaseException:
                with self._lock:
                    self._synced = None
                raise
            with self._lock:
                self._synced = synced
        return Clock(
            source="ntp",
            server=synced.server,
            offset_us=_div_round(synced.offset_ns, 1_000),
            uncertainty_us=synced.uncertainty_us,
        )

    def _corrected(self, synced: _Synced, wall_ns: int) -> tuple[int, Clock] | None:
        """The corrected time and its record now, or None once the bound has grown too large."""
        age_ns = max(0, self._mono_ns() - synced.mono_ns)
        # Worst-case drift since the sync, rounded up to whole microseconds.
        uncertainty_us = synced.uncertainty_us - (-age_ns * self._drift_ppm // 1_000_000_000)
        if uncertainty_us > self._max_uncertainty_us:
            return None  # expired: the bound no longer says anything useful
        true_ns = synced.true_ns + age_ns
        return true_ns, Clock(
            source="ntp",
            server=synced.server,
            offset_us=_div_round(true_ns - wall_ns, 1_000),
            uncertainty_us=uncertainty_us,
        )

    def _measure(self, server: str) -> _Synced:
        """Run one round of exchanges and turn the best sample into a monotonic anchor."""
        try:
            infos = socket.getaddrinfo(server, self._port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise InputError(f"cannot resolve NTP server {self._label}: {exc}") from exc
        family, _type, proto, _name, address = infos[0]

        best: tuple[Sample, int, int] | None = None
        failure: OSError | None = None
        next_send = self._mono_ns()
        for _ in range(self._samples):
            delay = next_send - self._mono_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            next_send = self._mono_ns() + self._interval_ns
            try:
                got = self._exchange(family, proto, address)
            except OSError as exc:  # timeout, ICMP unreachable, no route: try the next one
                failure = exc
                continue
            # A FormatError from the codec propagates: a server that answers wrongly or sends
            # a kiss-o'-death is not asked again in this round (RFC 4330 §5, RFC 5905 §7.4).
            if best is None or got[0].delay_ns < best[0].delay_ns:
                best = got
        if best is None:
            raise InputError(
                f"no answer from NTP server {self._label} to {self._samples} request(s) "
                f"(timeout {self._timeout_s} s): {failure}"
            ) from failure
        sample, t4_ns, mono4_ns = best
        if sample.uncertainty_us > self._max_uncertainty_us:
            raise InputError(
                f"NTP server {self._label} is too imprecise: uncertainty {sample.uncertainty_us}"
                f" µs exceeds max_uncertainty_us {self._max_uncertainty_us}"
            )
        return _Synced(
            server=self._label,
            offset_ns=sample.offset_ns,
            true_ns=t4_ns + sample.offset_ns,
            mono_ns=mono4_ns,
            uncertainty_us=sample.uncertainty_us,
        )

    def _exchange(
        self, family: int, proto: int, address: tuple[object, ...]
    ) -> tuple[Sample, int, int]:
        """One request/reply on a fresh socket: ``(sample, t4_ns, t4 on the monotonic clock)``.

        A fresh socket per request means a late reply to an earlier, timed-out request lands on
        a closed port instead of being mistaken for this one. ``connect`` makes the kernel drop
        datagrams from any other address or port (RFC 4330 §5 checks 1 and 2).
        """
        with socket.socket(family, socket.SOCK_DGRAM, proto) as sock:
            sock.settimeout(self._timeout_s)
            sock.connect(address)
            # T1 and T4 are one wall-clock reading plus monotonic elapsed time, so a step of
            # the system clock during the exchange cannot corrupt the delay.
            t1_ns = self._wall_ns()
            mono1_ns = self._mono_ns()
            request = build_request(t1_ns)
            sock.send(request)
            reply = sock.recv(_RECV_BUFFER)
            mono4_ns = self._mono_ns()
        t4_ns = t1_ns + (mono4_ns - mono1_ns)
        try:
            sample = parse_response(reply, request[40:48], t1_ns, t4_ns)
        except FormatError as exc:
            raise FormatError(f"NTP server {self._label}: {exc}") from exc
        return sample, t4_ns, mono4_ns


def _div_round(n: int, d: int) -> int:
    """``n / d`` rounded to the nearest integer, for positive ``d``."""
    return (n + d // 2) // d


def _label(server: str, port: int) -> str:
    """How a server is named in records: its host, with the port when not the default."""
    if port == NTP_PORT:
        return server
    host = f"[{server}]" if ":" in server else server
    return f"{host}:{port}"
