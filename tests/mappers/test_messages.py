"""Messages -> transaction Bundles: real sample messages checked against their text, and inline cases.

Every Bundle is checked whole: valid R4 resources, ``urn:uuid:`` fullUrls, references resolving inside
the Bundle, ``meta.source`` naming the message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fhir_server.validation import validate_resource
from mappers.errors import InvalidValue, MappingError, UnsupportedMessage
from mappers.messages import map_message
from mappers.v2 import parse
from tests.mappers.samples import sample, sample_files

JSON = dict[str, Any]
SUPPORTED = {
    *(f"ADT^A{n}" for n in ("01", "02", "03", "04", "05", "08", "11", "13", "31", "40")),
    "ORU^R01",
    "ORM^O01",
    "OML^O21",
    "RDE^O11",
    "RDE^O01",
    "RDS^O13",
    *(f"SIU^S{n}" for n in (12, 13, 14, 15, 17, 26)),
}
# Samples answered with an AE by design: the field that is wrong in them.
INVALID_SAMPLES = {
    "07_ORU_R01_251_careevolution.hl7": "PID-7",  # PID-7 'PIDDOB!'
    "22_OML_O21_251_nist.hl7": "SPM-17",  # an ORC glued to the end of the SPM line
    "26_BATCH_FHS_BHS_ORM_O01_24.hl7": "PID-7",  # PID-7 'Aug 15, ...'
}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def supported_samples() -> list[str]:
    """Sample files whose MSH-9 has a mapper."""
    names = []
    for name in sample_files():
        msh = sample(name).msh
        if f"{msh.value(9)}^{msh.value(9, 2)}" in SUPPORTED:
            names.append(name)
    return names


def references_in(value: Any) -> list[str]:
    """Every ``reference`` string anywhere inside ``value``."""
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [ref for item in value.values() for ref in references_in(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in references_in(item)]
    return []


def checked_bundle(name: str) -> JSON:
    """The Bundle for sample ``name``, after the checks every Bundle must pass."""
    message = sample(name)
    bundle = map_message(message)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(url.startswith("urn:uuid:") for url in urls)
    source = bundle["entry"][0]["resource"]["meta"]["source"]
    assert source.endswith("#" + message.msh.value(10).replace(" ", "%20"))
    for entry in bundle["entry"]:
        validate_resource(entry["resource"])
        assert entry["resource"]["meta"]["source"] == source
        local = {ref for ref in references_in(entry["resource"]) if not ref.startswith("#")}
        assert {ref for ref in local if "?" not in ref} <= set(urls)  # conditional references resolve on the server
    validate_resource(bundle)
    return bundle


def resources(bundle: JSON, resource_type: str) -> list[JSON]:
    """The resources of ``resource_type`` in ``bundle``, in order."""
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def entry_of(bundle: JSON, reference: str) -> JSON:
    """The entry whose fullUrl is ``reference``."""
    return next(entry for entry in bundle["entry"] if entry["fullUrl"] == reference)


def observation(bundle: JSON, loinc: str) -> JSON:
    """The first Observation coded ``loinc``."""
    return next(o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == loinc)


@pytest.mark.parametrize("name", supported_samples())
def test_every_supported_sample_maps_to_a_valid_transaction(name: str) -> None:
    if name in INVALID_SAMPLES:
        with pytest.raises(InvalidValue) as caught:
            map_message(sample(name))
        assert caught.value.field == INVALID_SAMPLES[name]
        return
    bundle = checked_bundle(name)
    assert len(resources(bundle, "Patient")) == 1


def test_oru_lab_35() -> None:
    bundle = checked_bundle("35_ORU_R01_lab.hl7")
    patient_entry = bundle["entry"][0]
    assert patient_entry["request"] == {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=10006579"}
    patient = patient_entry["resource"]
    assert patient["name"] == [{"family": "DUCK", "given": ["DONALD", "D"]}]
    assert (patient["gender"], patient["birthDate"]) == ("male", "1924-10-10")
    assert patient["identifier"][0]["value"] == "10006579"
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert patient["address"][0] == {
        "type": "postal",
        "line": ["111 DUCK ST"],
        "city": "FOWL",
        "state": "CA",
        "postalCode": "999990000",
    }
    assert patient["meta"]["source"] == "urn:hl7v2:SomeSystem:#182"

    reports = resources(bundle, "DiagnosticReport")
    assert [r["code"]["coding"][0]["code"] for r in reports] == ["24317-0", "26464-8"]
    assert [r["status"] for r in reports] == ["final", "unknown"]  # the second OBR sends F in OBR-26, not 25
    assert reports[0]["subject"]["reference"] == patient_entry["fullUrl"]
    assert len(reports[0]["result"]) == 5 and len(reports[1]["result"]) == 5
    assert entry_of(bundle, reports[0]["basedOn"][0]["reference"])["resource"]["identifier"][0]["value"] == "88502218"

    erythrocytes = entry_of(bundle, reports[0]["result"][1]["reference"])["resource"]
    assert erythrocytes["code"]["coding"][0] == {"system": LOINC, "code": "11273-0", "display": "ERYTHROCYTES"}
    assert erythrocytes["valueQuantity"] == {"value": Decimal("4.06"), "unit": "tera.l-1"}
    assert erythrocytes["effectiveDateTime"] == "2014-10-06T06:27:00+07:00"
    assert erythrocytes["status"] == "preliminary"
    assert erythrocytes["interpretation"][0]["coding"][0]["code"] == "N"
    hematocrit = observation(bundle, "20570-8")
    assert hematocrit["valueQuantity"] == {"value": Decimal("40.1"), "unit": "%", "system": UCUM, "code": "%"}
    platelets = observation(bundle, "11125-2")
    assert (platelets["status"], str(platelets["valueQuantity"]["value"])) == ("final", "221")
    assert observation(bundle, "11156-7")["status"] == "registered" and "valueQuantity" not in observation(
        bundle, "11156-7"
    )

    specimen = entry_of(bundle, reports[0]["specimen"][0]["reference"])["resource"]
    assert specimen["collection"] == {"collectedDateTime": "2014-10-06T05:35:00+07:00"}
    assert specimen["receivedTime"] == "2014-10-06T08:21:00+07:00"
    assert erythrocytes["specimen"] == reports[0]["specimen"][0]


def test_oru_starlims_01() -> None:
    bundle = checked_bundle("01_ORU_R01_251_starlims_cdc.hl7")
    patient_entry = bundle["entry"][0]
    assert patient_entry["request"]["ifNoneExist"] == "identifier=urn:oid:2.16.840.1.114222.4.3.3.2.1.1|FPID00007844"
    patient = patient_entry["resource"]
    assert [i["value"] for i in patient["identifier"]] == ["FPID00007844", "50140727"]
    assert patient["identifier"][1]["system"] == "urn:oid:2.16.840.1.114222.4.1.3666"
    assert patient["identifier"][1]["assigner"] == {"display": "SPHL-000008"}
    assert patient["name"] == [{"use": "official", "family": "Quinn", "given": ["Harley", "C"]}]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1985-11-12")
    assert patient["meta"]["source"] == "urn:hl7v2:STARLIMS.CDC.Prod:CDC%20FTC#3029202646_3029202646_5532"

    report = resources(bundle, "DiagnosticReport")[0]
    assert report["issued"] == "2023-08-21T16:34:00-04:00"  # OBR-22 202308211634-0400
    assert report["effectiveDateTime"] == "2023-07-28T15:13:00-04:00"  # OBR-7 in the sender's zone (MSH-7)
    onset = observation(bundle, "11368-8")
    assert onset["valueDateTime"] == "2023-07-23"
    age = observation(bundle, "21612-7")
    assert age["valueQuantity"] == {"value": Decimal("76"), "unit": "Year", "system": UCUM, "code": "a"}
    assert age["code"]["coding"][0]["version"] == "2.61"
    negative = resources(bundle, "Observation")[2]
    assert negative["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "version": "09012018",
        "code": "260385009",
        "display": "Negative",
    }
    assert negative["code"]["text"] == "Jamestown Canyon IgM Capture ELISA"
    specimen = resources(bundle, "Specimen")[0]
    assert [i["value"] for i in specimen["identifier"]] == ["23FMC-209M0173", "3029202646"]
    assert specimen["type"]["coding"][0]["code"] == "258450006"


def test_oru_8859_1_03() -> None:
    bundle = checked_bundle("03_ORU_R01_251_starlims_8859.hl7")
    patient = bundle["entry"][0]["resource"]
    assert patient["name"][0]["family"] == "Yeo-jeong" and patient["birthDate"] == "2000-04-05"
    age = observation(bundle, "21612-7")
    assert age["valueQuantity"]["value"] == Decimal("23")  # SN "=^23": "=" is no comparator
    corrected = resources(bundle, "Observation")[2]
    assert corrected["status"] == "corrected"  # OBX-11 C
    assert corrected["valueCodeableConcept"]["text"] == "Negative"
    assert resources(bundle, "Specimen")[0]["collection"] == {"collectedDateTime": "2023-02-27"}


def test_oru_escapes_10() -> None:
    bundle = checked_bundle("10_ORU_R01_251_testsender_br.hl7")
    summary = observation(bundle, "57724-7")["valueString"]
    assert summary.startswith("ACTION REQUIRED\n\nNBS Testing Lab - TEST REG MEDICAL CENTER LAB ~M 57752YWKP")
    assert "\\" not in summary
    glycine = observation(bundle, "47633-3")
    assert glycine["valueQuantity"] == {"value": Decimal("0.5"), "unit": "µmol/L"}  # UTF-8 µ, no MSH-18
    assert observation(bundle, "53150-9")["referenceRange"] == [
        {"high": {"value": Decimal("1000"), "unit": "µmol/L"}, "text": "<1000"}
    ]


def test_adt_a01_16_updates_the_patient_by_identifier() -> None:
    bundle = checked_bundle("16_ADT_A01_23_cerner.hl7")
    patient_entry, encounter_entry = bundle["entry"][:2]
    assert patient_entry["request"] == {"method": "PUT", "url": "Patient?identifier=1419055458"}
    patient = patient_entry["resource"]
    assert [i["value"] for i in patient["identifier"]] == ["1419055458", "3870146052"]
    assert patient["identifier"][1]["type"]["coding"][0]["code"] == "NHSNMBR"
    assert patient["name"][0] == {
        "family": "Doe",
        "given": ["Jane", "Janny"],
        "prefix": ["Miss"],
        "suffix": ["Jr", "PhD"],
    }
    assert patient["birthDate"] == "1994-06-15" and patient["deceasedDateTime"] == "2019-11-30"
    assert patient["telecom"] == [
        {"system": "phone", "value": "020 0921 5742", "use": "home"},
        {"system": "phone", "value": "020 0921 5748", "use": "work"},
    ]
    assert patient["address"][0]["postalCode"] == "SV20 3BC"
    encounter = encounter_entry["resource"]
    assert encounter_entry["request"] == {"method": "PUT", "url": "Encounter?identifier=5609582645793881888"}
    assert encounter["subject"] == {"reference": patient_entry["fullUrl"]}
    assert encounter["status"] == "in-progress" and encounter["period"]["end"] == "2011-03-09"  # A01 fixes the status
    allergies = resources(bundle, "AllergyIntolerance")
    assert [a["code"]["coding"][0]["code"] for a in allergies] == ["Z88.0", "T63.441A", "Z91.013", "Z91.040"]
    assert allergies[2]["criticality"] == "high" and allergies[2]["reaction"][0]["manifestation"] == [
        {"text": "Swollen face"},
        {"text": "Big face"},
    ]
    assert allergies[0]["patient"] == {"reference": patient_entry["fullUrl"]}
    assert bundle["entry"][2]["request"]["method"] == "PUT"


PV1 = "|".join(["PV1", "1", "O", *[""] * 16, "V1^^^H&1.2.3&ISO", *[""] * 24, "20240101110000"])  # 19 visit, 44 admit


def adt(trigger: str, pv1: str = PV1) -> JSON:
    """The Bundle of a minimal ADT message with ``trigger`` and ``pv1``."""
    text = (
        f"MSH|^~\\&|EHR|HOSP|||20240101120000+0100||ADT^{trigger}|C1|P|2.5\r"
        "PID|1||123^^^H&1.2.3&ISO^MR||Doe^Jane||19800101|F|||||||||||||||||||||20240101113000|Y\r"
        f"{pv1}\r"
    )
    return map_message(parse(text))


@pytest.mark.parametrize(
    ("trigger", "status"),
    [
        ("A01", "in-progress"),
        ("A02", "in-progress"),
        ("A03", "finished"),
        ("A04", "planned"),
        ("A05", "planned"),
        ("A08", "in-progress"),
        ("A11", "cancelled"),
        ("A13", "in-progress"),
    ],
)
def test_encounter_status_follows_the_trigger(trigger: str, status: str) -> None:
    bundle = adt(trigger)
    encounter = resources(bundle, "Encounter")[0]
    assert encounter["status"] == status
    assert encounter["class"] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "AMB",
        "display": "ambulatory",
    }
    assert bundle["entry"][0]["request"] == {"method": "PUT", "url": "Patient?identifier=urn:oid:1.2.3|123"}
    assert resources(bundle, "Patient")[0]["deceasedDateTime"] == "2024-01-01T11:30:00+01:00"


def test_same_message_maps_to_the_same_bundle() -> None:
    assert adt("A01") == adt("A01")


def test_notes_attach_to_the_observation_and_the_order() -> None:
    text = (
        "MSH|^~\\&|LAB|L|||20240101120000||ORU^R01|9|P|2.5.1\rPID|1||1^^^L&1.2&ISO\r"
        "OBR|1|P1||GLU^Glucose^L\rNTE|1||order note\r"
        "OBX|1|ST|GLU^Glucose^L||high\\.br\\see note||||||F\rNTE|1||first\rNTE|2||second\r"
    )
    bundle = map_message(parse(text))
    assert resources(bundle, "ServiceRequest")[0]["note"] == [{"text": "order note"}]
    result = resources(bundle, "Observation")[0]
    assert result["valueString"] == "high\nsee note"
    assert result["note"] == [{"text": "first"}, {"text": "second"}]


def test_unsupported_message_type() -> None:
    with pytest.raises(UnsupportedMessage) as caught:
        map_message(parse("MSH|^~\\&|A|B|||||BAR^P01|1|P|2.5\r"))
    assert caught.value.field == "MSH-9" and "BAR^P01" in str(caught.value)
    assert isinstance(caught.value, MappingError)


def test_unsupported_value_type_names_the_field() -> None:
    text = "MSH|^~\\&|A|B|||||ORU^R01|1|P|2.5\rPID|1||1\rOBR|1\rOBX|1|ZZ|X^Y^L||QUJD||||||F\r"
    with pytest.raises(InvalidValue) as caught:
        map_message(parse(text))
    assert caught.value.field == "OBX-2"
