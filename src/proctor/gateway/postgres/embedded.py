"""A gateway on an event loop of its own thread, for ``proctor demo`` and the tests.

The caller keeps its own thread for blocking clients (psycopg, psql) and reaches the gateway
through :meth:`Embedded.call`, which runs a function on the gateway's loop and waits for it.
``proctor serve`` does not use this: it runs the gateway on the main thread's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from proctor.gateway.postgres.server import Gateway
from proctor.runtime import Runtime

__all__ = ["Embedded"]

T = TypeVar("T")
_WAIT_S = 10.0


class Embedded:
    """Start with :meth:`start` (or ``with``); :meth:`stop` ends every session and the loop.
    The runtime stays the caller's to close."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.gateway: Gateway | None = None
        self.bound: list[tuple[str, int]] = []
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.bound[0][1]

    def start(self) -> Embedded:
        """Listen on every configured address; raise what the gateway raised on start."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.gateway = Gateway(self.runtime)
            try:
                self.bound = self.loop.run_until_complete(self.gateway.start())
            except BaseException as exc:
                failed.append(exc)
            ready.set()
            if not failed:
                self.loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True, name="proctor-gateway")
        self._thread.start()
        if not ready.wait(_WAIT_S):
            raise TimeoutError("the gateway did not start")
        if failed:
            self._thread.join(_WAIT_S)
            self.loop.close()
            raise failed[0]
        return self

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the gateway's loop and return what it returned."""

        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=_WAIT_S)

    def live(self) -> int:
        """Connections still open at the gateway."""
        gw = self.gateway
        return 0 if gw is None else sum(len(lst.connections) for lst in gw.listeners)

    def stop(self) -> None:
        """End every session, stop the loop and its thread."""
        if self._thread is None or self.gateway is None:
            return
        asyncio.run_coroutine_threadsafe(self.gateway.close(), self.loop).result(timeout=_WAIT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(_WAIT_S)
        self.loop.close()
        self._thread = None

    def __enter__(self) -> Embedded:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
