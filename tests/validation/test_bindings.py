"""The generated binding table and the R4 rules the validator holds, checked against the spec files."""

from __future__ import annotations

import hashlib
import json

import pytest

from fhir_server.validation.bindings import BINDINGS_FILE, required_bindings
from fhir_server.validation.primitives import ID_REGEX, URI_REGEX, UUID_REGEX
from resources.generate_bindings import SOURCE_FILES, Terminology, generate
from resources.generated.elements import ELEMENTS
from tests.shared_data import shared

TABLE = json.loads(BINDINGS_FILE.read_text(encoding="utf-8"))


def test_provenance() -> None:
    assert TABLE["generatedBy"] == "resources/generate_bindings.py"
    assert TABLE["fhirVersion"] == "4.0.1"
    assert [source["file"] for source in TABLE["sources"]] == list(SOURCE_FILES)
    for source in TABLE["sources"]:
        digest = hashlib.sha256(shared("fhir-r4", source["file"]).read_bytes()).hexdigest()
        assert source["sha256"] == digest


def test_committed_table_is_what_the_generator_makes() -> None:
    assert generate(shared("fhir-r4")) == TABLE


def test_every_bound_element_is_a_code_element() -> None:
    for path in TABLE["bindings"]:
        node, name = path.rsplit(".", 1)
        types = {element.type for element in ELEMENTS[node].values() if element.name == name}
        assert types == {"code"}, path


@pytest.mark.parametrize(
    ("path", "codes"),
    [
        ("Patient.gender", ("male", "female", "other", "unknown")),
        ("Quantity.comparator", ("<", "<=", ">=", ">")),
        # nested concepts: order has original-order, reflex-order, ... below it
        ("MedicationRequest.intent", ("proposal", "plan", "order", "original-order", "reflex-order",
                                      "filler-order", "instance-order", "option")),
    ],
)  # fmt: skip
def test_value_set_expansion(path: str, codes: tuple[str, ...]) -> None:
    assert required_bindings()[path].codes == codes


def test_codes_listed_from_an_external_system_are_enumerated() -> None:
    when = required_bindings()["Timing.repeat.when"].codes  # event-timing: its own codes + listed v3 codes
    assert {"MORN", "NIGHT", "HS", "WAKE", "ACM", "PCV"} <= set(when)


def test_value_sets_that_cannot_be_enumerated_are_skipped() -> None:
    assert TABLE["unenumerable"]["Money.currency"] == "http://hl7.org/fhir/ValueSet/currencies|4.0.1"
    assert TABLE["unenumerable"]["Attachment.contentType"] == "http://hl7.org/fhir/ValueSet/mimetypes|4.0.1"
    assert "Money.currency" not in required_bindings()


def value_set(url: str, *includes: dict[str, object]) -> dict[str, object]:
    """A ValueSet resource composed of ``includes``."""
    return {"resourceType": "ValueSet", "url": url, "compose": {"include": list(includes)}}


def test_terminology_expansion_rules() -> None:
    nested = [{"code": "a", "concept": [{"code": "a1"}]}, {"code": "b"}]
    is_a = {"property": "concept", "op": "is-a", "value": "a"}
    terminology = Terminology(
        [
            {"resourceType": "CodeSystem", "url": "urn:cs", "content": "complete", "concept": nested},
            {"resourceType": "CodeSystem", "url": "urn:part", "content": "fragment", "concept": [{"code": "x"}]},
            value_set("urn:all", {"system": "urn:cs"}),
            value_set("urn:some", {"system": "urn:other", "concept": [{"code": "z"}]}, {"valueSet": ["urn:all"]}),
            value_set("urn:fragment", {"system": "urn:part"}),
            value_set("urn:filtered", {"system": "urn:cs", "filter": [is_a]}),
        ]
    )
    assert terminology.expand("urn:all|4.0.1") == ["a", "a1", "b"]
    assert terminology.expand("urn:some") == ["z", "a", "a1", "b"]
    assert terminology.expand("urn:fragment") is None
    assert terminology.expand("urn:filtered") is None
    assert terminology.expand("urn:absent") is None


def test_lexical_rules_are_the_spec_regexes() -> None:
    bundle = json.loads(shared("fhir-r4", "profiles-types.json").read_text(encoding="utf-8"))
    regexes = {}
    for entry in bundle["entry"]:
        definition = entry["resource"]
        for element in definition.get("snapshot", {}).get("element", []):
            if element["path"] == f"{definition['id']}.value":
                extensions = element["type"][0].get("extension", [])
                regexes[definition["id"]] = next((e["valueString"] for e in extensions if "regex" in e["url"]), None)
    assert (regexes["id"], regexes["uri"], regexes["url"], regexes["canonical"], regexes["uuid"]) == (
        ID_REGEX,
        URI_REGEX,
        URI_REGEX,
        URI_REGEX,
        UUID_REGEX,
    )
