"""The syslog listener on a real socket (127.0.0.1, port 0): batches reach the sink in order,
nothing is read while the sink works, failures close the connection, contents never logged."""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proctor.errors import UsageError
from proctor.events import Event
from proctor.ingest import IngestError
from proctor.ingest.syslog_server import SyslogLimits, SyslogListener

GOOD = b'<86>1 2026-11-23T11:19:58Z bastion-1 sshd 42 LOGIN [proctor@32473 actor="alice"] ok'
SECRET = b"hunter2-never-logged"
BAD = b"<86>1 Nov 23 11:19:58 bastion-1 sshd: password " + SECRET


def octets(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


class Collector:
    """A sink that keeps every batch (and can be told to wait or fail)."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.calls = 0

    async def __call__(self, events: list[Event]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("ledger is down")
        self.batches.append(events)

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_messages_in_odd_chunks_reach_the_sink_in_order() -> None:
    async def main() -> None:
        sink = Collector()
        errors: list[tuple[IngestError, str | None]] = []
        async with SyslogListener(
            sink, port=0, gateway="ingest-1", on_error=lambda e, p: errors.append((e, p))
        ) as listener:
            _reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            stream = octets(GOOD) + GOOD + b"\n" + octets(BAD) + octets(GOOD)
            for i in range(0, len(stream), 7):
                writer.write(stream[i : i + 7])
                await writer.drain()
            await until(lambda: len(sink.events) == 3)
            local = writer.get_extra_info("sockname")
            writer.close()
            await writer.wait_closed()
        assert [e.original.data for e in sink.events if e.original] == [GOOD.decode()] * 3
        event = sink.events[0]
        assert event.source is not None
        assert event.source.gateway == "ingest-1"
        assert event.source.address == f"127.0.0.1:{local[1]}"
        assert event.actor is not None and event.actor.id == "alice"
        ((error, peer),) = errors
        assert peer == f"127.0.0.1:{local[1]}"
        assert str(error) == (
            "item 2: TIMESTAMP: expected an RFC 5424 timestamp or '-' (at byte 6)"
        )

    run(main)


def test_nothing_is_read_while_the_sink_works() -> None:
    big = b"<14>1 - h a - - - " + b"x" * 60_000
    count = 200  # 12 MB: more than the socket buffers hold

    async def main() -> None:
        sink = Collector()
        sink.gate = asyncio.Event()
        async with SyslogListener(sink, port=0) as listener:
            _reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            for _ in range(count):
                writer.write(octets(big))
            await until(lambda: sink.calls == 1)
            # The sink holds the first batch: the listener reads no more, so the sender's
            # buffers fill and it cannot finish writing.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(writer.drain(), 1.0)
            assert sink.calls == 1
            sink.gate.set()
            await writer.drain()
            await until(lambda: len(sink.events) == count)
            writer.close()
            await writer.wait_closed()

    run(main)


def test_a_failing_sink_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        sink = Collector()
        sink.fail = True
        async with SyslogListener(sink, port=0) as listener:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(octets(GOOD))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the listener
            writer.close()
            # The listener still serves new connections.
            sink.fail = False
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(octets(GOOD))
            await writer.drain()
            await until(lambda: len(sink.events) == 1)
            writer.close()

    with caplog.at_level(logging.INFO, logger="proctor.ingest.syslog_server"):
        run(main)
    assert "syslog sink failed (RuntimeError)" in caplog.text


def test_a_framing_error_is_reported_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        sink = Collector()
        async with SyslogListener(sink, port=0, limits=SyslogLimits(max_frame=100)) as listener:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(octets(GOOD) + octets(b"<14>1 - - - - - - " + SECRET * 10))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        assert len(sink.events) == 1

    with caplog.at_level(logging.DEBUG, logger="proctor.ingest.syslog_server"):
        run(main)
    assert "frame: frame longer than 100 octets (at byte 86)" in caplog.text


def test_errors_are_logged_without_contents(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        sink = Collector()
        async with SyslogListener(sink, port=0) as listener:
            _reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(BAD + b"\n" + GOOD + b'\n<14>1 - - - - - [x p="' + SECRET + b"\n")
            await writer.drain()
            await until(lambda: len(sink.events) == 1)
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.1)

    with caplog.at_level(logging.DEBUG):
        run(main)
    assert "TIMESTAMP" in caplog.text and "PARAM-VALUE" in caplog.text
    assert SECRET.decode() not in caplog.text


def test_idle_connections_are_closed() -> None:
    async def main() -> None:
        limits = SyslogLimits(idle_timeout=0.2)
        async with SyslogListener(Collector(), port=0, limits=limits) as listener:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main)


def test_close_ends_open_connections() -> None:
    async def main() -> None:
        listener = SyslogListener(Collector(), port=0)
        await listener.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"<14>1 - - - -")  # mid-frame
        await writer.drain()
        await asyncio.sleep(0.05)
        await listener.close()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    run(main)


def test_bad_configuration() -> None:
    with pytest.raises(UsageError):
        SyslogListener(Collector(), gateway="g" * 300)
    with pytest.raises(ValueError, match="positive"):
        SyslogLimits(max_frame=0)


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        sink = Collector()
        async with SyslogListener(sink, port=0, ssl=server) as listener:
            _reader, writer = await asyncio.open_connection(
                "127.0.0.1", listener.port, ssl=client, server_hostname="localhost"
            )
            writer.write(octets(GOOD) + octets(GOOD))
            await writer.drain()
            await until(lambda: len(sink.events) == 2)
            writer.close()
            # A client speaking plain TCP to the TLS port gets nothing through.
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(octets(GOOD))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        assert len(sink.events) == 2

    run(main)
