"""The MLLP listener over real TCP, with the real sample messages, into SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from fhir_server.api.request import Context
from fhir_server.storage.engine import make_engine
from fhir_server.storage.repository import Repository
from hl7_gateway.process import read_header
from hl7_gateway.server import ListenerSettings
from tests.conftest import LiveServer
from tests.hl7_gateway.conftest import msa, running_listener, send
from tests.shared_data import shared


@pytest.fixture
def mllp_port(server: LiveServer) -> Iterator[int]:
    """A listener writing into the live server's database (so the FHIR API shows what it stored)."""
    engine = make_engine(server.settings.database_url)
    ctx = Context(Repository(engine, server.settings.partition, server.settings.base_url), server.settings)
    with running_listener(ctx, ListenerSettings(port=0, max_message_bytes=200_000)) as port:
        yield port
    engine.dispose()


def test_oru_is_acknowledged_after_commit_and_stored(mllp_port: int, client: httpx.Client) -> None:
    raw = shared("hl7v2", "35_ORU_R01_lab.hl7").read_bytes()
    (ack,) = send(mllp_port, raw, chunk=50)
    assert msa(ack)[1] == "AA", ack
    patients = client.get("Patient", params={"identifier": "10006579"}).json()
    assert patients["total"] == 1  # matched by identifier, however often the message arrives
    pid = patients["entry"][0]["resource"]["id"]
    leukocytes = client.get("Observation", params={"subject": f"Patient/{pid}", "code": "http://loinc.org|11156-7"})
    assert leukocytes.json()["entry"][0]["resource"]["code"]["coding"][0]["display"] == "LEUKOCYTES"


def replies_expected(raw: bytes) -> tuple[bool, bool]:
    """Whether a message asks for an accept ACK (CA, enhanced mode) and for an application ACK (AA/AE/AR)."""
    _, ack_types = read_header(raw)
    if not ack_types.enhanced:
        return False, True
    return ack_types.accept_wanted("CA"), ack_types.application_wanted("AA")


def test_every_sample_gets_an_answer(mllp_port: int) -> None:
    """All shared samples on one connection: each gets its ACK(s), in order; non-AA answers carry an ERR."""
    folder = shared("hl7v2")
    files = sorted(folder.glob("*.hl7")) + sorted((folder / "bad_inputs").glob("*"))
    raws = [p.read_bytes() for p in files]
    wanted = [replies_expected(raw) for raw in raws]
    acks = send(mllp_port, *raws, replies=sum(accept + application for accept, application in wanted))
    codes: dict[str, list[str]] = {}
    for path, (accept, application) in zip(files, wanted, strict=True):
        answers = [acks.pop(0) for _ in range(accept + application)]
        codes[path.name] = [msa(a)[1] for a in answers]
        assert answers, f"{path.name}: no answer"
        if accept:
            assert codes[path.name][0] == "CA", f"{path.name}: {answers[0]}"
        final = answers[-1]
        if msa(final)[1] not in ("AA", "CA"):
            assert "\rERR|" in final, f"{path.name}: {msa(final)[1]} without ERR"
    assert acks == []
    assert {c for found in codes.values() for c in found} <= {"AA", "AE", "AR", "CA"}
    assert codes["35_ORU_R01_lab.hl7"] == ["AA"]
    assert codes["16_ADT_A01_23_cerner.hl7"][0] == "CA"  # MSH-15 AL, MSH-16 empty: accept, then application
    assert codes["01_ORU_R01_251_starlims_cdc.hl7"] in (["AA"], ["AE"], ["AR"])  # NE/NE: the original-mode ACK


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
