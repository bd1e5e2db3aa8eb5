"""The MLLP listener over real TCP, with the real sample messages, into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from fhir_server.api.request import Context
from fhir_server.storage.engine import make_engine
from fhir_server.storage.repository import Repository
from hl7_gateway.mllp import Deframer, frame
from hl7_gateway.server import ListenerSettings, start_listener
from tests.conftest import LiveServer
from tests.shared_data import shared


@pytest.fixture
def mllp_port(server: LiveServer) -> Iterator[int]:
    """A listener writing into the live server's database (so the FHIR API shows what it stored)."""
    engine = make_engine(server.settings.database_url)
    ctx = Context(Repository(engine, server.settings.partition, server.settings.base_url), server.settings)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        listener = loop.run_until_complete(start_listener(ctx, ListenerSettings(port=0, max_message_bytes=200_000)))
        holder["port"] = listener.sockets[0].getsockname()[1]
        started.set()
        loop.run_forever()
        listener.close()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    yield int(holder["port"])  # type: ignore[call-overload]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    engine.dispose()


def send(port: int, *messages: bytes, chunk: int = 0) -> list[str]:
    """Send ``messages`` on one connection; the ACK texts, in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        payload = b"\x00junk" + b"".join(frame(m) for m in messages)
        if chunk:
            for i in range(0, len(payload), chunk):
                sock.sendall(payload[i : i + chunk])
        else:
            sock.sendall(payload)
        deframer, acks = Deframer(), []
        while len(acks) < len(messages):
            data = sock.recv(65536)
            assert data, "the listener closed the connection without answering"
            acks += [a.decode() for a in deframer.feed(data) if isinstance(a, bytes)]
        return acks


def msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA")).split("|")


def test_oru_is_acknowledged_after_commit_and_stored(mllp_port: int, client: httpx.Client) -> None:
    raw = shared("hl7v2", "35_ORU_R01_lab.hl7").read_bytes()
    (ack,) = send(mllp_port, raw, chunk=50)
    assert msa(ack)[1] == "AA", ack
    patients = client.get("Patient", params={"identifier": "10006579"}).json()
    assert patients["total"] == 1  # matched by identifier, however often the message arrives
    pid = patients["entry"][0]["resource"]["id"]
    leukocytes = client.get("Observation", params={"subject": f"Patient/{pid}", "code": "http://loinc.org|11156-7"})
    assert leukocytes.json()["entry"][0]["resource"]["code"]["coding"][0]["display"] == "LEUKOCYTES"


def test_every_sample_gets_an_answer(mllp_port: int) -> None:
    folder = shared("hl7v2")
    files = sorted(folder.glob("*.hl7")) + sorted((folder / "bad_inputs").glob("*"))
    acks = send(mllp_port, *(p.read_bytes() for p in files))
    assert len(acks) == len(files)
    codes = {p.name: msa(a)[1] for p, a in zip(files, acks, strict=True)}
    assert set(codes.values()) <= {"AA", "AE", "AR"}
    assert codes["35_ORU_R01_lab.hl7"] == "AA"
    for name, code in codes.items():
        if code != "AA":
            ack = acks[[p.name for p in files].index(name)]
            assert "\rERR|" in ack, f"{name}: {code} without ERR"


def test_garbage_and_oversize_get_ar(mllp_port: int) -> None:
    garbage, big = send(mllp_port, b"this is not hl7", b"MSH|^~\\&|A|B|C|D|x||ADT^A01|77|P|2.5\r" + b"Z" * 300_000)
    assert msa(garbage)[1] == "AR" and "ERR|" in garbage
    assert msa(big)[:3] == ["MSA", "AR", "77"]


def test_many_connections_at_once(mllp_port: int) -> None:
    raw = shared("hl7v2", "35_ORU_R01_lab.hl7").read_bytes()
    results: list[str] = []

    def one() -> None:
        results.extend(send(mllp_port, raw, raw))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 12 and all(msa(a)[1] == "AA" for a in results)


def test_batch_gets_one_acknowledgement_per_message(mllp_port: int) -> None:
    (ack,) = send(mllp_port, shared("hl7v2", "14_BATCH_FHS_BHS_ORU_R01_251.hl7").read_bytes())
    segments = ack.rstrip("\r").split("\r")
    assert [s[:3] for s in segments] == ["FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "BTS", "FTS"]
    assert [s.split("|")[1:3] for s in segments if s.startswith("MSA")] == [["AA", "371784"], ["AA", "612092"]]
    assert segments[-2] == "BTS|2"
