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
from typing import Any, TypeVar

from fhir_server.api.request import Context
from fhir_server.config import Settings
from hl7_gateway.ack import encode_ack
from hl7_gateway.batch import is_batch
from hl7_gateway.mllp import Deframer, TooLarge, frame
from hl7_gateway.process import GROUP, Gateway, Receipt, not_processed, too_large

LANES = 2  # groups in flight at once: one in Python while the other waits on the database (more only queue)

log = logging.getLogger("hl7_gateway")
T = TypeVar("T")


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


@dataclass
class Submitted:
    """A message handed to the pipeline: resolved once stored (its receipt) and once applied (its ACK)."""

    raw: bytes
    peer: str
    received: asyncio.Future[Receipt]
    completed: asyncio.Future[str | None]


class Pipeline:
    """Every connection's messages, stored and applied in groups: group commit.

    A drain task takes whatever messages are waiting (up to ``group``), stores them in one transaction,
    answers what can be answered at once (accept ACKs, duplicates), then applies them in one transaction and
    answers the rest. Messages that arrive meanwhile form the next group, so a quiet listener answers each
    message on its own and a busy one commits many per transaction. Up to ``lanes`` drains run at once, each
    on its own database connection, so that one group's Python work overlaps another's database round
    trips. A connection's messages stay in order: a connection is read, and its messages submitted, one
    message at a time, each only after the answer to the one before.
    """

    def __init__(self, gateway: Gateway, group: int = GROUP, lanes: int = LANES) -> None:
        self.gateway = gateway
        self.group = group
        self.lanes = lanes
        self.queue: asyncio.Queue[Submitted] = asyncio.Queue()
        self.drains: set[asyncio.Task[None]] = set()

    def submit(self, raw: bytes, peer: str) -> Submitted:
        loop = asyncio.get_running_loop()
        item = Submitted(raw, peer, loop.create_future(), loop.create_future())
        self.queue.put_nowait(item)
        if sum(not drain.done() for drain in self.drains) < self.lanes:  # a finished one may still be listed
            drain = loop.create_task(self._drain())
            self.drains.add(drain)
            drain.add_done_callback(self.drains.discard)
        return item

    async def _drain(self) -> None:
        """Process groups until nothing is waiting (the next submit starts a new drain)."""
        while not self.queue.empty():
            share = -(-self.queue.qsize() // self.lanes)  # what is waiting, spread over the lanes
            group = [self.queue.get_nowait() for _ in range(min(self.group, share))]
            try:
                await self._process(group)
            except Exception:  # the gateway answers its own errors: this is a bug, logged; the AEs below answer
                log.exception("MLLP pipeline failed on a group of %d message(s)", len(group))
            finally:  # every message gets an answer, whatever happened (a cancelled drain too)
                for item in group:
                    if not item.received.done():
                        _resolve(item.received, self.gateway.not_stored(item.raw))
                    if not item.completed.done():
                        _resolve(item.completed, not_processed(item.raw))

    async def _process(self, group: list[Submitted]) -> None:
        loop = asyncio.get_running_loop()
        receipts = await loop.run_in_executor(None, self.gateway.receive_all, [(i.raw, i.peer) for i in group])
        for item, receipt in zip(group, receipts, strict=True):
            _resolve(item.received, receipt)
        pending = [(item, receipt) for item, receipt in zip(group, receipts, strict=True) if receipt.pending]
        acks = await loop.run_in_executor(None, self.gateway.complete_all, [receipt for _, receipt in pending])
        for (item, _receipt), ack in zip(pending, acks, strict=True):
            _resolve(item.completed, ack)
        for item in group:
            _resolve(item.completed, None)


def _resolve(future: asyncio.Future[T], value: T) -> None:
    """Set ``future``'s result unless it has one already (or its waiter was cancelled)."""
    if not future.done():
        future.set_result(value)


async def start_listener(ctx: Context, settings: ListenerSettings) -> asyncio.Server:
    """Listen for MLLP connections; returns the running server (its sockets give the bound port)."""
    gateway = Gateway(ctx, settings.fallback_charset)
    pipeline = Pipeline(gateway)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_connection(gateway, pipeline, settings, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(
        connection, settings.host, settings.port, ssl=settings.tls(), reuse_port=settings.reuse_port or None
    )


async def _serve_connection(
    gateway: Gateway,
    pipeline: Pipeline,
    settings: ListenerSettings,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
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
                await _process(gateway, pipeline, writer, message, peer)


async def _process(gateway: Gateway, pipeline: Pipeline, writer: asyncio.StreamWriter, raw: bytes, peer: str) -> None:
    """Original mode: one answer after processing; enhanced mode: the accept ACK first. A batch file is
    processed on its own (its messages grouped by the gateway) and answered with one batch ACK."""
    if is_batch(raw):
        await _answer(writer, *await asyncio.get_running_loop().run_in_executor(None, gateway.handle, raw, peer))
        return
    item = pipeline.submit(raw, peer)
    receipt = await item.received
    replies = receipt.replies
    if receipt.ack_types.enhanced:  # the accept ACK (or a duplicate's stored answers) goes at once
        await _answer(writer, *replies)
        replies = []
    ack = await item.completed
    await _answer(writer, *replies, *([ack] if ack is not None else []))


async def _answer(writer: asyncio.StreamWriter, *acks: str) -> None:
    if not acks:
        return
    writer.write(b"".join(frame(encode_ack(ack)) for ack in acks))
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
