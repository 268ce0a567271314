"""Serving the API with uvicorn on the running event loop, beside the gateway or alone."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Generator
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from proctor.errors import UsageError

T = TypeVar("T")

__all__ = ["ApiServer", "BackgroundLoop"]


class BackgroundLoop:
    """An event loop on a thread of its own, for callers without one (the demo, tests)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop, join its thread, close it."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the process that embeds it owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    """One uvicorn server for ``app`` on ``address`` (``ip:port``; port 0 picks a free one)."""

    def __init__(
        self,
        app: FastAPI,
        address: str,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        config = uvicorn.Config(
            app,
            log_config=None,  # the embedding process configured logging
            access_log=False,  # the service logs who did what itself, never a token
            lifespan="off",
            proxy_headers=False,  # a client's address is the socket's, not a header's claim
            server_header=False,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        """Bind and serve in the background; the bound (host, port)."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise UsageError(
                f"api.address: cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        sock.setblocking(False)
        host, port = sock.getsockname()[:2]
        self.bound = (host, port)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it stopped
                raise UsageError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        return host, port

    async def close(self) -> None:
        """Stop taking requests, finish those running (up to 5 s), stop."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
