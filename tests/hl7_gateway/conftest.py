"""MLLP test helpers: a listener in a background thread (on a real loopback port), a raw MLLP client,
and ORU^R01 messages made unique from the shared lab sample."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from fhir_server.api.request import Context
from fhir_server.config import Settings
from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from fhir_server.storage.schema import resource
from hl7_gateway.mllp import Deframer, frame
from hl7_gateway.process import Gateway
from hl7_gateway.schema import hl7_message
from hl7_gateway.server import ListenerSettings, start_listener
from hl7_gateway.store import MessageStore
from mappers.v2 import decode
from tests.shared_data import shared


@dataclass
class Listener:
    port: int
    engine: Engine
    store: MessageStore

    def rows(self, **where: Any) -> list[Any]:
        stmt = select(hl7_message).order_by(hl7_message.c.id)
        for name, value in where.items():
            stmt = stmt.where(hl7_message.c[name] == value)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    def count(self, resource_type: str) -> int:
        """Current resources of ``resource_type`` (all types for "")."""
        with self.engine.connect() as conn:
            stmt = select(func.count()).select_from(resource)
            if resource_type:
                stmt = stmt.where(resource.c.resource_type == resource_type)
            return int(conn.execute(stmt).scalar_one())


@contextmanager
def running_listener(ctx: Context, settings: ListenerSettings) -> Iterator[int]:
    """``start_listener`` on its own event loop in a thread; yields the bound port."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(start_listener(ctx, settings))
        except BaseException as exc:
            holder["error"] = exc
            started.set()
            return
        holder["port"] = server.sockets[0].getsockname()[1]
        started.set()
        loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    if "error" in holder:
        raise holder["error"]
    yield int(holder["port"])
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@contextmanager
def listener_on(database_url: str, **changes: Any) -> Iterator[Listener]:
    engine = make_engine(database_url)
    upgrade(engine)
    repository = Repository(engine, "default", "http://127.0.0.1/fhir")
    ctx = Context(repository, Settings(database_url=database_url, auth=False))
    settings = ListenerSettings(port=0, max_message_bytes=200_000, **changes)
    with running_listener(ctx, settings) as port:
        yield Listener(port, engine, MessageStore(repository))
    engine.dispose()


@pytest.fixture
def gateway(fresh_database_url: str) -> Iterator[Gateway]:
    """A gateway over an empty database of each backend."""
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    repository = Repository(engine, "default", "http://127.0.0.1/fhir")
    yield Gateway(Context(repository, Settings(database_url=fresh_database_url, auth=False)))
    engine.dispose()


@pytest.fixture
def listener(fresh_database_url: str) -> Iterator[Listener]:
    """A listener on an empty database of each backend."""
    with listener_on(fresh_database_url) as running:
        yield running


def send(
    port: int,
    *messages: bytes,
    chunk: int = 0,
    replies: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> list[str]:
    """Send ``messages`` on one connection (junk and NUL bytes first); the ``replies`` answers (default: one
    per message), in order."""
    expected = len(messages) if replies is None else replies
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw_sock:
        sock = tls.wrap_socket(raw_sock, server_hostname="localhost") if tls else raw_sock
        payload = b"\x00junk\n" + b"".join(frame(m) for m in messages)
        step = chunk or len(payload)
        for i in range(0, len(payload), step):
            sock.sendall(payload[i : i + step])
        deframer, acks = Deframer(), list[str]()
        while len(acks) < expected:
            data = sock.recv(65536)
            assert data, "the listener closed the connection without answering"
            acks += [decode(a, "utf-8") for a in deframer.feed(data) if isinstance(a, bytes)]  # in its MSH-18 charset
        return acks


def segment(ack: str, name: str) -> list[str]:
    """The fields of the first ``name`` segment of ``ack`` (index = HL7 field number for non-MSH segments)."""
    return next(s for s in ack.split("\r") if s.startswith(name)).split("|")


def msa(ack: str) -> list[str]:
    return segment(ack, "MSA")


LAB_SAMPLE = "35_ORU_R01_lab.hl7"


def lab_message(control_id: str | None = None, patient: str | None = None, ack_types: str = "") -> bytes:
    """The shared ORU^R01 lab sample with its own MSH-10 (and patient identifier, MSH-15/16 when given)."""
    text = shared("hl7v2", LAB_SAMPLE).read_bytes().removeprefix(b"\xef\xbb\xbf").decode()
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    msh = lines[0].split("|")
    msh += [""] * (17 - len(msh))
    msh[9] = control_id or uuid.uuid4().hex[:20]
    if ack_types:
        msh[14], msh[15] = ack_types.split("/")
    lines[0] = "|".join(msh)
    if patient:
        lines = [line.replace("10006579", patient) if line.startswith("PID") else line for line in lines]
    return "\r".join(lines).encode()
