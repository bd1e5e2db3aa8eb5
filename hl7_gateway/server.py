"""The MLLP listener: asyncio, many connections, many messages per connection, answered in order.

Each message is processed in a worker thread (decode, map, commit) and its ACK written back framed;
a connection idle past the timeout is closed. Started by ``fhir-server mllp`` (and later by ``serve``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fhir_server.api.request import Context
from hl7_gateway.mllp import Deframer, TooLarge, frame
from hl7_gateway.process import process_message, too_large

log = logging.getLogger("hl7_gateway")


@dataclass(frozen=True)
class ListenerSettings:
    host: str = "127.0.0.1"
    port: int = 2575
    max_message_bytes: int = 16 * 1024 * 1024
    idle_timeout: float = 300.0


async def start_listener(ctx: Context, settings: ListenerSettings) -> asyncio.Server:
    """Listen for MLLP connections; returns the running server (its sockets give the bound port)."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_connection(ctx, settings, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(connection, settings.host, settings.port)


async def _serve_connection(
    ctx: Context, settings: ListenerSettings, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    deframer = Deframer(settings.max_message_bytes)
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await asyncio.wait_for(reader.read(65536), settings.idle_timeout)
        except TimeoutError:
            return
        if not data:
            return
        for message in deframer.feed(data):
            if isinstance(message, TooLarge):
                ack = too_large(message.head, settings.max_message_bytes)
            else:
                ack = await loop.run_in_executor(None, process_message, ctx, message)
            writer.write(frame(ack.encode("utf-8")))
            await writer.drain()
