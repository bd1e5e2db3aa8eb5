"""ORU OBX carrying a document (ED encapsulated data, RP reference pointer) -> DiagnosticReport.presentedForm.

R4 Observation has no valueAttachment; R4's DiagnosticReport mappings put ED/RP in presentedForm
(https://hl7.org/fhir/R4/diagnosticreport-mappings.html). None of the shared samples has an ED or RP OBX
(``grep '|ED|'`` finds none), so these messages are written here.
"""

from __future__ import annotations

import base64

import pytest

from fhir_server.validation import validate_resource
from mappers.errors import MappingError
from mappers.messages import map_message
from mappers.v2 import parse
from tests.mappers.test_messages import JSON, resources

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
HEADER = "MSH|^~\\&|LAB|L|||20240101120000+0100||ORU^R01|ED1|P|2.5.1\rPID|1||P1^^^L&1.2&ISO\rOBR|1||F1|RPT^Report^L\r"


def oru(*obx: str) -> JSON:
    """The Bundle of an ORU with ``obx`` segments under one OBR, every resource validated."""
    bundle = map_message(parse(HEADER + "".join(line + "\r" for line in obx)))
    for entry in bundle["entry"]:
        validate_resource(entry["resource"])
    return bundle


def test_ed_obx_is_the_reports_presented_form_not_an_observation() -> None:
    pdf = base64.b64encode(PDF).decode()
    bundle = oru(
        "OBX|1|NM|GLU^Glucose^L||5.5|mmol/L|||||F",
        f"OBX|2|ED|PDF^Report PDF^L||LAB^AP^PDF^Base64^{pdf}||||||F",
        "OBX|3|ED|TXT^Report text^L||^TEXT^PLAIN^Hex^48656C6C6F",
        "OBX|4|ED|TXT^Note^L||^TEXT^^A^Hi there",
    )
    (observation,) = resources(bundle, "Observation")
    assert observation["code"]["coding"][0]["code"] == "GLU"
    (report,) = resources(bundle, "DiagnosticReport")
    assert report["result"] == [
        {"reference": e["fullUrl"]} for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    assert report["presentedForm"] == [
        {"contentType": "application/pdf", "data": pdf, "title": "Report PDF"},
        {"contentType": "text/plain", "data": base64.b64encode(b"Hello").decode(), "title": "Report text"},
        {"contentType": "text/plain", "data": base64.b64encode(b"Hi there").decode(), "title": "Note"},
    ]
    assert base64.b64decode(report["presentedForm"][0]["data"]) == PDF


def test_rp_obx_is_a_presented_form_by_url() -> None:
    bundle = oru("OBX|1|RP|IMG^Image^L||https://pacs.example/img/1^PACS^IM^JPEG||||||F")
    assert resources(bundle, "Observation") == []
    assert resources(bundle, "DiagnosticReport")[0]["presentedForm"] == [
        {"contentType": "image/jpeg", "url": "https://pacs.example/img/1", "title": "Image"}
    ]


@pytest.mark.parametrize(
    "value",
    ["^AP^PDF^Base64^not*base64!", "^AP^PDF^Base64^QUJ", "^AP^PDF^Hex^4G6C", "^AP^PDF^Hex^486", "^AP^PDF^Zip^QUJD"],
)
def test_bad_encapsulated_data_names_obx_5(value: str) -> None:
    with pytest.raises(MappingError) as caught:
        oru(f"OBX|1|ED|PDF^Report PDF^L||{value}||||||F")
    assert caught.value.field == "OBX-5"
    assert str(caught.value).startswith("OBX-5: ")
