"""forward.py against a real syslog receiver on 127.0.0.1 that drops connections and comes back."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proctor.errors import StorageError, UsageError
from proctor.events import canonical_bytes
from proctor.exports.forward import (
    Backoff,
    Cursor,
    Forwarder,
    ForwarderConfig,
    ForwardError,
    load_cursor,
    save_cursor,
)
from proctor.exports.syslog import FrameDecoder, SyslogConfig
from proctor.ledger.ledger import Ledger
from tests.exports.conftest import EXAMPLES, append, make_ledger

RAW = [canonical_bytes(e) for e in EXAMPLES]
INDEX = re.compile(rb' index="([0-9]+)"')
FAST = Backoff(initial=0.02, maximum=0.2, jitter=0.5)


@dataclass
class Receiver:
    """A syslog receiver (RFC 6587 octet counting) that can cut connections and go away.

    ``connections`` holds, per accepted connection, the ledger indexes of the messages it
    read. ``drop_after[n]`` makes connection ``n`` abort (RST, unread bytes lost, like a crash)
    after that many messages, and the receiver stays down ``down_for`` seconds.
    """

    port: int = 0
    rcvbuf: int = 64 * 1024
    tls: ssl.SSLContext | None = None
    drop_after: dict[int, int] = field(default_factory=dict)
    down_for: float = 0.3
    connections: list[list[int]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)  # bounds in-flight
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self.server = await asyncio.start_server(self._serve, sock=sock, ssl=self.tls)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(self.connections)
        seen: list[int] = []
        self.connections.append(seen)
        decoder = FrameDecoder()
        limit = self.drop_after.get(number)
        try:
            while data := await reader.read(4096):
                for message in decoder.feed(data):
                    m = INDEX.search(message)
                    assert m is not None
                    seen.append(int(m.group(1)))
                    self.messages.append(message)
                    self.arrived.set()
                    if limit is not None and len(seen) >= limit:
                        writer.transport.abort()  # a crash: what the kernel holds is lost
                        await self.stop()
                        await asyncio.sleep(self.down_for)
                        await self.start()
                        return
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def indexes(self) -> list[int]:
        return [i for conn in self.connections for i in conn]


def config(tmp_path: Path, port: int, **kw: Any) -> ForwarderConfig:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "state_path": tmp_path / "cursor.state",
        "syslog": SyslogConfig(hostname="test-host", procid="1"),
        "follow": False,
        "batch_events": 64,
        "backoff": FAST,
        "max_retries": 50,
        "connect_timeout": 2.0,
        **kw,
    }
    return ForwarderConfig(**options)


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro(), 120)

    return asyncio.run(bounded())


def assert_in_order_without_gaps(receiver: Receiver, count: int) -> None:
    """Every index arrived; each connection is consecutive; a new one never skips ahead."""
    highest = -1
    for seen in receiver.connections:
        if not seen:
            continue
        assert seen == list(range(seen[0], seen[0] + len(seen))), "out of order"
        assert seen[0] <= highest + 1, f"gap before {seen[0]}"
        highest = max(highest, seen[-1])
    assert set(receiver.indexes()) == set(range(count))


def test_every_event_arrives_in_order_across_dropped_connections(tmp_path: Path) -> None:
    count = 3000
    d = make_ledger(tmp_path / "l", [RAW[i % len(RAW)] for i in range(count)])

    async def scenario() -> tuple[Receiver, Any]:
        receiver = Receiver(drop_after={0: 500, 1: 700})
        await receiver.start()
        cfg = config(tmp_path, receiver.port, replay_bytes=1024 * 1024, send_buffer=64 * 1024)
        with Ledger(d) as lg:
            result = await Forwarder(lg, cfg).run()
        await receiver.stop()
        return receiver, result

    receiver, result = run(scenario)
    assert_in_order_without_gaps(receiver, count)
    assert len(receiver.connections) >= 3 and result.reconnects >= 2
    assert result.next_index == count and result.sent >= count
    duplicates = len(receiver.indexes()) - count
    assert duplicates > 0  # the replay after each drop: at least once, by design
    state = json.loads((tmp_path / "cursor.state").read_text())
    assert state["next"] == count and state["destination"] == f"127.0.0.1:{receiver.port}"


def test_a_restart_resumes_from_the_state_file(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", RAW * 5)

    async def scenario() -> Receiver:
        receiver = Receiver()
        await receiver.start()
        with Ledger(d) as lg:
            first = await Forwarder(lg, config(tmp_path, receiver.port, stop_at=40)).run()
            assert first.next_index == 40
            append(d, RAW)
            cfg = config(tmp_path, receiver.port, replay_bytes=0)
            second = await Forwarder(lg, cfg).run()
            assert second.next_index == len(RAW) * 6
        await receiver.stop()
        return receiver

    receiver = run(scenario)
    assert receiver.connections[0] == list(range(40))
    # The first run kept its whole replay window (8 MiB default): the restart resends it.
    assert receiver.connections[1] == list(range(len(RAW) * 6))


def test_follow_mode_sends_new_entries_until_stopped(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", RAW)

    async def scenario() -> Receiver:
        receiver = Receiver()
        await receiver.start()
        with Ledger(d) as lg:
            forwarder = Forwarder(
                lg, config(tmp_path, receiver.port, follow=True, poll_interval=0.05)
            )
            task = asyncio.create_task(forwarder.run())
            while len(receiver.indexes()) < len(RAW):
                await asyncio.wait_for(receiver.arrived.wait(), 10)
                receiver.arrived.clear()
            await asyncio.to_thread(append, d, RAW[:5])
            while len(receiver.indexes()) < len(RAW) + 5:
                await asyncio.wait_for(receiver.arrived.wait(), 10)
                receiver.arrived.clear()
            forwarder.stop()
            result = await task
            assert result.next_index == len(RAW) + 5
        await receiver.stop()
        return receiver

    receiver = run(scenario)
    assert receiver.indexes() == list(range(len(RAW) + 5))


def test_receiver_gone_for_good_stops_with_the_index(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", RAW)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario() -> None:
        with Ledger(d) as lg:
            await Forwarder(lg, config(tmp_path, port, max_retries=2)).run()

    with pytest.raises(ForwardError, match="gave up after 2 retries") as info:
        run(scenario)
    assert info.value.next_index == 0 and "resume at ledger index 0" in str(info.value)


def test_an_entry_that_cannot_be_sent_stops_after_the_ones_before(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", [*RAW[:5], b'{"bad":1}', *RAW[5:]])

    async def scenario() -> Receiver:
        receiver = Receiver()
        await receiver.start()
        try:
            with Ledger(d) as lg, pytest.raises(ForwardError, match="ledger entry 5") as info:
                await Forwarder(lg, config(tmp_path, receiver.port)).run()
            assert info.value.next_index == 5
            await asyncio.sleep(0.1)
        finally:
            await receiver.stop()
        return receiver

    receiver = run(scenario)
    assert receiver.indexes() == [0, 1, 2, 3, 4]
    assert load_cursor(
        tmp_path / "cursor.state",
        origin="test.example/exports",
        destination=f"127.0.0.1:{receiver.port}",
    ) == Cursor(5, 0)


def test_oversized_message_stops_unless_truncation_is_chosen(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", RAW)

    async def scenario(oversize: str) -> Receiver:
        receiver = Receiver()
        await receiver.start()
        syslog = SyslogConfig(hostname="h", procid="1", max_octets=1200, oversize=oversize)  # type: ignore[arg-type]
        state = tmp_path / f"{oversize}.state"
        try:
            with Ledger(d) as lg:
                await Forwarder(
                    lg, config(tmp_path, receiver.port, syslog=syslog, state_path=state)
                ).run()
            await asyncio.sleep(0.1)
        finally:
            await receiver.stop()
        return receiver

    with pytest.raises(ForwardError, match="more than the 1200 allowed"):
        run(lambda: scenario("fail"))
    receiver = run(lambda: scenario("truncate"))
    assert receiver.indexes() == list(range(len(RAW)))
    assert any(b' truncated="' in m for m in receiver.messages)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP SAN, so hostname checks pass) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syslog.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_delivers_to_a_trusted_receiver_and_refuses_an_untrusted_one(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    d = make_ledger(tmp_path / "l", RAW)

    async def scenario(client: ssl.SSLContext, state: str) -> Receiver:
        receiver = Receiver(tls=server_ctx)
        await receiver.start()
        try:
            with Ledger(d) as lg:
                cfg = config(tmp_path, receiver.port, ssl=client, state_path=tmp_path / state)
                await Forwarder(lg, cfg).run()
            await asyncio.sleep(0.1)
        finally:
            await receiver.stop()
        return receiver

    trusted = ssl.create_default_context(cafile=str(cert))
    assert run(lambda: scenario(trusted, "a")).indexes() == list(range(len(RAW)))
    with pytest.raises(ForwardError, match="not trusted") as info:
        run(lambda: scenario(ssl.create_default_context(), "b"))  # system CAs only
    assert info.value.next_index == 0


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(initial=0.5, maximum=4.0, multiplier=2.0, jitter=0.5)
    assert [b.delay(n, lambda: 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [b.delay(n, lambda: 1.0) for n in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert b.delay(10_000, lambda: 0.0) == 4.0  # no overflow on long outages
    for bad in ({"initial": 0}, {"initial": 5, "maximum": 1}, {"jitter": 2}, {"multiplier": 0.5}):
        with pytest.raises(UsageError):
            Backoff(**bad)  # type: ignore[arg-type]


def test_cursor_file_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "c.state"
    assert load_cursor(path, origin="o", destination="h:1") is None
    save_cursor(path, Cursor(10, 4), origin="o", destination="h:1")
    assert load_cursor(path, origin="o", destination="h:1") == Cursor(10, 4)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(UsageError, match="belongs to ledger"):
        load_cursor(path, origin="other", destination="h:1")
    with pytest.raises(UsageError, match="belongs to ledger"):
        load_cursor(path, origin="o", destination="h:2")
    path.write_text('{"version": 1, "origin": "o", "destination": "h:1", "next": 1, "resume": 5}')
    with pytest.raises(StorageError, match="garbled"):
        load_cursor(path, origin="o", destination="h:1")
    path.write_text("not json")
    with pytest.raises(StorageError, match="not a Proctor cursor"):
        load_cursor(path, origin="o", destination="h:1")


def test_config_limits_are_checked(tmp_path: Path) -> None:
    for port, bad in ((0, {}), (514, {"batch_events": 0}), (514, {"replay_bytes": -1})):
        with pytest.raises(UsageError):
            config(tmp_path, port, **bad)
    with pytest.raises(UsageError):
        config(tmp_path, 514, max_retries=-1)
    assert config(tmp_path, 514, host="::1").destination == "[::1]:514"
