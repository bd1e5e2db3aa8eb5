"""HL7 v2 datatypes -> FHIR R4 datatypes (JSON dicts), after the V2-to-FHIR IG datatype maps.

https://build.fhir.org/ig/HL7/v2-to-fhir/datatype_maps.html . Each function takes one
:class:`mappers.v2.Field` (a repetition or a component read as a composite) and returns the FHIR value,
or None when the v2 value is empty. A value its datatype does not allow raises
:class:`mappers.errors.InvalidValue`.
"""

from __future__ import annotations

import base64
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from mappers.errors import InvalidValue
from mappers.v2 import Field

JSON = dict[str, Any]

UCUM = "http://unitsofmeasure.org"
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-{:0>4}"

# V2 coding system names (HL7 table 0396) -> FHIR code system URIs.
CODING_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "UCUM": UCUM,
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "UMLS": "http://www.nlm.nih.gov/research/umls",
    "NPI": "http://hl7.org/fhir/sid/us-npi",
}
HL7_TABLE = re.compile(r"HL7(\d{4})\Z")

COMPARATORS = {"<", "<=", ">=", ">"}
NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "usual", "C": "official"}
ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "billing"}
ADDRESS_TYPE = {"M": "postal", "SH": "physical"}
TELECOM_USE = {"PRN": "home", "ORN": "home", "VHN": "home", "WPN": "work"}
TELECOM_SYSTEM = {"NET": "email", "Internet": "email", "X.400": "email", "FX": "fax", "BP": "pager", "BPN": "pager"}

DTM = re.compile(
    r"(?P<year>\d{4})(?:(?P<month>\d{2})(?:(?P<day>\d{2})(?:(?P<hour>\d{2})(?:(?P<minute>\d{2})"
    r"(?P<second>\d{2}(?:\.\d{1,4})?)?)?)?)?)?(?P<offset>[+-]\d{4})?\Z"
)


def coding_system(name: str) -> str | None:
    """The FHIR URI of a v2 coding system name (``LN``, ``SCT``, ``HL70203``, ...), or None if unknown."""
    if match := HL7_TABLE.match(name):
        return V2_TABLE.format(match.group(1))
    return CODING_SYSTEMS.get(name.upper())


def coding(code: str, display: str, system_name: str, version: str = "", oid: str = "") -> JSON | None:
    """One Coding from a CWE triplet; the system comes from its name, else from its OID."""
    if not code and not display:
        return None
    system = coding_system(system_name) or (f"urn:oid:{oid}" if oid else None)
    result: JSON = {"system": system, "version": version, "code": code, "display": display}
    return {key: value for key, value in result.items() if value}


def cwe_to_codeable_concept(cwe: Field) -> JSON | None:
    """CWE/CE/CNE -> CodeableConcept: both triplets as codings, CWE-9 (or a code-less CWE-2) as text."""
    if not cwe:
        return None
    codings = [
        coding(cwe.component(1), cwe.component(2), cwe.component(3), cwe.component(7), cwe.component(14)),
        coding(cwe.component(4), cwe.component(5), cwe.component(6), cwe.component(8), cwe.component(17)),
    ]
    concept: JSON = {"coding": [c for c in codings if c and "code" in c]}
    text = cwe.component(9) or ("" if cwe.component(1) else cwe.component(2))
    if text:
        concept["text"] = text
    return {key: value for key, value in concept.items() if value} or None


def table_concept(code: str, table: str) -> JSON | None:
    """A CodeableConcept holding ``code`` from HL7 table ``table`` (e.g. "0203")."""
    return {"coding": [{"system": V2_TABLE.format(table), "code": code}]} if code else None


def hd_to_system(hd: Field) -> str | None:
    """HD (namespace^universal id^type) -> an identifier system URI, from the universal id."""
    universal, kind = hd.component(2), hd.component(3).upper()
    if not universal:
        return None
    if kind == "ISO":
        return f"urn:oid:{universal}"
    if kind == "UUID":
        return f"urn:uuid:{universal.lower()}"
    return universal if kind in {"URI", "URL", "DNS"} and ":" in universal else None


def cx_to_identifier(cx: Field) -> JSON | None:
    """CX -> Identifier: value, system and assigner from CX-4 (HD), type from CX-5 (table 0203)."""
    value = cx.component(1)
    if not value:
        return None
    identifier: JSON = {"value": value}
    authority = cx.part(4)
    if system := hd_to_system(authority):
        identifier["system"] = system
    if kind := table_concept(cx.component(5), "0203"):
        identifier["type"] = kind
    if authority.component(1):
        identifier["assigner"] = {"display": authority.component(1)}
    return identifier


def ei_to_identifier(ei: Field) -> JSON | None:
    """EI (entity id^namespace^universal id^type) -> Identifier."""
    value = ei.component(1)
    if not value:
        return None
    identifier: JSON = {"value": value}
    hd = Field(ei.delimiters.component.join(ei.components()[1:4]), ei.delimiters)
    if system := hd_to_system(hd):
        identifier["system"] = system
    if hd.component(1):
        identifier["assigner"] = {"display": hd.component(1)}
    return identifier


def xpn_to_human_name(xpn: Field) -> JSON | None:
    """XPN -> HumanName: family (XPN-1.1), given (2, 3), suffix (4, 6), prefix (5), use (7, table 0200)."""
    name: JSON = {
        "use": NAME_USE.get(xpn.component(7)),
        "family": xpn.component(1),
        "given": [part for part in (xpn.component(2), xpn.component(3)) if part],
        "prefix": [xpn.component(5)] if xpn.component(5) else [],
        "suffix": [part for part in (xpn.component(4), xpn.component(6)) if part],
    }
    name = {key: value for key, value in name.items() if value}
    return name if set(name) - {"use"} else None


def xad_to_address(xad: Field) -> JSON | None:
    """XAD -> Address: lines (1.1, 2), city, state, postalCode, country, district (9), use/type (7)."""
    kind = xad.component(7)
    address: JSON = {
        "use": ADDRESS_USE.get(kind),
        "type": ADDRESS_TYPE.get(kind),
        "line": [line for line in (xad.component(1), xad.component(2)) if line],
        "city": xad.component(3),
        "district": xad.component(9),
        "state": xad.component(4),
        "postalCode": xad.component(5),
        "country": xad.component(6),
    }
    address = {key: value for key, value in address.items() if value}
    return address if set(address) - {"use", "type"} else None


def xtn_to_contact_point(xtn: Field, default_use: str | None = None) -> JSON | None:
    """XTN -> ContactPoint: email (XTN-4) or number (12, 1, or 5-8 composed); use/system from 2 and 3."""
    system = TELECOM_SYSTEM.get(xtn.component(3)) or TELECOM_SYSTEM.get(xtn.component(2)) or "phone"
    value = xtn.component(4) if system == "email" else xtn.component(12) or xtn.component(1) or phone_number(xtn)
    if not value:
        return None
    point: JSON = {"system": system, "value": value}
    use = "mobile" if xtn.component(3) == "CP" else TELECOM_USE.get(xtn.component(2), default_use)
    if use:
        point["use"] = use
    return point


def phone_number(xtn: Field) -> str:
    """The number composed from XTN-5 (country), 6 (area), 7 (local) and 8 (extension)."""
    country, area, local, extension = (xtn.component(n) for n in (5, 6, 7, 8))
    number = " ".join(part for part in (f"+{country}" if country else "", f"({area})" if area else "", local) if part)
    return f"{number} ext. {extension}" if number and extension else number


def dtm_to_datetime(value: str, default_offset: str = "") -> str | None:
    """TS/DTM -> FHIR dateTime, keeping the precision and the UTC offset exactly as sent.

    R4 needs an offset on any time, so a time without one takes ``default_offset`` (the sender's zone,
    e.g. from MSH-7) or, when there is none, is cut to its date.
    """
    text = value.strip()
    if not text:
        return None
    match = DTM.match(text)
    if not match:
        raise InvalidValue(f"{value!r} is not a TS/DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")
    parts = match.groupdict()
    date = "-".join(part for part in (parts["year"], parts["month"], parts["day"]) if part)
    offset = parts["offset"] or default_offset
    if not parts["hour"] or not parts["day"]:
        return date
    if not offset:
        return date
    second = parts["second"] or "00"
    return f"{date}T{parts['hour']}:{parts['minute'] or '00'}:{second}{offset[:3]}:{offset[3:]}"


def dtm_offset(value: str) -> str:
    """The ``+HHMM``/``-HHMM`` offset a TS/DTM ends with, or ""."""
    match = DTM.match(value.strip())
    return (match.group("offset") or "") if match else ""


def dt_to_date(value: str) -> str | None:
    """DT (or the date part of a TS) -> FHIR date at the precision sent."""
    text = value.strip()[:8]
    return dtm_to_datetime(text) if text else None


def nm_to_decimal(value: str) -> Decimal | None:
    """NM -> Decimal keeping every digit sent (``"4.060"`` stays ``4.060``)."""
    text = value.strip().lstrip("+")
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation as error:
        raise InvalidValue(f"{value!r} is not a number (NM)") from error
    if not number.is_finite():
        raise InvalidValue(f"{value!r} is not a finite number (NM)")
    return number


def cwe_to_unit(cwe: Field) -> JSON:
    """OBX-6 units (CWE) -> the unit fields of a Quantity, coded in UCUM when the sender says UCUM."""
    code, text, system = cwe.component(1), cwe.component(2), cwe.component(3)
    unit: JSON = {"unit": text or code} if text or code else {}
    if code and (system.upper() == "UCUM" or (not system and code in COMMON_UCUM)):
        unit.update(system=UCUM, code=code)
    return unit


COMMON_UCUM = {
    "%", "g", "mg", "ug", "kg", "L", "mL", "dL", "mmol/L", "umol/L", "mg/dL", "g/dL", "g/L", "mg/L",
    "U/L", "[iU]/L", "fL", "pg", "10*3/uL", "10*6/uL", "10*9/L", "10*12/L", "mm[Hg]", "/min", "Cel",
    "cm", "mm", "m", "kg/m2", "s", "min", "h", "d", "wk", "mo", "a", "mEq/L", "ng/mL", "pg/mL", "ng/dL",
}  # fmt: skip


def quantity(value: Decimal, unit: JSON, comparator: str = "") -> JSON:
    """A Quantity of ``value`` with ``unit`` (from :func:`cwe_to_unit`) and an optional comparator."""
    result: JSON = {"value": value, **unit}
    if comparator:
        result["comparator"] = comparator
    return result


def nm_to_quantity(value: str, unit: JSON) -> JSON | None:
    """NM -> Quantity; a leading comparator some senders put in NM (``<15``) becomes ``comparator``."""
    match = re.fullmatch(r"\s*(<=?|>=?)?\s*(.*)", value)
    comparator, number = (match.group(1) or "", match.group(2)) if match else ("", value)
    decimal = nm_to_decimal(number)
    return quantity(decimal, unit, comparator) if decimal is not None else None


def sn_to_value(sn: Field, unit: JSON) -> JSON:
    """SN -> ``value[x]``: Quantity (with comparator), Ratio (``:`` or ``/``) or Range (``-``).

    A comparator FHIR has no code for (``<>``, ``=`` is dropped) gives ``valueString``.
    """
    comparator, separator = sn.component(1), sn.component(3)
    first, second = nm_to_decimal(sn.component(2)), nm_to_decimal(sn.component(4))
    if comparator not in COMPARATORS | {"", "="} or (separator and second is None) or first is None:
        return {"valueString": sn.text}
    if separator in {":", "/"} and second is not None:
        return {"valueRatio": {"numerator": {"value": first}, "denominator": {"value": second}}}
    if separator == "-" and second is not None:
        return {"valueRange": {"low": quantity(first, unit), "high": quantity(second, unit)}}
    return {"valueQuantity": quantity(first, unit, "" if comparator == "=" else comparator)}


def range_to_reference_range(text: str, unit: JSON) -> JSON | None:
    """OBX-7 reference range (``low-high``, ``<high``, ``>low`` or words) -> ``referenceRange`` item."""
    text = text.strip()
    if not text:
        return None
    if match := re.fullmatch(r"(-?[\d.]+)\s*-\s*(-?[\d.]+)", text):
        low, high = nm_or_none(match.group(1)), nm_or_none(match.group(2))
        if low is not None and high is not None:
            return {"low": quantity(low, unit), "high": quantity(high, unit), "text": text}
    if (match := re.fullmatch(r"(<=?|>=?)\s*([\d.]+)", text)) and (bound := nm_or_none(match.group(2))) is not None:
        return {("high" if match.group(1).startswith("<") else "low"): quantity(bound, unit), "text": text}
    return {"text": text}


def nm_or_none(value: str) -> Decimal | None:
    """The number in ``value``, or None when it is not one (for lenient ranges)."""
    try:
        return nm_to_decimal(value)
    except InvalidValue:
        return None


def nr_to_range(nr: Field, unit: JSON) -> JSON | None:
    """NR (low^high) -> Range."""
    bounds = {"low": nm_to_decimal(nr.component(1)), "high": nm_to_decimal(nr.component(2))}
    result = {key: quantity(value, unit) for key, value in bounds.items() if value is not None}
    return result or None


def components_from(field: Field, n: int) -> Field:
    """``field`` without its first ``n - 1`` components (XCN-2.. read as an XPN, EI-2..4 as an HD)."""
    return Field(field.delimiters.component.join(field.components()[n - 1 :]), field.delimiters)


def display_name(name: JSON | None) -> str:
    """A HumanName as display text: prefix, given names, family."""
    if not name:
        return ""
    return " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]).strip()


def xcn_to_reference(xcn: Field) -> JSON | None:
    """XCN -> a logical Reference to a Practitioner: identifier (XCN-1, system from XCN-9 HD) and display.

    The IG makes a Practitioner of each XCN; a logical reference keeps who it was without creating a
    Practitioner per message (a provider registry can resolve the identifier later).
    """
    value, system = xcn.component(1), hd_to_system(xcn.part(9))
    identifier = {"system": system, "value": value} if system else {"value": value}
    reference: JSON = {
        "type": "Practitioner",
        "identifier": identifier if value else None,
        "display": display_name(xpn_to_human_name(components_from(xcn, 2))),
    }
    reference = {key: item for key, item in reference.items() if item}
    return reference if set(reference) - {"type"} else None


def pl_to_display(pl: Field) -> str:
    """PL (point of care^room^bed^facility^status^type^building^floor^description) as one display text."""
    description = pl.component(9)
    parts = [pl.component(n) for n in (4, 7, 8, 1, 2, 3)]
    return description or " ".join(part for part in parts if part)


def pl_to_location_reference(pl: Field) -> JSON | None:
    """PL -> a display-only Reference to a Location (the IG's Location resource has no stable key in v2)."""
    display = pl_to_display(pl)
    return {"display": display} if display else None


def dr_to_period(dr: Field, default_offset: str = "") -> JSON | None:
    """DR (start^end TS) -> Period."""
    period = {
        "start": dtm_to_datetime(dr.component(1), default_offset),
        "end": dtm_to_datetime(dr.component(2), default_offset),
    }
    period = {key: value for key, value in period.items() if value}
    return period or None


def cq_to_quantity(amount: str, unit: Field) -> JSON | None:
    """CQ / an NM amount with its CWE units (RXE-3 with RXE-5, RXD-4 with RXD-5) -> Quantity."""
    value = nm_to_decimal(amount)
    return quantity(value, cwe_to_unit(unit)) if value is not None else None


def ed_to_attachment(ed: Field) -> JSON | None:
    """ED (source^type^subtype^encoding^data) -> Attachment: contentType from type/subtype, data as base64.

    The data is decoded by its encoding (ED-4, HL7 table 0299: ``Base64``, ``Hex``, ``A`` = ASCII text) and
    sent on as base64; data that is not valid in its encoding, or an unknown encoding, is an InvalidValue.
    """
    data, encoding = ed.component(5), ed.component(4).upper()
    if not data:
        return None
    content = ENCODED_DATA.get(encoding)
    if content is None:
        raise InvalidValue(f"ED-4 encoding {ed.component(4)!r} is not one of A, Hex, Base64 (HL7 table 0299)")
    return {
        "contentType": media_type(ed.component(2), ed.component(3)),
        "data": base64.b64encode(content(data)).decode("ascii"),
    }


def base64_bytes(data: str) -> bytes:
    """The bytes of base64 text (line breaks and spaces ignored)."""
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except ValueError as error:
        raise InvalidValue(f"ED data {data[:20]!r}... is not base64") from error


def hex_bytes(data: str) -> bytes:
    """The bytes of hexadecimal text (spaces ignored)."""
    try:
        return bytes.fromhex("".join(data.split()))
    except ValueError as error:
        raise InvalidValue(f"ED data {data[:20]!r}... is not hexadecimal") from error


def text_bytes(data: str) -> bytes:
    """The bytes of text data (``A``): UTF-8, which is ASCII for the ASCII text the encoding promises."""
    return data.encode("utf-8")


# HL7 table 0299 (ED-4 encoding) -> how the data's bytes are read; an empty encoding is text.
ENCODED_DATA = {"BASE64": base64_bytes, "HEX": hex_bytes, "A": text_bytes, "": text_bytes}


def rp_to_attachment(rp: Field) -> JSON | None:
    """RP (pointer^application id^type^subtype) -> Attachment: the pointer as url, contentType from type/subtype."""
    pointer = rp.component(1)
    if not pointer:
        return None
    return {"contentType": media_type(rp.component(3), rp.component(4)), "url": pointer}


def media_type(kind: str, subtype: str) -> str:
    """ED-2/ED-3 (HL7 tables 0191/0291) as a MIME type: ``AP``/``PDF`` -> ``application/pdf``."""
    top = {"AP": "application", "IM": "image", "AU": "audio", "TEXT": "text", "TX": "text"}.get(kind.upper(), "")
    if "/" in subtype:
        return subtype.lower()
    if top and subtype:
        return f"{top}/{subtype.lower()}"
    return "text/plain" if top == "text" else "application/octet-stream"
