"""Write-time index extraction: rows from official examples and small fixtures, and compiled == FHIRPath."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.search.extract import extract_index, extraction_plan
from fhir_server.search.params.date import END_OF_TIME, START_OF_TIME, date_range
from fhir_server.search.params.index_rows import TABLES, IndexRows
from fhir_server.search.params.string import normalize
from tests.shared_data import SHARED, shared

BASE = "http://localhost:8080/fhir/"
EXAMPLES = sorted((SHARED / "fhir-r4-examples").glob("*-*.json"))


def rows_of(rows: IndexRows, kind: str, code: str) -> set[tuple[Any, ...]]:
    """The value tuples (without the param) of one parameter in one table."""
    return {row[1:] for row in rows.rows(kind) if row[0] == code}


def example(name: str) -> dict[str, Any]:
    """An official R4 example resource."""
    data: dict[str, Any] = json.loads(shared("fhir-r4-examples", name).read_text())
    return data


def day(year: int, month: int, dd: int) -> tuple[datetime, datetime]:
    """The range of one calendar day."""
    return datetime(year, month, dd), datetime(year, month, dd, 23, 59, 59, 999999)


# --- official examples ------------------------------------------------------------------------------------


def test_patient_example() -> None:
    rows = extract_index(example("Patient-example.json"))
    assert rows_of(rows, "string", "family") == {("chalmers", "Chalmers"), ("windsor", "Windsor")}
    assert ("jim", "Jim") in rows_of(rows, "string", "given")
    assert ("pleasantville", "PleasantVille") in rows_of(rows, "string", "address")
    assert rows_of(rows, "string", "address-postalcode") == {("3999", "3999")}
    assert rows_of(rows, "token", "identifier") == {("urn:oid:1.2.36.146.595.217.0.1", "12345", None)}
    assert rows_of(rows, "token", "gender") == {(None, "male", None)}
    assert rows_of(rows, "token", "active") == {(None, "true", None)}
    assert rows_of(rows, "token", "deceased") == {(None, "false", None)}
    assert (None, "(03) 5555 6473", None) in rows_of(rows, "token", "phone")
    assert rows_of(rows, "token", "email") == set()
    assert rows_of(rows, "date", "birthdate") == {day(1974, 12, 25)}
    assert rows_of(rows, "reference", "organization") == {("Organization", "1", None, None)}


def test_observation_example() -> None:
    rows = extract_index(example("Observation-example.json"))
    assert ("http://loinc.org", "29463-7", "body weight") in rows_of(rows, "token", "code")
    assert rows_of(rows, "token", "code") == rows_of(rows, "token", "combo-code")
    assert rows_of(rows, "quantity", "value-quantity") == {
        ("http://unitsofmeasure.org", "[lb_av]", "lbs", 185.0, 184.5, 185.5)
    }
    assert rows_of(rows, "date", "date") == {day(2016, 3, 28)}
    assert rows_of(rows, "reference", "subject") == {("Patient", "example", None, None)}
    assert rows_of(rows, "reference", "patient") == {("Patient", "example", None, None)}
    assert rows_of(rows, "reference", "encounter") == {("Encounter", "example", None, None)}


def test_observation_components_and_profile() -> None:
    rows = extract_index(example("Observation-blood-pressure.json"))
    systolic = ("http://unitsofmeasure.org", "mm[Hg]", "mmHg", 107.0, 106.5, 107.5)
    assert systolic in rows_of(rows, "quantity", "component-value-quantity")
    assert rows_of(rows, "quantity", "value-quantity") == set()
    assert ("http://loinc.org", "8480-6", "systolic blood pressure") in rows_of(rows, "token", "component-code")
    assert rows_of(rows, "uri", "_profile") == {("http://hl7.org/fhir/StructureDefinition/vitalsigns",)}
    assert rows_of(rows, "token", "based-on:identifier") == {("https://acme.org/identifiers", "1234", None)}


def test_encounter_example() -> None:
    rows = extract_index(example("Encounter-f001.json"))
    assert rows_of(rows, "token", "class") == {
        ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")
    }
    assert rows_of(rows, "quantity", "length") == {("http://unitsofmeasure.org", "min", "min", 140.0, 139.5, 140.5)}
    assert rows_of(rows, "reference", "practitioner") == {("Practitioner", "f002", None, None)}
    assert rows_of(rows, "reference", "service-provider") == {("Organization", "f001", None, None)}


def test_medication_request_example() -> None:
    rows = extract_index(example("MedicationRequest-medrx0302.json"))
    assert rows_of(rows, "token", "intent") == {(None, "order", None)}
    assert rows_of(rows, "date", "authoredon") == {day(2015, 1, 15)}
    assert rows_of(rows, "reference", "requester") == {("Practitioner", "f007", None, None)}
    assert rows_of(rows, "reference", "medication") == set()  # "#med0302": a contained medication


def test_claim_and_explanation_of_benefit_examples() -> None:
    claim = extract_index(example("Claim-100150.json"))
    assert rows_of(claim, "token", "use") == {(None, "claim", None)}
    assert rows_of(claim, "reference", "insurer") == {("Organization", "2", None, None)}
    assert rows_of(claim, "reference", "care-team") == {("Practitioner", "example", None, None)}
    eob = extract_index(example("ExplanationOfBenefit-EB3500.json"))
    assert rows_of(eob, "reference", "claim") == {("Claim", "100150", None, None)}
    assert rows_of(eob, "reference", "coverage") == {("Coverage", "9876B1", None, None)}
    assert rows_of(eob, "string", "disposition") == {
        ("claim settled as per contract.", "Claim settled as per contract.")
    }


def test_money_and_decimal_example() -> None:
    rows = extract_index(example("ChargeItem-example.json"))
    assert rows_of(rows, "quantity", "price-override") == {("urn:iso:std:iso:4217", "EUR", None, 40.0, 39.5, 40.5)}
    assert rows_of(rows, "number", "factor-override") == {(0.8, 0.75, 0.85)}
    assert rows_of(rows, "date", "occurrence") == {
        (datetime(2017, 1, 25, 7, 0), datetime(2017, 1, 25, 11, 35, 0, 999999))
    }


def test_document_bundle_composition_is_the_first_entry() -> None:
    rows = extract_index(example("Bundle-father.json"))
    assert rows_of(rows, "reference", "composition") == {
        ("Composition", "180f219f-97a8-486d-99d9-ed631fe4fc57", None, None)
    }
    assert rows_of(rows, "token", "composition:identifier") == set()


# --- inline fixtures ----------------------------------------------------------------------------------------


def test_human_name_and_address_components_are_normalised() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Müller", "given": ["José  Luis", "Ana"], "prefix": ["Dr."], "text": "José Müller"}],
        "address": [{"line": ["Rue de l'Église 1"], "city": "Genève", "postalCode": "1201", "country": "CH"}],
    }
    rows = extract_index(patient)
    assert rows_of(rows, "string", "name") == {
        ("muller", "Müller"),
        ("jose luis", "José  Luis"),
        ("ana", "Ana"),
        ("dr.", "Dr."),
        ("jose muller", "José Müller"),
    }
    assert rows_of(rows, "string", "family") == {("muller", "Müller")}
    assert rows_of(rows, "string", "address-city") == {("geneve", "Genève")}
    assert ("rue de l'eglise 1", "Rue de l'Église 1") in rows_of(rows, "string", "address")
    assert ("ch", "CH") in rows_of(rows, "string", "address")


def test_string_norm_is_truncated_but_exact_is_not() -> None:
    long_name = "A" * 600
    rows = extract_index({"resourceType": "Patient", "name": [{"family": long_name}]})
    ((norm, exact),) = rows_of(rows, "string", "family")
    assert norm == "a" * 512
    assert exact == long_name


def test_identifier_telecom_and_gender_tokens() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "123", "type": {"text": "Medical Record Number"}}],
        "telecom": [{"system": "phone", "value": "555-1234"}, {"system": "email", "value": "a@b.org"}],
        "gender": "female",
        "deceasedDateTime": "2020-01-01",
    }
    rows = extract_index(patient)
    assert rows_of(rows, "token", "identifier") == {("urn:mrn", "123", "medical record number")}
    assert rows_of(rows, "token", "phone") == {(None, "555-1234", None)}
    assert rows_of(rows, "token", "email") == {(None, "a@b.org", None)}
    assert rows_of(rows, "token", "telecom") == {(None, "555-1234", None), (None, "a@b.org", None)}
    assert rows_of(rows, "token", "gender") == {(None, "female", None)}
    assert rows_of(rows, "token", "deceased") == {(None, "true", None)}


def test_codeable_concept_tokens() -> None:
    observation = {
        "resourceType": "Observation",
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                {"system": "http://snomed.info/sct", "code": "364075005"},
            ],
            "text": "Pulse",
        },
        "valueCodeableConcept": {"text": "Régulier"},
    }
    rows = extract_index(observation)
    assert rows_of(rows, "token", "code") == {
        ("http://loinc.org", "8867-4", "heart rate"),
        ("http://snomed.info/sct", "364075005", "pulse"),
    }
    assert [r for r in rows.token if r[0] == "code"].count(("code", "http://loinc.org", "8867-4", "heart rate")) == 1
    assert rows_of(rows, "token", "value-concept") == {(None, None, "regulier")}
    assert rows_of(rows, "string", "value-string") == {("regulier", "Régulier")}


def test_observation_value_quantity_date_and_patient() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "tag": [{"system": "urn:t", "code": "x"}]},
        "status": "final",
        "subject": {"reference": "Patient/123"},
        "effectiveDateTime": "2021-03-04T10:00:00+05:00",
        "valueQuantity": {
            "value": Decimal("1.50"),
            "unit": "mg",
            "system": "http://unitsofmeasure.org",
            "code": "mg",
        },
    }
    rows = extract_index(observation)
    assert rows_of(rows, "quantity", "value-quantity") == {("http://unitsofmeasure.org", "mg", "mg", 1.5, 1.495, 1.505)}
    assert rows_of(rows, "date", "date") == {(datetime(2021, 3, 4, 5, 0, 0), datetime(2021, 3, 4, 5, 0, 0, 999999))}
    assert rows_of(rows, "reference", "patient") == {("Patient", "123", None, None)}
    assert rows_of(rows, "token", "_tag") == {("urn:t", "x", None)}
    assert not any(row[0] in {"_id", "_lastUpdated"} for kind in TABLES for row in rows.rows(kind))


def test_patient_parameter_keeps_only_patient_references() -> None:
    observation = {"resourceType": "Observation", "subject": {"reference": "Group/g1"}}
    rows = extract_index(observation)
    assert rows_of(rows, "reference", "subject") == {("Group", "g1", None, None)}
    assert rows_of(rows, "reference", "patient") == set()


def test_references_relative_versioned_absolute_and_contained() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "result": [
            {"reference": "Observation/a"},
            {"reference": "Observation/b/_history/3"},
            {"reference": BASE + "Observation/c"},
            {"reference": "http://other.org/fhir/Observation/d"},
            {"reference": "urn:uuid:0b3c1d2e-0000-4000-8000-000000000000"},
            {"reference": "#contained"},
            {"reference": "Patient/not-a-result"},
            {"reference": "Observation?identifier=http://lab.org|42"},
            {"identifier": {"system": "urn:lab", "value": "42"}},
        ],
    }
    rows = extract_index(report, BASE)
    assert rows_of(rows, "reference", "result") == {
        ("Observation", "a", None, None),
        ("Observation", "b", "3", None),
        ("Observation", "c", None, None),
        ("Observation", "d", None, "http://other.org/fhir/Observation/d"),
        (None, None, None, "urn:uuid:0b3c1d2e-0000-4000-8000-000000000000"),
    }
    assert rows_of(rows, "token", "result:identifier") == {("urn:lab", "42", None)}


def test_absolute_reference_without_base_url_stays_absolute() -> None:
    rows = extract_index({"resourceType": "Observation", "subject": {"reference": BASE + "Patient/p"}})
    assert rows_of(rows, "reference", "subject") == {("Patient", "p", None, BASE + "Patient/p")}


def test_canonical_references_and_uris() -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://example.org/Questionnaire/phq9|2.0",
        "meta": {"profile": ["http://example.org/StructureDefinition/qr"], "source": "urn:system:a"},
    }
    rows = extract_index(response)
    assert rows_of(rows, "reference", "questionnaire") == {(None, None, "2.0", "http://example.org/Questionnaire/phq9")}
    assert rows_of(rows, "uri", "_profile") == {("http://example.org/StructureDefinition/qr",)}
    assert rows_of(rows, "uri", "_source") == {("urn:system:a",)}


def test_encounter_period_open_ended() -> None:
    rows = extract_index({"resourceType": "Encounter", "period": {"start": "2020-05-01T08:00:00Z"}})
    assert rows_of(rows, "date", "date") == {(datetime(2020, 5, 1, 8, 0), END_OF_TIME)}
    rows = extract_index({"resourceType": "Encounter", "period": {"end": "2020-05"}})
    assert rows_of(rows, "date", "date") == {(START_OF_TIME, datetime(2020, 5, 31, 23, 59, 59, 999999))}


def test_timing_events_and_bounds() -> None:
    care_plan = {
        "resourceType": "CarePlan",
        "activity": [
            {
                "detail": {
                    "scheduledTiming": {
                        "event": ["2020-01-02"],
                        "repeat": {"boundsPeriod": {"start": "2020-02-01", "end": "2020-02-29"}},
                    }
                }
            }
        ],
    }
    rows = extract_index(care_plan)
    assert rows_of(rows, "date", "activity-date") == {
        day(2020, 1, 2),
        (datetime(2020, 2, 1), datetime(2020, 2, 29, 23, 59, 59, 999999)),
    }


def test_ranges_for_quantity_and_number() -> None:
    condition = {
        "resourceType": "Condition",
        "onsetRange": {"low": {"value": 10, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}},
    }
    rows = extract_index(condition)
    assert rows_of(rows, "quantity", "onset-age") == {("http://unitsofmeasure.org", "a", "a", 10.0, 10.0, float("inf"))}
    assessment = {
        "resourceType": "RiskAssessment",
        "prediction": [
            {"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.3}}},
            {"probabilityDecimal": 2},
        ],
    }
    rows = extract_index(assessment)
    assert rows_of(rows, "number", "probability") == {(0.1, 0.1, 0.3), (2.0, 1.5, 2.5)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1980", (datetime(1980, 1, 1), datetime(1980, 12, 31, 23, 59, 59, 999999))),
        ("2020-02", (datetime(2020, 2, 1), datetime(2020, 2, 29, 23, 59, 59, 999999))),
        ("2019-02", (datetime(2019, 2, 1), datetime(2019, 2, 28, 23, 59, 59, 999999))),
        ("1980-06-15", day(1980, 6, 15)),
        ("2019-01-01T01:00:00+02:00", (datetime(2018, 12, 31, 23), datetime(2018, 12, 31, 23, 0, 0, 999999))),
        ("2019-01-01T01:00:00Z", (datetime(2019, 1, 1, 1), datetime(2019, 1, 1, 1, 0, 0, 999999))),
        ("2019-01-01T01:00:00", (datetime(2019, 1, 1, 1), datetime(2019, 1, 1, 1, 0, 0, 999999))),
        (
            "2019-01-01T01:00:00.123-05:00",
            (datetime(2019, 1, 1, 6, 0, 0, 123000), datetime(2019, 1, 1, 6, 0, 0, 123999)),
        ),
        ("0001-01-01T00:00:00+01:00", (START_OF_TIME, START_OF_TIME)),
        ("9999-12-31T23:59:59-01:00", (END_OF_TIME, END_OF_TIME)),
        ("2019-13-01", None),
        ("2019-02-30", None),
        ("not a date", None),
        ("", None),
    ],
)
def test_date_precision_and_timezones(text: str, expected: tuple[datetime, datetime] | None) -> None:
    assert date_range(text) == expected


def test_malformed_values_are_skipped_not_raised() -> None:
    patient = {
        "resourceType": "Patient",
        "birthDate": "19800-1",
        "name": [{"given": [None, "Ann"]}],
        "telecom": [{"system": "phone"}],
        "managingOrganization": {"display": "no reference"},
    }
    rows = extract_index(patient)
    assert rows_of(rows, "date", "birthdate") == set()
    assert rows_of(rows, "string", "given") == {("ann", "Ann")}
    assert rows_of(rows, "token", "phone") == set()
    assert rows_of(rows, "reference", "organization") == set()


def test_composite_parameters_do_not_crash_and_make_no_rows() -> None:
    observation = {"resourceType": "Observation", "code": {"coding": [{"code": "x"}]}, "valueString": "y"}
    rows = extract_index(observation)
    assert all(not row[0].startswith("code-value") for kind in TABLES for row in rows.rows(kind))


def test_extraction_does_not_change_the_resource() -> None:
    resource = example("Observation-blood-pressure.json")
    before = copy.deepcopy(resource)
    extract_index(resource, BASE)
    extract_index(resource, BASE, fhirpath_only=True)
    assert resource == before


def test_normalize() -> None:
    assert normalize("  Ça   VA\tbien ") == "ca va bien"
    assert normalize("Ångström") == "angstrom"


def test_rows_match_the_index_table_columns() -> None:
    from fhir_server.storage.schema import INDEX_TABLES

    names = (
        "Patient-example.json",
        "ChargeItem-example.json",
        "CarePlan-example.json",
        "Observation-example.json",
    )
    all_rows = [extract_index(example(name), BASE) for name in names]
    for kind, table in INDEX_TABLES.items():
        width = len(table.columns) - 4  # after resource_pk, partition, resource_type; without grp
        table_rows = [row for rows in all_rows for row in rows.rows(kind)]
        assert table_rows, kind
        assert all(len(row) == width and isinstance(row[0], str) for row in table_rows), kind


def test_compiled_plan_has_no_fhirpath_for_observation() -> None:
    plan = extraction_plan("Observation")
    assert plan.fhirpath == ()
    assert "valueQuantity" in plan.by_key


# --- compiled walks == fhirpathpy ---------------------------------------------------------------------------


def assert_same_rows(resource: dict[str, Any], base_url: str | None) -> None:
    """Compiled extraction gives exactly the rows evaluating every expression with fhirpathpy gives."""
    compiled = extract_index(resource, base_url)
    evaluated = extract_index(resource, base_url, fhirpath_only=True)
    for kind in TABLES:
        assert set(compiled.rows(kind)) == set(evaluated.rows(kind)), kind


@pytest.mark.parametrize("path", EXAMPLES or [None], ids=lambda p: p.name if isinstance(p, Path) else "absent")
def test_compiled_equals_fhirpath_on_official_examples(path: Path | None) -> None:
    if path is None:
        shared("fhir-r4-examples")
        return
    resource = orjson.loads(path.read_bytes())
    if "resourceType" not in resource:
        pytest.skip("not a resource (package manifest)")
    assert_same_rows(resource, "http://hl7.org/fhir/")


def test_compiled_equals_fhirpath_on_synthea() -> None:
    bundles = [
        sorted(shared("synthea", folder).glob("*.json"))[0] for folder in ("smart-on-fhir-r4", "fhir-data-pipes-r4")
    ]
    for bundle in bundles:
        for entry in orjson.loads(bundle.read_bytes())["entry"]:
            assert_same_rows(entry["resource"], BASE)
