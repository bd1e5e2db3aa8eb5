"""ADT (NK1, AL1, DG1, A40), orders (ORM/OML), pharmacy (RDE/RDS) and scheduling (SIU) -> Bundles.

Real samples (``../shared/data/hl7v2``, sources in its README.txt) are checked against their text; small
project-owned messages keep the suite meaningful without the shared data.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from mappers.errors import MappingError
from mappers.messages import map_message
from mappers.v2 import parse
from tests.mappers.test_messages import checked_bundle, entry_of, resources

SIU = (
    "MSH|^~\\&|SCHED|CLINIC|||20240301090000+0100||SIU^{trigger}|S{trigger}|P|2.5\r"
    "SCH|APT1^SCHED|APT1F^CLINIC||||CHK^Checkup^L|ROUTINE^Routine^HL70276|30|min|^^30^20240310100000+0100\r"
    "NTE|1||bring your glasses\r"
    "PID|1||P77^^^CLINIC&1.2.3&ISO^MR||Roe^Ann||19700101|F\r"
    "RGS|1\rAIS|1||EYE^Eye exam^L|20240310100000+0100|||30|min\r"
    "AIG|1||SLIT1^Slit lamp|EQ^Equipment^L\r"
    "AIL|1||EYE^Room 2^^Main Clinic\r"
    "AIP|1||D9^Who^Hal^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO|ATT^Attending^L\r"
)
RDS = (
    "MSH|^~\\&|PHARM|HOSP|||20240301090000-0500||RDS^O13|R1|P|2.5\r"
    "PID|1||M5^^^HOSP&1.2.3&ISO^MR||Poe^Ed||19600101|M\r"
    "ORC|NW|ORD9^HOSP||||||||||D1^Cure^Ivy\r"
    "RXE|^BID^^20240301100000-0500|00071015523^Lipitor 10 MG Oral Tablet^NDC|10||mg^mg^UCUM|||||30|TAB^tablet^L|2|||RX123\r"
    "RXR|PO^Oral^HL70162\r"
    "RXD|1|00071015523^Lipitor 10 MG Oral Tablet^NDC|20240301120000-0500|30|TAB^tablet^L||RX123\r"
    "RXR|PO^Oral^HL70162\r"
)


@pytest.mark.parametrize(
    ("trigger", "status"),
    [
        ("S12", "booked"),
        ("S13", "booked"),
        ("S14", "booked"),
        ("S15", "cancelled"),
        ("S17", "entered-in-error"),
        ("S26", "noshow"),
    ],
)
def test_siu_status_follows_the_trigger(trigger: str, status: str) -> None:
    bundle = map_message(parse(SIU.format(trigger=trigger)))
    appointment_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment")
    appointment = appointment_entry["resource"]
    assert appointment["status"] == status
    assert appointment_entry["request"] == {"method": "PUT", "url": "Appointment?identifier=APT1"}
    assert (appointment["start"], appointment["end"]) == ("2024-03-10T10:00:00+01:00", "2024-03-10T10:30:00+01:00")
    assert appointment["minutesDuration"] == 30 and appointment["comment"] == "bring your glasses"
    assert appointment["serviceType"][0]["coding"][0]["code"] == "EYE"
    actors = [p["actor"] for p in appointment["participant"]]
    assert actors[0] == {"reference": bundle["entry"][0]["fullUrl"]}
    assert actors[1] == {"identifier": {"value": "SLIT1"}, "display": "Slit lamp"}
    assert actors[2] == {"type": "Location", "display": "Main Clinic EYE Room 2"}
    assert actors[3]["identifier"] == {"system": "http://hl7.org/fhir/sid/us-npi", "value": "D9"} or actors[3][
        "identifier"
    ] == {"system": "urn:oid:2.16.840.1.113883.4.6", "value": "D9"}
    assert actors[3]["display"] == "Dr Hal Who"


def test_siu_without_sch_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as caught:
        map_message(parse("MSH|^~\\&|A|B|||||SIU^S12|1|P|2.5\rPID|1||1\r"))
    assert caught.value.field == "SCH"


def test_rds_dispense_is_authorised_by_its_request() -> None:
    bundle = map_message(parse(RDS))
    request_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    request = request_entry["resource"]
    assert request_entry["request"]["url"] == "MedicationRequest?identifier=ORD9"
    assert request["status"] == "active" and request["intent"] == "order"
    assert request["medicationCodeableConcept"]["coding"] == [
        {"system": "http://hl7.org/fhir/sid/ndc", "code": "00071015523", "display": "Lipitor 10 MG Oral Tablet"}
    ]
    dosage = request["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == Decimal("10")
    assert dosage["route"]["coding"][0]["code"] == "PO"
    assert dosage["timing"]["repeat"]["boundsPeriod"]["start"] == "2024-03-01T10:00:00-05:00"
    assert request["dispenseRequest"]["numberOfRepeatsAllowed"] == 2
    assert request["requester"]["display"] == "Ivy Cure"
    dispense = resources(bundle, "MedicationDispense")[0]
    assert dispense["authorizingPrescription"] == [{"reference": request_entry["fullUrl"]}]
    assert dispense["whenHandedOver"] == "2024-03-01T12:00:00-05:00"
    assert dispense["quantity"]["value"] == Decimal("30") and dispense["identifier"][0]["value"] == "RX123"
    assert dispense["subject"] == request["subject"]


def test_rde_millennium_19_cancelled_order() -> None:
    bundle = checked_bundle("19_RDE_O01_23_millennium.hl7")
    request = resources(bundle, "MedicationRequest")[0]
    assert request["status"] == "cancelled"  # ORC-1 CA
    assert request["identifier"][0]["value"] == "31320845"
    assert request["medicationCodeableConcept"]["coding"][0]["display"] == "##ITEM##,DESC,VALUE,524232,1"
    assert request["dosageInstruction"][0]["route"]["coding"][0]["code"] == "PO"
    assert resources(bundle, "Encounter")[0]["identifier"][0]["value"] == "10012589"


def test_rde_o11_31_compound_is_a_contained_medication() -> None:
    bundle = checked_bundle("31_RDE_O11_synthetic.hl7")
    request = resources(bundle, "MedicationRequest")[0]
    medication = request["contained"][0]
    assert request["medicationReference"] == {"reference": "#compound"}
    assert medication["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/ndc",
        "code": "0143963401",
        "display": "200 ML BAG : NICARDIPINE IN NACL (ISO-OS) 40 MG/200 ML IV PGBK",
    }
    assert medication["ingredient"][0]["strength"]["numerator"]["value"] == Decimal("4")
    assert request["authoredOn"] == "2019-11-04T06:27:26+02:15"
    assert request["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] == {
        "start": "2019-11-04T10:30:00+02:15",
        "end": "2019-11-04T11:30:00+02:15",
    }


def test_rds_o13_32() -> None:
    bundle = checked_bundle("32_RDS_O13_synthetic.hl7")
    dispense = resources(bundle, "MedicationDispense")[0]
    assert dispense["whenHandedOver"] == "2020-12-12"
    assert dispense["medicationCodeableConcept"]["coding"][0]["code"] == "01151327"
    assert dispense["quantity"]["value"] == Decimal("10")
    assert dispense["performer"][0]["actor"]["display"] == "Dr Adam Mellie Smith"


def test_siu_s12_33() -> None:
    bundle = checked_bundle("33_SIU_S12_synthetic.hl7")
    appointment = resources(bundle, "Appointment")[0]
    assert appointment["status"] == "booked"
    assert [i["value"] for i in appointment["identifier"]] == ["12345", "36996"]
    assert (appointment["start"], appointment["end"]) == ("2021-09-24T09:30:00+02:15", "2021-09-24T10:20:00+02:15")
    assert appointment["serviceType"][0]["coding"][0]["code"] == "76164006"
    assert appointment["comment"] == "Appointment booked for emergency procedure"
    assert appointment["reasonReference"][0]["reference"] == bundle["entry"][1]["fullUrl"]
    assert (
        entry_of(bundle, appointment["reasonReference"][0]["reference"])["resource"]["code"]["coding"][0]["code"]
        == "64766004"
    )
    displays = [p["actor"].get("display") for p in appointment["participant"]]
    assert displays[1:] == ["EVIS X12 Video Colonoscope", "GH Clinic 055 Room01", "Robert C GE"]


def test_siu_s12_24_times_without_offset_are_the_requested_period() -> None:
    appointment = resources(checked_bundle("24_SIU_S12_23.hl7"), "Appointment")[0]
    assert "start" not in appointment and appointment["requestedPeriod"] == [
        {"start": "2011-06-17", "end": "2011-06-17"}
    ]


def test_orm_epic_09_two_orders_under_one_orc() -> None:
    bundle = checked_bundle("09_ORM_O01_251_epic.hl7")
    orders = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    assert [o["resource"]["code"]["coding"][0]["code"] for o in orders] == ["54089-8", "57717-1"]
    placer = "urn:oid:1.2.840.114350.1.13.145.2.7.2.695071|421832901"
    assert orders[0]["request"] == {
        "method": "PUT",
        "url": f"ServiceRequest?identifier={placer}&code=http://loinc.org|54089-8",
    }
    order = orders[1]["resource"]
    assert order["status"] == "active" and order["authoredOn"] == "2023-05-06T05:29:13-05:00"
    assert order["requester"] == {
        "type": "Practitioner",
        "identifier": {"value": "1265136360"},
        "display": "JANE JONES",
    }
    answers = [entry_of(bundle, ref["reference"])["resource"] for ref in order["supportingInfo"]]
    assert answers[0]["valueQuantity"]["value"] == Decimal("1769.859285") and answers[0]["status"] == "registered"


def test_oml_epic_08_specimen_and_contact() -> None:
    bundle = checked_bundle("08_OML_O21_251_epic.hl7")
    order = resources(bundle, "ServiceRequest")[0]
    specimen = entry_of(bundle, order["specimen"][0]["reference"])["resource"]
    assert specimen["type"]["coding"][0]["code"] == "440500042"
    assert specimen["collection"] == {"collectedDateTime": "2023-05-06T06:00:00-05:00"}
    assert len(order["supportingInfo"]) == 12


def test_oml_hapi_30_timing_priority_and_specimens() -> None:
    bundle = checked_bundle("30_OML_OUL_251_m1.hl7")
    order = resources(bundle, "ServiceRequest")[0]
    assert order["priority"] == "asap"  # TQ1-9 A
    assert order["code"]["coding"][0] == {
        "system": "http://www.ama-assn.org/go/cpt",
        "code": "82951",
        "display": "Glucose Tolerance Test",
    }
    assert len(order["specimen"]) == 3


def test_adt_nk1_pd1_al1_dg1_41() -> None:
    bundle = checked_bundle("41_ADT_A08_synthetic.hl7")
    patient = resources(bundle, "Patient")[0]
    contact = patient["contact"][0]
    assert contact["name"]["family"] == "Evan" and contact["relationship"][0]["coding"][0]["code"] == "EMC"
    assert patient["generalPractitioner"][0]["display"] == "Dr rold H Hippo"
    encounter = resources(bundle, "Encounter")[0]
    assert encounter["reasonCode"][0]["coding"][0]["code"] == "140004"
    assert encounter["participant"][0]["type"][0]["coding"][0]["code"] == "ATND"
    assert encounter["location"][0]["status"] == "active"
    allergy = resources(bundle, "AllergyIntolerance")[0]
    assert allergy["category"] == ["environment"] and allergy["criticality"] == "low"
    assert allergy["onsetDateTime"] == "2021-08-24"
    condition = resources(bundle, "Condition")[0]
    assert condition["code"]["coding"][0]["code"] == "422504002"
    assert condition["onsetDateTime"] == "2004-01-25T11:40:25+04:20"
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"  # DG1-6 A (admitting)
    assert condition["encounter"] == {"reference": bundle["entry"][1]["fullUrl"]}


def test_adt_a31_maps_the_person_only() -> None:
    bundle = checked_bundle("25_ADT_23_accmgr_m1.hl7")
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient"]
    assert bundle["entry"][0]["resource"]["contact"][0]["name"] == {"family": "TEST", "given": ["MARTHA"]}


def test_adt_a40_updates_the_survivor_and_merges_the_prior_patient_into_it() -> None:
    bundle = checked_bundle("34_ADT_A40_synthetic.hl7")
    survivor, merge = bundle["entry"]
    assert survivor["request"] == {"method": "PUT", "url": "Patient?identifier=12345"}
    assert "link" not in survivor["resource"]  # the merge links both patients
    assert merge["request"] == {"method": "POST", "url": "Patient/$merge"}
    parameters = {p["name"]: p for p in merge["resource"]["parameter"]}
    assert parameters.keys() == {"source-patient-identifier", "target-patient"}
    assert parameters["source-patient-identifier"]["valueIdentifier"]["value"] == "56789"  # MRG-1
    assert parameters["target-patient"]["valueReference"] == {"reference": survivor["fullUrl"]}


def test_adt_a40_prefers_the_prior_identifier_with_a_system() -> None:
    text = (
        "MSH|^~\\&|A|B|||20240101130000+0100||ADT^A40|M2|P|2.5\rPID|1||NEW1^^^H&1.9&ISO\rMRG|LOCAL7~OLD1^^^H&1.9&ISO\r"
    )
    merge = map_message(parse(text))["entry"][1]["resource"]
    assert merge["parameter"][0]["valueIdentifier"]["system"] == "urn:oid:1.9"
    assert merge["parameter"][0]["valueIdentifier"]["value"] == "OLD1"


def test_adt_a40_without_mrg_identifier_is_refused() -> None:
    text = "MSH|^~\\&|A|B|||20240101130000+0100||ADT^A40|M2|P|2.5\rPID|1||NEW1^^^H&1.9&ISO\rMRG|\r"
    with pytest.raises(MappingError) as caught:
        map_message(parse(text))
    assert caught.value.field == "MRG-1"
