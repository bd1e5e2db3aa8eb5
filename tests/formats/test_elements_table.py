"""The generated element table the formats read: current with its sources, and right about the spec."""

from __future__ import annotations

import hashlib

from resources.generate_elements import DEFAULT_OUTPUT, SOURCE_FILES, render
from resources.generated.elements import ELEMENTS, PROVENANCE, RESOURCE_TYPES
from tests.shared_data import shared


def test_generated_module_is_current_with_the_profiles() -> None:
    """Re-running resources/generate_elements.py would not change the committed module."""
    assert render(shared("fhir-r4")) == DEFAULT_OUTPUT.read_text(encoding="utf-8")


def test_provenance_names_fhir_4_0_1_and_the_source_hashes() -> None:
    assert PROVENANCE["fhirVersion"] == "4.0.1"
    assert PROVENANCE["generatedBy"] == "resources/generate_elements.py"
    for name in SOURCE_FILES:
        digest = hashlib.sha256(shared("fhir-r4", name).read_bytes()).hexdigest()
        assert PROVENANCE["sources"][name] == f"sha256:{digest}"


def test_table_flags_match_the_structure_definitions() -> None:
    assert len(RESOURCE_TYPES) == 146 and "DomainResource" not in RESOURCE_TYPES
    patient = ELEMENTS["Patient"]
    assert list(patient)[:8] == [
        "id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension",
    ]  # fmt: skip
    assert patient["name"].array and patient["name"].summary and not patient["contact"].summary
    assert patient["deceasedDateTime"].name == "deceased[x]" and patient["deceasedDateTime"].kind == "string"
    assert ELEMENTS["Patient.link"]["other"].mandatory
    assert ELEMENTS["Extension"]["url"].attribute and not patient["id"].attribute
    assert ELEMENTS["Questionnaire.item"]["item"].type == "Questionnaire.item"  # a contentReference
    assert ELEMENTS["Narrative"]["div"].kind == "xhtml"
    assert ELEMENTS["Bundle.entry"]["resource"].kind == "resource"
    assert ELEMENTS["Quantity"]["value"].kind == "decimal" and ELEMENTS["Attachment"]["size"].kind == "integer"
    values = [name for name, element in ELEMENTS["Observation"].items() if element.name == "value[x]"]
    assert len(values) == 11 and "valueSampledData" in values
