"""The search-parameter registry: generated from the official R4 Bundle, split by type, up to date."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from resources import generate_registry
from resources.registry import (
    Component,
    ElementPath,
    filter_casts,
    resource_types,
    search_param,
    search_params,
)

GENERATED = Path(generate_registry.__file__).parent / "generated"


def test_generated_registry_is_up_to_date(tmp_path: Path) -> None:
    from tests.shared_data import shared

    source = shared("fhir-r4", "search-parameters.json")
    generate_registry.generate(source, tmp_path)
    for name in ("search_parameters.py", "search_parameters.json"):
        assert (tmp_path / name).read_text() == (GENERATED / name).read_text(), f"re-run the generator: {name}"


def test_generated_files_carry_provenance() -> None:
    header = (GENERATED / "search_parameters.py").read_text()
    data = orjson.loads((GENERATED / "search_parameters.json").read_bytes())
    for text in (header, "\n".join(data["provenance"])):
        assert "fhir-r4/search-parameters.json" in text
        assert "Bundle id 'searchParams'" in text
        assert "FHIR 4.0.1" in text
        assert "do not edit" in text
        assert "sha256 " in text


def test_resource_types_are_the_concrete_r4_types() -> None:
    types = resource_types()
    assert len(types) == 146
    assert types == sorted(types)
    assert {"Patient", "Observation", "Bundle", "Parameters", "Binary"} <= set(types)
    assert not {"Resource", "DomainResource", "MetadataResource"} & set(types)


def test_shared_expression_is_split_to_the_type() -> None:
    patient = search_param("Observation", "patient")
    assert patient is not None
    assert patient.type == "reference"
    assert patient.url == "http://hl7.org/fhir/SearchParameter/clinical-patient"
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.targets == ("Group", "Patient")
    assert patient.paths == (ElementPath(("subject", ("resolve", "Patient")), "Reference"),)
    assert patient.fhirpath == ()


def test_choice_elements_expand_to_their_json_names() -> None:
    date = search_param("Observation", "date")
    assert date is not None
    assert {p.steps[0]: p.fhir_type for p in date.paths} == {
        "effectiveDateTime": "dateTime",
        "effectivePeriod": "Period",
        "effectiveTiming": "Timing",
        "effectiveInstant": "instant",
    }
    value_string = search_param("Observation", "value-string")
    assert value_string is not None
    assert value_string.paths == (
        ElementPath(("valueString",), "string"),
        ElementPath(("valueCodeableConcept", "text"), "string"),
    )


def test_filters_and_types_from_structure_definitions() -> None:
    phone = search_param("Patient", "phone")
    assert phone is not None
    assert phone.paths == (ElementPath(("telecom", ("where", "system", "phone")), "ContactPoint"),)
    name = search_param("Patient", "name")
    assert name is not None and name.paths == (ElementPath(("name",), "HumanName"),)
    deceased = search_param("Patient", "deceased")
    assert deceased is not None
    assert deceased.paths == ()
    assert deceased.fhirpath == ("Patient.deceased.exists() and Patient.deceased != false",)


def test_common_parameters_apply_to_every_type() -> None:
    for resource_type in ("Patient", "Bundle", "Binary"):
        tag = search_param(resource_type, "_tag")
        assert tag is not None
        assert tag.expression == f"{resource_type}.meta.tag"
        assert tag.paths == (ElementPath(("meta", "tag"), "Coding"),)
    assert search_param("Resource", "_profile") is not None
    assert search_param("Resource", "_lastUpdated") is not None
    assert search_param("Resource", "code") is None


def test_composite_components() -> None:
    composite = search_param("Observation", "code-value-quantity")
    assert composite is not None
    assert composite.type == "composite"
    assert composite.components == (
        Component("http://hl7.org/fhir/SearchParameter/clinical-code", "code"),
        Component("http://hl7.org/fhir/SearchParameter/Observation-value-quantity", "value.as(Quantity)"),
    )


def test_comparators_and_unknowns() -> None:
    birthdate = search_param("Patient", "birthdate")
    assert birthdate is not None and "ge" in birthdate.comparators
    assert search_param("Patient", "no-such-param") is None
    assert search_params("NoSuchType") == {}
    assert list(search_params("Patient")) == sorted(search_params("Patient"))


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("(Observation.value as Quantity)", "Observation.value.ofType(Quantity)"),
        ("(Observation.value as CodeableConcept).text", "Observation.value.ofType(CodeableConcept).text"),
        ("Condition.onset.as(Age)", "Condition.onset.ofType(Age)"),
        ("Patient.name", "Patient.name"),
    ],
)
def test_casts_read_as_filters(branch: str, expected: str) -> None:
    assert filter_casts(branch) == expected
