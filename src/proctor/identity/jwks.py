"""Fetching an identity provider's keys (JWKS) without holding up the gateway.

:func:`fetch_jwks` is blocking: an HTTP(S) GET with urllib (no redirects followed, a deadline
for the whole read, at most ``MAX_JWKS_BYTES``) or a file read, then :func:`parse_jwks`.
:class:`JwksClient` runs it on a worker thread of its own, so the event loop keeps serving and a
provider that hangs cannot take the threads the ledger writes with; one fetch at a time: logins
that need keys while a fetch runs wait for it and use what it brought. When to fetch is
:class:`~proctor.identity.oidc.KeySet`'s decision (rate-limited).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import IO, Any, Final

from proctor.config import OidcConfig
from proctor.identity.oidc import MAX_JWKS_BYTES, KeySet, parse_jwks

__all__ = ["JwksClient", "fetch_jwks"]

log = logging.getLogger(__name__)

_CHUNK: Final = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the keys come from the configured URL, nowhere else."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirects)


def fetch_jwks(source: str, timeout_s: float) -> dict[str, dict[str, Any]]:
    """The signing keys at ``source`` (an http(s) URL or a file path), by ``kid``.

    Raises OSError (unreachable, HTTP error status, timed out) or ValueError (not a key set).
    """
    if source.startswith(("http://", "https://")):
        data = _get(source, timeout_s)
    else:
        with Path(source).open("rb") as f:
            data = f.read(MAX_JWKS_BYTES + 1)
    return parse_jwks(data)


def _get(url: str, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (http/https checked by config.py)
    chunks: list[bytes] = []
    size = 0
    with _OPENER.open(request, timeout=timeout_s) as response:
        while chunk := response.read1(_CHUNK):
            size += len(chunk)
            if size > MAX_JWKS_BYTES:
                raise ValueError("the key set is larger than 1 MiB")
            if time.monotonic() > deadline:  # a trickling server: the timeout is per read
                raise TimeoutError("timed out")
            chunks.append(chunk)
    return b"".join(chunks)


def _why(exc: BaseException) -> str:
    """A short reason for a failed fetch (for the log, the event and the client)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP status {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return str(reason.strerror if isinstance(reason, OSError) else reason)[:200]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return str(exc.strerror or type(exc).__name__)[:200]
    return str(exc)[:200] or type(exc).__name__


class JwksClient:
    """The provider's keys for one gateway: cached, fetched off the event loop."""

    def __init__(self, config: OidcConfig, source: str) -> None:
        self.config = config
        self.source = source
        """The JWKS URL, or the absolute path of the JWKS file."""
        self.keys = KeySet(config.jwks_refresh_s, config.jwks_refetch_s)
        self.fetches = 0
        """Fetches started (for tests and metrics)."""
        self._lock = asyncio.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proctor-jwks")

    async def key(self, kid: str) -> dict[str, Any]:
        """The JWK named ``kid``, fetching the key set first when :class:`KeySet` says so.

        Raises :class:`~proctor.identity.oidc.TokenError` (unknown key id) or
        :class:`~proctor.identity.oidc.KeysUnavailable` (keys cannot be fetched).
        """
        async with self._lock:
            now = time.monotonic()
            if self.keys.wants_fetch(kid, now):
                self.keys.begin(now)
                self.fetches += 1
                await self._fetch()
            return self.keys.key(kid, time.monotonic())

    async def _fetch(self) -> None:
        done = False
        try:
            async with asyncio.timeout(self.config.jwks_timeout_s):
                keys = await asyncio.get_running_loop().run_in_executor(
                    self._worker, fetch_jwks, self.source, self.config.jwks_timeout_s
                )
            self.keys.loaded(keys, time.monotonic())
            done = True
        except (OSError, ValueError) as exc:  # TimeoutError is an OSError
            reason = _why(exc)
            log.error("cannot fetch the identity provider's keys from %s: %s", self.source, reason)
            self.keys.failed(reason)
            done = True
        finally:
            if not done:  # cancelled (the login timed out): fail closed until the next try
                self.keys.failed("the fetch was abandoned")

    def close(self) -> None:
        """Stop the fetch thread (a fetch under way is left to its own timeout)."""
        self._worker.shutdown(wait=False, cancel_futures=True)
