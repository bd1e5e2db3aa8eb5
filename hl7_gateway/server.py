"""The MLLP listener: asyncio, many connections, many messages per connection, answered in order.

Each message is stored and processed in a worker thread (``Gateway``) and its ACK(s) written back framed;
junk between frames is skipped, a frame over the size limit gets an AR, a connection idle past the
timeout is closed, TLS when a certificate and key are configured. Started by ``fhir-server mllp`` on
its own and by every ``serve`` worker (``MllpService``), where SO_REUSEPORT lets the kernel spread
connections over the workers listening on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, replace
from typing import Any

from fhir_server.api.request import Context
from fhir_server.config import Settings
from hl7_gateway.batch import is_batch
from hl7_gateway.mllp import Deframer, TooLarge, frame
from hl7_gateway.process import Gateway, read_header, too_large

log = logging.getLogger("hl7_gateway")


@dataclass(frozen=True)
class ListenerSettings:
    host: str = "127.0.0.1"
    port: int = 2575
    max_message_bytes: int = 16 * 1024 * 1024
    idle_timeout: float = 300.0
    tls_cert: str | None = None  # PEM certificate chain; with tls_key, the listener speaks MLLP over TLS
    tls_key: str | None = None
    reuse_port: bool = False  # SO_REUSEPORT: several processes accept on one port (serve workers)
    fallback_charset: str = "latin-1"  # for messages without MSH-18 that are not valid UTF-8

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> ListenerSettings:
        listener = cls(
            host=settings.host,
            port=settings.mllp_port,
            max_message_bytes=settings.mllp_max_message_bytes,
            idle_timeout=settings.mllp_idle_timeout,
            tls_cert=settings.mllp_tls_cert,
            tls_key=settings.mllp_tls_key,
            fallback_charset=settings.mllp_charset,
        )
        return replace(listener, **changes)

    def tls(self) -> ssl.SSLContext | None:
        if not self.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


async def start_listener(ctx: Context, settings: ListenerSettings) -> asyncio.Server:
    """Listen for MLLP connections; returns the running server (its sockets give the bound port)."""
    gateway = Gateway(ctx, settings.fallback_charset)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_connection(gateway, settings, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(
        connection, settings.host, settings.port, ssl=settings.tls(), reuse_port=settings.reuse_port or None
    )


async def _serve_connection(
    gateway: Gateway, settings: ListenerSettings, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    deframer = Deframer(settings.max_message_bytes)
    peer = _peer(writer)
    while True:
        try:
            data = await asyncio.wait_for(reader.read(65536), settings.idle_timeout)
        except TimeoutError:
            log.info("closing MLLP connection from %s: idle for %s s", peer, settings.idle_timeout)
            return
        if not data:
            return
        for message in deframer.feed(data):
            if isinstance(message, TooLarge):
                await _answer(writer, too_large(message.head, settings.max_message_bytes))
            else:
                await _process(gateway, writer, message, peer)


async def _process(gateway: Gateway, writer: asyncio.StreamWriter, raw: bytes, peer: str) -> None:
    """Original mode and batches: one answer after processing; enhanced mode: the accept ACK first."""
    loop = asyncio.get_running_loop()
    if is_batch(raw) or not read_header(raw)[1].enhanced:
        await _answer(writer, *await loop.run_in_executor(None, gateway.handle, raw, peer))
        return
    receipt = await loop.run_in_executor(None, gateway.receive, raw, peer)
    await _answer(writer, *receipt.replies)
    if receipt.pending:
        ack = await loop.run_in_executor(None, gateway.complete, receipt)
        if ack is not None:
            await _answer(writer, ack)


async def _answer(writer: asyncio.StreamWriter, *acks: str) -> None:
    if not acks:
        return
    writer.write(b"".join(frame(ack.encode("utf-8")) for ack in acks))
    await writer.drain()


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address or "")


class MllpService:
    """The listener inside a ``serve`` worker: started and stopped by the app's lifespan."""

    def __init__(self, ctx: Context, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = ListenerSettings.from_settings(settings, reuse_port=True)
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await start_listener(self.ctx, self.settings)
        tls = " (TLS)" if self.settings.tls_cert else ""
        log.info("MLLP listener on %s:%s%s", self.settings.host, self.settings.port, tls)

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        close_clients = getattr(self.server, "close_clients", None)  # Python 3.13+
        if close_clients is not None:
            close_clients()
            await self.server.wait_closed()
        self.server = None
