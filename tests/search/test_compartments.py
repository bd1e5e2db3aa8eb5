"""Compartment definitions: generated from the five official R4 CompartmentDefinitions, up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from resources import generate_compartments
from resources.compartments import (
    DATA_FILE,
    compartment_includes_owner,
    compartment_members,
    compartment_params,
    compartment_types,
)
from resources.generate_compartments import CompartmentDefinitionError, Dropped, build_compartments
from resources.registry import search_param

TABLE = orjson.loads(DATA_FILE.read_bytes())


def test_generated_compartments_are_up_to_date(tmp_path: Path) -> None:
    from tests.shared_data import shared

    source = shared("fhir-r4")
    for name in (*generate_compartments.SOURCE_FILES, generate_compartments.REGISTRY_SOURCE):
        shared("fhir-r4", name)
    out = generate_compartments.generate(source, tmp_path / "compartments.json")
    assert out.read_text() == DATA_FILE.read_text(), "re-run python -m resources.generate_compartments"


def test_generated_file_carries_provenance() -> None:
    header = TABLE["provenance"]
    assert header["generatedBy"] == "resources/generate_compartments.py"
    assert header["fhirVersion"] == "4.0.1"
    assert "do not edit" in header["note"]
    files = [source["file"] for source in header["sources"]]
    assert files == [f"fhir-r4/{name}" for name in (*generate_compartments.SOURCE_FILES, "search-parameters.json")]
    for source in header["sources"]:
        assert len(source["sha256"]) == 64 and int(source["sha256"], 16) >= 0
    assert header["sources"][2]["url"] == "http://hl7.org/fhir/CompartmentDefinition/patient"


def test_compartment_types() -> None:
    assert compartment_types() == ("Device", "Encounter", "Patient", "Practitioner", "RelatedPerson")


def test_patient_compartment() -> None:
    assert compartment_params("Patient", "Observation") == ("subject", "performer")
    assert compartment_params("Patient", "AllergyIntolerance") == ("patient", "recorder", "asserter")
    assert compartment_params("Patient", "Patient") == ("link",)
    assert compartment_params("Patient", "Organization") == ()
    members = compartment_members("Patient")
    assert len(members) == 66
    assert {"Observation", "Condition", "Encounter", "Patient"} <= set(members)
    assert "Organization" not in members and "Practitioner" not in members


def test_encounter_compartment_lists_the_owner_only_by_def() -> None:
    assert compartment_params("Encounter", "Observation") == ("encounter",)
    assert compartment_params("Encounter", "MedicationAdministration") == ("context",)
    assert compartment_params("Encounter", "DocumentManifest") == ("related-ref",)
    assert compartment_params("Encounter", "Encounter") == ()
    assert "Encounter" not in compartment_members("Encounter")
    assert compartment_includes_owner("Encounter")
    assert TABLE["compartments"]["Encounter"]["ownerDef"] is True


def test_every_owner_is_in_its_compartment_though_r4_marks_only_three() -> None:
    assert all(compartment_includes_owner(c) for c in compartment_types())
    marked = {c for c, record in TABLE["compartments"].items() if record["ownerDef"]}
    assert marked == {"Encounter", "Practitioner", "RelatedPerson"}
    assert compartment_params("Device", "Device") == ()


def test_unknown_compartment_or_type() -> None:
    assert compartment_params("Organization", "Observation") == ()
    assert compartment_params("Patient", "NoSuchType") == ()
    assert compartment_members("Organization") == ()
    assert compartment_members("patient") == ()
    assert not compartment_includes_owner("Organization")


@pytest.mark.parametrize("compartment", ["Device", "Encounter", "Patient", "Practitioner", "RelatedPerson"])
def test_every_param_is_a_reference_that_can_target_the_owner(compartment: str) -> None:
    members = compartment_members(compartment)
    assert members == tuple(sorted(members)) and members
    for resource_type in members:
        for code in compartment_params(compartment, resource_type):
            param = search_param(resource_type, code)
            assert param is not None, f"{resource_type}.{code}"
            assert param.type == "reference"
            assert not param.targets or compartment in param.targets
            assert param.paths and not param.fhirpath


def test_r4_drops_nothing() -> None:
    assert TABLE["dropped"] == []


# --- the generator's checks, on small definitions -----------------------------------------------------


def definition(code: str, *resources: tuple[str, list[str]]) -> dict[str, Any]:
    """A minimal CompartmentDefinition."""
    return {
        "resourceType": "CompartmentDefinition",
        "url": f"http://example.org/CompartmentDefinition/{code.lower()}",
        "code": code,
        "resource": [{"code": t, "param": p} if p else {"code": t} for t, p in resources],
    }


def test_generator_drops_non_reference_and_wrong_target_params() -> None:
    source = definition("Patient", ("Observation", ["code", "subject", "encounter"]), ("Organization", []))
    compartments, dropped = build_compartments([source])
    assert compartments["Patient"].resources == {"Observation": ["subject"]}
    assert dropped == [
        Dropped("Patient", "Observation", "code", "token parameter, not a reference"),
        Dropped("Patient", "Observation", "encounter", "reference to Encounter, EpisodeOfCare, not Patient"),
    ]


def test_generator_records_def_and_keeps_it_out() -> None:
    source = definition("Encounter", ("Observation", ["encounter"]), ("Encounter", ["{def}"]))
    compartments, dropped = build_compartments([source])
    assert compartments["Encounter"].owner_def is True
    assert compartments["Encounter"].resources == {"Observation": ["encounter"]}
    assert dropped == []


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ([("Observation", ["no-such-param"])], "Observation has no search parameter 'no-such-param'"),
        ([("NoSuchType", ["subject"])], "unknown resource type 'NoSuchType'"),
        ([("Observation", ["{def}"])], "{def} on Observation"),
    ],
)
def test_generator_fails_loudly(resources: list[tuple[str, list[str]]], message: str) -> None:
    with pytest.raises(CompartmentDefinitionError, match=message.replace("{", r"\{").replace("}", r"\}")):
        build_compartments([definition("Patient", *resources)])


def test_generator_rejects_two_definitions_of_one_compartment() -> None:
    with pytest.raises(CompartmentDefinitionError, match="share a code"):
        build_compartments([definition("Patient"), definition("Patient")])
