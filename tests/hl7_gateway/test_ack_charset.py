"""ACKs in the character set of the message answered: MSH-18 repeated, the bytes encoded in that set."""

from __future__ import annotations

import pytest

from hl7_gateway.ack import DATA_TYPE_ERROR, Problem, acknowledgement, encode_ack
from mappers.errors import InvalidValue
from mappers.messages import map_message
from mappers.v2 import decode, parse

LATIN_1 = (
    "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000+0100||ADT^A01|C1|P|2.5|||||DEU|8859/1\r"
    "PID|1||P1^^^HOSP&1.2&ISO||Müller^Jürgen||Müller\r"
).encode("latin-1")


def msh18(ack: str) -> str:
    """MSH-18 of ``ack`` (field 18 is index 17 once MSH-1 is the separator itself)."""
    fields = ack.split("\r", 1)[0].split("|")
    return fields[17] if len(fields) > 17 else ""


def test_latin_1_message_gets_a_latin_1_ack_naming_the_patient() -> None:
    message = parse(decode(LATIN_1))
    with pytest.raises(InvalidValue) as caught:
        map_message(message)  # PID-7 'Müller' is not a date
    error = caught.value
    ack = acknowledgement(message, "AE", Problem(DATA_TYPE_ERROR, str(error), error.segment, error.field))
    assert msh18(ack) == "8859/1"
    assert "Müller" in ack.split("\r")[2]  # ERR-8 quotes the bad value
    data = encode_ack(ack)
    assert "Müller".encode("latin-1") in data and "Müller".encode() not in data
    assert data.decode("latin-1") == ack


def test_unparsed_message_ack_repeats_msh_18_from_the_raw_header() -> None:
    head = "MSH|^~\\&|A|B|C|D|x||ADT^A01|42|P|2.3|||||DEU|8859/15"
    ack = acknowledgement(None, "AR", Problem(DATA_TYPE_ERROR, "Straße €"), raw_head=head)
    assert msh18(ack) == "8859/15"
    assert "Straße €".encode("iso8859-15") in encode_ack(ack)


def test_without_msh_18_the_ack_is_utf_8_and_declares_nothing() -> None:
    message = parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|7|P|2.5\rPID|1||1\r")
    ack = acknowledgement(message, "AE", Problem(DATA_TYPE_ERROR, "Müller 患者"))
    assert msh18(ack) == "" and len(ack.split("\r", 1)[0].split("|")) == 12
    assert encode_ack(ack) == ack.encode("utf-8")


@pytest.mark.parametrize("charset", ["KLINGON", "UNICODE UTF-8"])
def test_unknown_or_utf_8_charset_is_utf_8(charset: str) -> None:
    message = parse(f"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|7|P|2.5|||||DEU|{charset}\rPID|1||1\r")
    ack = acknowledgement(message, "AE", Problem(DATA_TYPE_ERROR, "Müller 患者"))
    assert msh18(ack) == charset
    assert encode_ack(ack) == ack.encode("utf-8")


def test_characters_the_charset_cannot_hold_become_question_marks() -> None:
    message = parse(decode(LATIN_1))
    ack = acknowledgement(message, "AE", Problem(DATA_TYPE_ERROR, "Müller 患者"))
    assert encode_ack(ack).endswith("Müller ??\r".encode("latin-1"))
