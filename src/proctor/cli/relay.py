"""A loopback TCP relay that connects onward *from* a chosen local address.

The demo (and the tests) need a client that arrives at the gateway from somewhere else: a
geo table in the config places ``127.0.0.2`` in another country, and this relay makes a
client's connection come from that address. libpq cannot pick its source address, so the
client connects to the relay and the relay connects to the gateway bound to ``source``.
Written by hand because it is twenty lines of sockets; it is not used in production paths.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["Relay"]

_CHUNK = 65536


class Relay:
    """Accept on ``127.0.0.1:<port>``; for each client, connect to ``target`` from ``source``."""

    def __init__(self, source: str, target: tuple[str, int]) -> None:
        self.source = source
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            try:
                onward = socket.create_connection(self.target, source_address=(self.source, 0))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, onward]
            for a, b in ((client, onward), (onward, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting and drop every relayed connection."""
        self._server.close()
        with self._lock:
            for s in self._sockets:
                s.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
