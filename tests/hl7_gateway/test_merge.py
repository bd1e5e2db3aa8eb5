"""ADT^A40 over MLLP on both backends: after an ORU for the prior patient, the merge moves the lab results onto
the surviving patient in the same transaction as the survivor's update (see fhir_server.operations.merge)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from fhir_server.storage.schema import resource
from tests.conftest import unique
from tests.hl7_gateway.conftest import Listener, lab_message, msa, send
from tests.shared_data import shared

A40_SAMPLE = "34_ADT_A40_synthetic.hl7"  # PID-3 12345 survives, MRG-1 56789 is merged into it


def a40_message(survivor: str, prior: str) -> bytes:
    """The shared ADT^A40 sample with its own MSH-10 and the given survivor (PID-3) and prior (MRG-1)."""
    text = shared("hl7v2", A40_SAMPLE).read_bytes()
    text = text.replace(b"|8919-40|", f"|{unique('A40')}|".encode())
    return text.replace(b"|12345^", f"|{survivor}^".encode()).replace(b"|56789^", f"|{prior}^".encode())


def current(listener: Listener, resource_type: str) -> list[dict[str, Any]]:
    """The current resources of ``resource_type``."""
    query = select(resource.c.content).where(resource.c.resource_type == resource_type, ~resource.c.deleted)
    with listener.engine.connect() as conn:
        return [orjson.loads(row.content) for row in conn.execute(query)]


def patient_with(listener: Listener, value: str) -> dict[str, Any]:
    (found,) = [p for p in current(listener, "Patient") if any(i["value"] == value for i in p["identifier"])]
    return found


def test_a40_moves_the_prior_patients_results_to_the_survivor(listener: Listener) -> None:
    prior_mrn, survivor_mrn = unique("P"), unique("S")
    (ack,) = send(listener.port, lab_message(patient=prior_mrn))
    assert msa(ack)[1] == "AA", ack
    prior = patient_with(listener, prior_mrn)
    observations = current(listener, "Observation")
    assert observations and all(o["subject"] == {"reference": f"Patient/{prior['id']}"} for o in observations)

    (ack,) = send(listener.port, a40_message(survivor_mrn, prior_mrn))
    assert msa(ack)[1] == "AA", ack

    survivor = patient_with(listener, survivor_mrn)
    assert survivor["link"] == [{"other": {"reference": f"Patient/{prior['id']}"}, "type": "replaces"}]
    retired = patient_with(listener, prior_mrn)
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    for moved in (*current(listener, "Observation"), *current(listener, "DiagnosticReport")):
        assert moved["subject"] == {"reference": f"Patient/{survivor['id']}"}, moved["resourceType"]
        assert moved["meta"]["versionId"] == "2"
    assert len(current(listener, "Observation")) == len(observations)


def test_a40_for_an_unknown_prior_patient_is_answered_ae_and_writes_nothing(listener: Listener) -> None:
    (ack,) = send(listener.port, a40_message(unique("S"), unique("P")))
    assert msa(ack)[1] == "AE", ack
    assert "\rERR|" in ack
    assert current(listener, "Patient") == []
