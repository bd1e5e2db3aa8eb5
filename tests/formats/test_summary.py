"""``_summary`` and ``_elements`` on the official examples, against the R4 isSummary / min flags."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fhir_server.errors import BadRequest
from fhir_server.formats.summary import SUBSETTED_TAG, apply_elements, apply_summary
from tests.shared_data import shared


def example(name: str) -> dict[str, Any]:
    return json.loads(shared("fhir-r4-examples", name).read_text(encoding="utf-8"))


def without_tag(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with the SUBSETTED tag taken out again (and meta dropped if that emptied it)."""
    resource = copy.deepcopy(resource)
    resource["meta"]["tag"].remove(SUBSETTED_TAG)
    if not resource["meta"]["tag"]:
        del resource["meta"]["tag"]
    if not resource["meta"]:
        del resource["meta"]
    return resource


def test_summary_true_keeps_the_summary_elements_of_patient_example() -> None:
    patient = example("Patient-example.json")
    summary = apply_summary(patient, "true")
    assert list(summary) == [
        "resourceType", "id", "meta", "identifier", "active", "name", "telecom", "gender", "birthDate",
        "deceasedBoolean", "address", "managingOrganization",
    ]  # fmt: skip
    # dropped: text and contact (not summary); _birthDate (Element.extension is not summary)
    assert {"text", "contact", "_birthDate"} <= set(patient) - set(summary)
    assert summary["name"] == patient["name"]  # every HumanName element is summary
    assert summary["meta"] == {"tag": [SUBSETTED_TAG]}


def test_summary_true_applies_the_flags_of_nested_elements() -> None:
    observation = example("Observation-blood-pressure.json")
    summary = apply_summary(observation, "true")
    assert {"category", "interpretation", "bodySite", "text"}.isdisjoint(summary)
    assert [list(component) for component in summary["component"]] == [["code", "valueQuantity"]] * 2
    assert "interpretation" in observation["component"][0]  # dropped inside the component, not at the source
    assert summary["meta"]["tag"][-1] == SUBSETTED_TAG and len(summary["meta"]["tag"]) == 1 + len(
        observation["meta"].get("tag", [])
    )


def test_summary_true_keeps_mandatory_elements_that_are_not_summary() -> None:
    """Appointment.participant is 1..* but not isSummary; inside it, period (0..1, not summary) goes."""
    appointment = example("Appointment-example.json")
    summary = apply_summary(appointment, "true")
    assert summary["participant"] == appointment["participant"]
    assert summary["start"] == appointment["start"] and "comment" not in summary and "text" not in summary


def test_summary_true_reduces_resources_inside_a_bundle() -> None:
    bundle = example("Bundle-bundle-example.json")
    summary = apply_summary(bundle, "true")
    assert all("text" in entry["resource"] for entry in bundle["entry"])
    assert [sorted(entry["resource"]) for entry in summary["entry"]] == [
        ["id", "intent", "medicationReference", "resourceType", "status", "subject"],
        ["id", "resourceType"],
    ]
    assert "meta" not in summary["entry"][0]["resource"]  # only the returned resource is marked


def test_summary_text_keeps_text_id_meta_and_top_level_mandatory_elements() -> None:
    patient = apply_summary(example("Patient-example.json"), "text")
    assert list(patient) == ["resourceType", "id", "meta", "text"]
    observation = example("Observation-example.json")
    summary = apply_summary(observation, "text")
    assert list(summary) == ["resourceType", "id", "meta", "text", "status", "code"]
    assert summary["code"] == observation["code"]


def test_summary_data_removes_only_the_text() -> None:
    patient = example("Patient-example.json")
    summary = apply_summary(patient, "data")
    assert without_tag(summary) == {key: value for key, value in patient.items() if key != "text"}


def test_summary_false_is_the_resource_itself() -> None:
    patient = example("Patient-example.json")
    assert apply_summary(patient, "false") is patient


def test_the_input_is_never_modified() -> None:
    observation = example("Observation-blood-pressure.json")
    before = copy.deepcopy(observation)
    for mode in ("true", "text", "data"):
        apply_summary(observation, mode)
    apply_elements(observation, ["status"])
    assert observation == before


def test_an_existing_subsetted_tag_is_not_repeated() -> None:
    patient = {"resourceType": "Patient", "id": "p", "meta": {"versionId": "2", "tag": [SUBSETTED_TAG]}}
    summary = apply_summary(patient, "data")
    assert summary["meta"] == {"versionId": "2", "tag": [SUBSETTED_TAG]}


@pytest.mark.parametrize(("mode", "message"), [("yes", "must be one of"), ("count", "search only"), ("", "not ''")])
def test_invalid_summary_is_a_bad_request_naming_the_parameter(mode: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        apply_summary({"resourceType": "Patient"}, mode)
    assert caught.value.issues[0].expression == ["_summary"]
    assert message in caught.value.diagnostics


def test_elements_keeps_the_listed_elements_with_id_and_meta() -> None:
    patient = example("Patient-example.json")
    subset = apply_elements(patient, ["name", "birthDate"])
    assert list(subset) == ["resourceType", "id", "meta", "name", "birthDate", "_birthDate"]
    assert subset["_birthDate"] == patient["_birthDate"]
    assert subset["meta"] == {"tag": [SUBSETTED_TAG]}


def test_elements_keeps_mandatory_elements_and_choices_by_either_name() -> None:
    observation = example("Observation-example.json")
    by_choice = apply_elements(observation, ["value"])
    by_json_name = apply_elements(observation, [" valueQuantity"])
    assert list(by_choice) == ["resourceType", "id", "meta", "status", "code", "valueQuantity"]
    assert by_json_name == by_choice


def test_elements_ignores_names_the_type_does_not_have() -> None:
    subset = apply_elements(example("Patient-example.json"), ["gender", "valueQuantity", "nonsense", ""])
    assert list(subset) == ["resourceType", "id", "meta", "gender"]
