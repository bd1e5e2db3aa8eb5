"""FHIR XML <-> JSON: the official examples round-trip exactly; an independent parser agrees; errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.patient import Patient
from lxml import etree

from fhir_server.errors import BadRequest
from fhir_server.formats.xml import resource_to_xml, xml_to_resource
from tests.shared_data import SHARED, shared

EXAMPLES = sorted(p.name for p in (SHARED / "fhir-r4-examples").glob("*-*.json"))
FHIRPATH_INPUTS = ("fhir-test-cases-r4", "fhirpath")
XHTML = "http://www.w3.org/1999/xhtml"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"


def canonical(resource: dict[str, Any]) -> bytes:
    """JSON with sorted keys and every number as its text (a Decimal as written), to compare exactly."""
    return orjson.dumps(resource, option=orjson.OPT_SORT_KEYS, default=lambda d: orjson.Fragment(str(d)))


def example(name: str, parse_float: Any = float) -> dict[str, Any]:
    return json.loads(shared("fhir-r4-examples", name).read_text(encoding="utf-8"), parse_float=parse_float)


def xml(body: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}'.encode()


def bad_request(data: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        xml_to_resource(data)
    return caught.value


def test_all_official_examples_are_here() -> None:
    """The folder's 721 files are 720 example resources and the package manifest (package.json)."""
    assert len(list(shared("fhir-r4-examples").glob("*-*.json"))) == 720


@pytest.mark.parametrize("name", EXAMPLES)
def test_official_example_round_trips_exactly(name: str) -> None:
    """JSON -> XML -> JSON gives the same JSON, numbers' types included (compact XML)."""
    original = example(name)
    assert canonical(xml_to_resource(resource_to_xml(original))) == canonical(original)


@pytest.mark.parametrize("name", EXAMPLES)
def test_official_example_keeps_decimal_text_through_pretty_xml(name: str) -> None:
    """Numbers read as Decimals (``1.50``, ``1.000000000000000000E+245``) keep every digit via pretty XML."""
    original = example(name, parse_float=Decimal)
    assert canonical(xml_to_resource(resource_to_xml(original, pretty=True))) == canonical(original)


def test_fhir_resources_reads_our_xml_of_patient_example() -> None:
    """An independent implementation (fhir.resources, R4B) parses our XML to the same Patient."""
    original = example("Patient-example.json")
    ours = Patient.model_validate_xml(resource_to_xml(original)).model_dump(mode="json", exclude_none=True)
    reference = Patient.model_validate(original).model_dump(mode="json", exclude_none=True)
    ours_div, reference_div = ours["text"].pop("div"), reference["text"].pop("div")
    assert ours == reference
    assert c14n(ours_div) == c14n(reference_div)


def test_we_read_fhir_resources_xml_of_patient_example() -> None:
    original = example("Patient-example.json")
    assert xml_to_resource(Patient.model_validate(original).model_dump_xml()) == original


@pytest.mark.parametrize(
    ("xml_name", "json_name"),
    [
        ("patient-example.xml", "Patient-example.json"),
        ("questionnaire-example.xml", "Questionnaire-3141.json"),
    ],
)
def test_official_xml_reads_as_the_official_json(xml_name: str, json_name: str) -> None:
    """The spec's own XML (from FHIR/fhir-test-cases) reads to the spec's JSON, narrative text included."""
    data = shared("test-suites", *FHIRPATH_INPUTS, xml_name).read_bytes()
    assert xml_to_resource(data) == example(json_name)


def c14n(div: str) -> bytes:
    return bytes(etree.tostring(etree.fromstring(div), method="c14n"))


# --- the rules of https://hl7.org/fhir/R4/xml.html, case by case --------------------------------


def test_elements_follow_structure_definition_order_not_json_order() -> None:
    resource = {"resourceType": "Patient", "gender": "male", "active": True, "id": "p1"}
    assert resource_to_xml(resource) == xml(
        '<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><active value="true"/><gender value="male"/></Patient>'
    )


def test_primitive_extension_and_id_merge_into_the_element() -> None:
    resource = {
        "resourceType": "Patient",
        "birthDate": "1974-12-25",
        "_birthDate": {
            "id": "bd",
            "extension": [{"url": BIRTH_TIME, "valueDateTime": "1974-12-25T14:35:45-05:00"}],
        },
    }
    data = resource_to_xml(resource)
    assert data == xml(
        '<Patient xmlns="http://hl7.org/fhir"><birthDate id="bd" value="1974-12-25">'
        f'<extension url="{BIRTH_TIME}"><valueDateTime value="1974-12-25T14:35:45-05:00"/></extension>'
        "</birthDate></Patient>"
    )
    assert xml_to_resource(data) == resource


def test_primitive_arrays_with_nulls_on_either_side() -> None:
    extension = {"extension": [{"url": "http://example.org/x", "valueBoolean": True}]}
    resource = {
        "resourceType": "Patient",
        "name": [
            {"given": ["Peter", None, "James"], "_given": [None, extension, None]},
            {"_given": [extension, {"id": "g2"}]},
            {"given": ["Jim"], "_given": [None]},
        ],
    }
    data = resource_to_xml(resource)
    assert b'<given value="Peter"/><given><extension url="http://example.org/x">' in data
    assert b'<given id="g2"/>' in data
    expected = json.loads(json.dumps(resource))
    expected["name"][2] = {"given": ["Jim"]}  # an all-null companion array carries nothing
    assert xml_to_resource(data) == expected


def test_single_element_becomes_an_array_where_the_element_repeats() -> None:
    data = xml('<Patient xmlns="http://hl7.org/fhir"><name><given value="Ann"/></name></Patient>')
    assert xml_to_resource(data) == {"resourceType": "Patient", "name": [{"given": ["Ann"]}]}


def test_primitive_json_types() -> None:
    data = xml(
        '<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="t"/></code>'
        '<valueQuantity><value value="1.50"/></valueQuantity>'
        '<component><code><text value="a"/></code><valueInteger value="-7"/></component>'
        '<component><code><text value="b"/></code><valueBoolean value="false"/></component>'
        '<component><code><text value="c"/></code><valueQuantity><value value="2.5"/></valueQuantity>'
        "</component>"
        '<component><code><text value="d"/></code><valueString value=" 007 "/></component>'
        "</Observation>"
    )
    resource = xml_to_resource(data)
    value = resource["valueQuantity"]["value"]
    assert (value, type(value)) == (Decimal("1.50"), Decimal)  # a float would lose the trailing zero
    values = [c.get("valueInteger", c.get("valueBoolean")) for c in resource["component"][:2]]
    assert values == [-7, False] and type(values[0]) is int
    assert type(resource["component"][2]["valueQuantity"]["value"]) is float
    assert resource["component"][3]["valueString"] == " 007 "
    assert b'<value value="1.50"/>' in resource_to_xml(resource)


def test_narrative_div_is_xhtml_kept_as_a_string() -> None:
    div = f'<div xmlns="{XHTML}"><p class="x">Peter &quot;Jim&quot; &lt;3 &amp; <b>bold</b></p><br/></div>'
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    data = resource_to_xml(resource)
    assert b'<p class="x">Peter "Jim" &lt;3 &amp; <b>bold</b></p><br/></div></text>' in data
    assert xml_to_resource(data) == resource
    assert xml_to_resource(resource_to_xml(resource, pretty=True)) == resource


def test_div_drops_namespace_declarations_it_does_not_use() -> None:
    data = xml(
        '<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://hl7.org/fhir patient.xsd"><!-- a comment -->'
        f'<text><status value="generated"/><div xmlns="{XHTML}">x</div></text></Patient>'
    )
    assert xml_to_resource(data)["text"]["div"] == f'<div xmlns="{XHTML}">x</div>'


def test_contained_resource_is_wrapped_in_its_type() -> None:
    resource = {
        "resourceType": "Observation",
        "contained": [{"resourceType": "Patient", "id": "p", "active": True}],
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "#p"},
    }
    data = resource_to_xml(resource)
    assert b'<contained><Patient><id value="p"/><active value="true"/></Patient></contained>' in data
    assert xml_to_resource(data) == resource


def test_bundle_and_parameters_resources_and_recursive_parts() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "1"}, "response": {"status": "200 OK"}},
            {
                "response": {
                    "status": "404 Not Found",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "not-found"}],
                    },
                }
            },
        ],
    }
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient", "id": "2"}},
            {
                "name": "match",
                "part": [{"name": "score", "valueDecimal": 0.5}, {"name": "n", "valueInteger": 3}],
            },
        ],
    }
    assert b'<entry><resource><Patient><id value="1"/></Patient></resource>' in resource_to_xml(bundle)
    assert b'<part><name value="score"/><valueDecimal value="0.5"/></part>' in resource_to_xml(parameters)
    for resource in (bundle, parameters):
        assert xml_to_resource(resource_to_xml(resource)) == resource


def test_element_id_and_extension_url_are_attributes() -> None:
    resource = {
        "resourceType": "Patient",
        "extension": [{"id": "e1", "url": "http://example.org/e", "valueString": "v"}],
        "maritalStatus": {"id": "m", "coding": [{"id": "c", "code": "M"}]},
    }
    data = resource_to_xml(resource)
    assert b'<extension id="e1" url="http://example.org/e"><valueString value="v"/></extension>' in data
    assert b'<maritalStatus id="m"><coding id="c"><code value="M"/></coding></maritalStatus>' in data
    assert xml_to_resource(data) == resource


def test_pretty_xml_is_indented() -> None:
    data = resource_to_xml({"resourceType": "Patient", "id": "p", "name": [{"family": "F"}]}, pretty=True)
    assert data.decode().splitlines()[1:] == [
        '<Patient xmlns="http://hl7.org/fhir">',
        '  <id value="p"/>',
        "  <name>",
        '    <family value="F"/>',
        "  </name>",
        "</Patient>",
    ]


def test_characters_are_escaped_and_restored() -> None:
    resource = {"resourceType": "Patient", "id": "p", "name": [{"text": 'a < b & "c"\n\tnext line'}]}
    assert xml_to_resource(resource_to_xml(resource)) == resource


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the XML document is not well-formed XML: Document is empty"),
        (b'<Patient xmlns="http://hl7.org/fhir"><active value="true">', "line 1, column"),
        (b"<Patient><active value='true'/></Patient>", "not in the namespace http://hl7.org/fhir: <Patient>"),
        (b'<Patient xmlns="http://hl7.org/v3"/>', "not in the namespace http://hl7.org/fhir: <Patient>"),
        (b'<Pateint xmlns="http://hl7.org/fhir"/>', "unknown resource type <Pateint>"),
    ],
)
def test_malformed_or_foreign_xml_is_a_bad_request(data: bytes, message: str) -> None:
    assert message in bad_request(data).diagnostics


@pytest.mark.parametrize(
    ("content", "expression", "message"),
    [
        ('\n<foo value="1"/>', "Patient.foo", "line 2: unknown element <foo>"),
        ('<active value="yes"/>', "Patient.active", "'yes' is not a valid boolean"),
        ('<active value=""/>', "Patient.active", "empty value"),
        ("<active/>", "Patient.active", "neither a value"),
        ('<gender value="male" x="1"/>', "Patient.gender", "unknown attribute 'x'"),
        ('<gender value="male"/><gender value="male"/>', "Patient.gender", "repeats"),
        ("<name>Peter</name>", "Patient.name", "unexpected text 'Peter'"),
        ('<text><status value="generated"/><div>x</div></text>', "Patient.text.div", "must be a <div"),
        ("<contained/>", "Patient.contained", "exactly one resource"),
        ("<contained><Foo/></contained>", "Patient.contained", "unknown resource type <Foo>"),
        ('<multipleBirthInteger value="1.5"/>', "Patient.multipleBirthInteger", "not a valid integer"),
    ],
)
def test_invalid_fhir_xml_names_the_element(content: str, expression: str, message: str) -> None:
    error = bad_request(f'<Patient xmlns="http://hl7.org/fhir">{content}</Patient>'.encode())
    assert error.issues[0].expression == [expression]
    assert message in error.diagnostics
    assert error.diagnostics.startswith("line ")


def test_attributes_on_a_resource_are_refused() -> None:
    error = bad_request(b'<Patient xmlns="http://hl7.org/fhir" id="p"/>')
    assert error.issues[0].expression == ["Patient"]
    assert "unknown attribute 'id' on Patient" in error.diagnostics


def test_external_entities_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
        '<Patient xmlns="http://hl7.org/fhir"><id value="&xxe;"/></Patient>'
    ).encode()
    error = bad_request(data)
    assert "TOP-SECRET" not in error.diagnostics


def test_internal_entities_and_doctypes_are_refused() -> None:
    laughs = '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    data = f'<!DOCTYPE Patient [{laughs}]><Patient xmlns="http://hl7.org/fhir"><id value="&b;"/></Patient>'
    assert "DOCTYPE" in bad_request(data.encode()).diagnostics
    assert "DOCTYPE" in bad_request(b'<!DOCTYPE Patient><Patient xmlns="http://hl7.org/fhir"/>').diagnostics


@pytest.mark.parametrize(
    ("resource", "expression", "message"),
    [
        ({"resourceType": "Nope"}, "resourceType", "unknown resourceType 'Nope'"),
        ({"resourceType": "Patient", "foo": 1}, "Patient.foo", "unknown element"),
        ({"resourceType": "Patient", "_text": {}}, "Patient._text", "unknown element"),
        ({"resourceType": "Patient", "name": {"family": "F"}}, "Patient.name", "must be an array"),
        ({"resourceType": "Patient", "gender": ["male"]}, "Patient.gender", "must be a primitive value"),
        ({"resourceType": "Patient", "gender": "ma\x00le"}, "Patient.gender", "control character"),
        (
            {"resourceType": "Patient", "name": [{"given": [None], "_given": [None]}]},
            "Patient.name.given",
            "neither a value nor an extension",
        ),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": "<p>x</p>"}},
            "Patient.text.div",
            "must be a <div",
        ),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": f'<div xmlns="{XHTML}">'}},
            "Patient.text.div",
            "not well-formed",
        ),
    ],
)
def test_json_that_has_no_xml_form_is_a_bad_request(resource: dict[str, Any], expression: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        resource_to_xml(resource)
    assert caught.value.issues[0].expression == [expression]
    assert message in caught.value.diagnostics
