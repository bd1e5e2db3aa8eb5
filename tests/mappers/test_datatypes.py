"""V2 datatype -> FHIR datatype maps, one small inline case per rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mappers import datatypes as dt
from mappers.errors import InvalidValue
from mappers.v2 import Field

UCUM = "http://unitsofmeasure.org"


def test_xpn_to_human_name() -> None:
    name = dt.xpn_to_human_name(Field("Doe&Van^Jane^Q^Jr^Dr^PhD^L"))
    assert name == {
        "use": "official",
        "family": "Doe",
        "given": ["Jane", "Q"],
        "prefix": ["Dr"],
        "suffix": ["Jr", "PhD"],
    }
    assert dt.xpn_to_human_name(Field("^^^^^^L")) is None


def test_cx_to_identifier_with_assigner_and_type() -> None:
    identifier = dt.cx_to_identifier(Field("123^^^HOSP&2.16.840.1.1&ISO^MR"))
    assert identifier == {
        "value": "123",
        "system": "urn:oid:2.16.840.1.1",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "assigner": {"display": "HOSP"},
    }
    assert dt.cx_to_identifier(Field("9^^^http://x.org/mrn&http://x.org/mrn&URI")) == {
        "value": "9",
        "system": "http://x.org/mrn",
        "assigner": {"display": "http://x.org/mrn"},
    }
    assert dt.cx_to_identifier(Field("^^^HOSP")) is None


def test_cwe_to_codeable_concept_keeps_both_triplets_and_text() -> None:
    concept = dt.cwe_to_codeable_concept(Field("2345-7^Glucose^LN^GLU^Glucose SerPl^L^2.74^v1^Glucose, serum"))
    assert concept == {
        "coding": [
            {"system": "http://loinc.org", "version": "2.74", "code": "2345-7", "display": "Glucose"},
            {"version": "v1", "code": "GLU", "display": "Glucose SerPl"},
        ],
        "text": "Glucose, serum",
    }
    assert dt.cwe_to_codeable_concept(Field("^free text only")) == {"text": "free text only"}
    assert dt.cwe_to_codeable_concept(Field("")) is None


@pytest.mark.parametrize(
    ("name", "uri"),
    [
        ("LN", "http://loinc.org"),
        ("SCT", "http://snomed.info/sct"),
        ("UCUM", UCUM),
        ("I9CDX", "http://hl7.org/fhir/sid/icd-9-cm"),
        ("I10", "http://hl7.org/fhir/sid/icd-10"),
        ("I10C", "http://hl7.org/fhir/sid/icd-10-cm"),
        ("RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"),
        ("HL70078", "http://terminology.hl7.org/CodeSystem/v2-0078"),
        ("99LOCAL", None),
    ],
)
def test_coding_system(name: str, uri: str | None) -> None:
    assert dt.coding_system(name) == uri


def test_coding_falls_back_to_the_oid() -> None:
    concept = dt.cwe_to_codeable_concept(Field("X1^Thing^LOCALSYS^^^^^^^^^^^1.2.3"))
    assert concept == {"coding": [{"system": "urn:oid:1.2.3", "code": "X1", "display": "Thing"}]}


def test_xad_to_address() -> None:
    address = dt.xad_to_address(Field("1 Main St^Apt 2^Springfield^IL^62701^USA^H^^Sangamon"))
    assert address == {
        "use": "home",
        "line": ["1 Main St", "Apt 2"],
        "city": "Springfield",
        "district": "Sangamon",
        "state": "IL",
        "postalCode": "62701",
        "country": "USA",
    }
    assert dt.xad_to_address(Field("^^^^^^M")) is None


@pytest.mark.parametrize(
    ("xtn", "contact"),
    [
        ("^PRN^PH^^1^555^1234567^89", {"system": "phone", "value": "+1 (555) 1234567 ext. 89", "use": "home"}),
        ("^WPN^Internet^a@b.org", {"system": "email", "value": "a@b.org", "use": "work"}),
        ("^PRN^CP^^^^^^^^^+15551234567", {"system": "phone", "value": "+15551234567", "use": "mobile"}),
        ("(555)123-4567^^FX", {"system": "fax", "value": "(555)123-4567"}),
    ],
)
def test_xtn_to_contact_point(xtn: str, contact: dict[str, str]) -> None:
    assert dt.xtn_to_contact_point(Field(xtn)) == contact


@pytest.mark.parametrize(
    ("ts", "default_offset", "expected"),
    [
        ("20141006064500+0700", "", "2014-10-06T06:45:00+07:00"),
        ("20230821163405-0400", "", "2023-08-21T16:34:05-04:00"),
        ("202308211634-0330", "", "2023-08-21T16:34:00-03:30"),
        ("20230821163405.123+0000", "", "2023-08-21T16:34:05.123+00:00"),
        ("2023082116", "-0500", "2023-08-21T16:00:00-05:00"),
        ("20230821163405", "", "2023-08-21"),
        ("20230821", "+0100", "2023-08-21"),
        ("202308", "", "2023-08"),
        ("2023", "", "2023"),
        ("", "", None),
    ],
)
def test_dtm_to_datetime_keeps_offset_and_precision(ts: str, default_offset: str, expected: str | None) -> None:
    assert dt.dtm_to_datetime(ts, default_offset) == expected


@pytest.mark.parametrize("ts", ["PIDDOB!", "202308211634.1234", "2023082", "20230821+07"])
def test_dtm_rejects_what_is_not_a_timestamp(ts: str) -> None:
    with pytest.raises(InvalidValue, match="not a TS"):
        dt.dtm_to_datetime(ts)


def test_nm_to_decimal_keeps_digits() -> None:
    assert str(dt.nm_to_decimal("4.060")) == "4.060"
    assert dt.nm_to_decimal("+12") == Decimal("12") and dt.nm_to_decimal(" ") is None
    with pytest.raises(InvalidValue):
        dt.nm_to_decimal("12,5")
    with pytest.raises(InvalidValue):
        dt.nm_to_decimal("NaN")


def test_units_are_ucum_when_the_sender_says_so_or_they_are_plain_ucum() -> None:
    assert dt.cwe_to_unit(Field("a^Year^UCUM")) == {"unit": "Year", "system": UCUM, "code": "a"}
    assert dt.cwe_to_unit(Field("%")) == {"unit": "%", "system": UCUM, "code": "%"}
    assert dt.cwe_to_unit(Field("tera.l-1")) == {"unit": "tera.l-1"}


@pytest.mark.parametrize(
    ("sn", "value"),
    [
        ("^76", {"valueQuantity": {"value": Decimal("76"), "unit": "mg"}}),
        (">^10", {"valueQuantity": {"value": Decimal("10"), "unit": "mg", "comparator": ">"}}),
        ("<=^0.5", {"valueQuantity": {"value": Decimal("0.5"), "unit": "mg", "comparator": "<="}}),
        ("=^23", {"valueQuantity": {"value": Decimal("23"), "unit": "mg"}}),
        ("^1^:^128", {"valueRatio": {"numerator": {"value": Decimal("1")}, "denominator": {"value": Decimal("128")}}}),
        (
            "^2^-^4",
            {
                "valueRange": {
                    "low": {"value": Decimal("2"), "unit": "mg"},
                    "high": {"value": Decimal("4"), "unit": "mg"},
                }
            },
        ),
        ("<>^5", {"valueString": "<>^5"}),
    ],
)
def test_sn_to_value(sn: str, value: dict[str, object]) -> None:
    assert dt.sn_to_value(Field(sn), {"unit": "mg"}) == value


def test_nm_with_a_comparator_becomes_a_quantity_comparator() -> None:
    assert dt.nm_to_quantity("<15", {}) == {"value": Decimal("15"), "comparator": "<"}


@pytest.mark.parametrize(
    ("text", "reference_range"),
    [
        ("3.5-5.0", {"low": {"value": Decimal("3.5")}, "high": {"value": Decimal("5.0")}, "text": "3.5-5.0"}),
        ("<200", {"high": {"value": Decimal("200")}, "text": "<200"}),
        (">=60", {"low": {"value": Decimal("60")}, "text": ">=60"}),
        ("negative", {"text": "negative"}),
        ("", None),
    ],
)
def test_reference_range(text: str, reference_range: dict[str, object] | None) -> None:
    assert dt.range_to_reference_range(text, {}) == reference_range


def test_nr_to_range() -> None:
    assert dt.nr_to_range(Field("1^9"), {}) == {"low": {"value": Decimal("1")}, "high": {"value": Decimal("9")}}
