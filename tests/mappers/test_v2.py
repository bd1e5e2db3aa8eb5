"""Decoding and parsing HL7 v2: inline cases, and every shared sample message (../shared/data/hl7v2)."""

from __future__ import annotations

import hl7
import pytest

from mappers.v2 import DEFAULT_DELIMITERS, Delimiters, Field, V2DecodeError, V2ParseError, decode, parse, unescape
from tests.mappers.samples import sample_files
from tests.shared_data import shared

ADT = "MSH|^~\\&|APP|FAC|||20240101120000+0100||ADT^A01|42|P|2.5\rPID|1||123^^^HOSP^MR~456^^^SSA^SS||Doe^Jane&Q\r"


def msh_with_charset(charset: bytes) -> bytes:
    """An MSH segment whose MSH-18 is ``charset``."""
    fields = [b"MSH", b"^~\\&", b"A", b"", b"", b"", b"", b"", b"ADT^A01", b"1", b"P", b"2.5", b"", b"", b"", b"", b""]
    return b"|".join([*fields, charset])


def test_decode_strips_bom_and_normalises_separators() -> None:
    raw = b"\xef\xbb\xbfMSH|^~\\&|A\r\nPID|1\nOBX|1\rNTE|1"
    assert decode(raw) == "MSH|^~\\&|A\rPID|1\rOBX|1\rNTE|1"


@pytest.mark.parametrize(
    ("charset", "body", "expected"),
    [
        ("8859/1", "Zoë".encode("latin-1"), "Zoë"),
        ("UNICODE UTF-8", "Zoë".encode(), "Zoë"),
        ("8859/2", "Łódź".encode("iso8859-2"), "Łódź"),
        ("ISO IR100", b"\xe9", "é"),
    ],
)
def test_decode_honours_msh_18(charset: str, body: bytes, expected: str) -> None:
    raw = msh_with_charset(charset.encode()) + b"\rPID|1||||" + body
    assert decode(raw).endswith("|" + expected)


def test_decode_without_msh_18_prefers_valid_utf8_then_the_fallback() -> None:
    assert decode(b"MSH|^~\\&|A\rNTE|1||\xc2\xb5mol/L").endswith("µmol/L")
    assert decode(b"MSH|^~\\&|A\rNTE|1||\xb5mol/L").endswith("µmol/L")
    assert decode(b"MSH|^~\\&|A\rNTE|1||\xe9", fallback_charset="cp1252").endswith("é")
    assert decode(msh_with_charset(b"UNKNOWN-SET") + b"\rNTE|1||\xe9").endswith("é")


def test_decode_rejects_bytes_outside_the_declared_charset() -> None:
    with pytest.raises(V2DecodeError, match="ascii"):
        decode(msh_with_charset(b"ASCII") + b"\rPID|1||\xe9")


def test_parse_numbers_fields_as_hl7_does() -> None:
    message = parse(ADT)
    msh = message.msh
    assert (msh.raw(1), msh.raw(2), msh.value(3), msh.value(9, 2), msh.value(10)) == ("|", "^~\\&", "APP", "A01", "42")
    pid = message.segments("PID")[0]
    assert [cx.component(1) for cx in pid.repetitions(3)] == ["123", "456"]
    assert pid.field(3).part(4).component(1) == "HOSP"
    assert pid.value(5, 2) == "Jane" and pid.value(5, 2, 2) == "Q"
    assert pid.field(99).raw == "" and pid.value(5, 9) == "" and message.segment("PV1") is None


def test_parse_uses_the_declared_delimiters_and_truncation_character() -> None:
    message = parse("MSH*:!/$#*APP\rPID*1**7:::X$Y!8\r")
    assert message.delimiters == Delimiters("*", ":", "!", "/", "$", "#")
    pid = message.segments("PID")[0]
    assert [field.component(4, 2) for field in pid.repetitions(3)] == ["Y", ""]
    assert pid.repetitions(3)[1].component(1) == "8"


def test_parse_tolerates_blank_lines_trailing_separators_and_comments() -> None:
    message = parse("\ufeffMSH|^~\\&|A|\n\n  \r\nPID|1||9^^^H^MR|||\r// a comment\rOBX|1|ST|||text||\r\r")
    assert [segment.name for segment in message.all_segments] == ["MSH", "PID", "OBX"]
    assert message.segments("OBX")[0].value(5) == "text"


def test_empty_and_null_values() -> None:
    pid = parse('MSH|^~\\&|A\rPID|1||""|~~|').segments("PID")[0]
    assert not pid.field(3) and pid.value(3) == "" and pid.repetitions(4) == []


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("", (1, "MSH")),
        ("PID|1|2", (1, "MSH")),
        ("MSH", (1, "MSH-1")),
        ("MSH|^~\\|A", (1, "MSH-2")),
        ("MSH|^~\\&X|A", (1, "MSH-2")),
        ("MSH|^^\\&|A", (1, "MSH-2")),
        ("MSH|A~\\&|A", (1, "MSH-2")),
        ("MSH|^~\\&|A\r^AA|1", (2, None)),
        ("MSH|^~\\&|A\rpid|1", (2, None)),
    ],
)
def test_unparseable_text_raises_a_located_parse_error(text: str, location: tuple[int, str | None]) -> None:
    with pytest.raises(V2ParseError) as caught:
        parse(text)
    assert (caught.value.segment, caught.value.field) == location


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
        ("line 1\\.br\\line 2", "line 1\nline 2"),
        ("\\H\\bold\\N\\ text", "bold text"),
        ("crlf\\X0D0A\\end", "crlf\r\nend"),
        ("no escapes", "no escapes"),
        ("dangling \\F", "dangling \\F"),
        ("unknown \\Zcustom\\ dropped", "unknown  dropped"),
    ],
)
def test_unescape(escaped: str, plain: str) -> None:
    assert unescape(escaped, DEFAULT_DELIMITERS) == plain


def test_escaped_delimiters_do_not_split_values() -> None:
    obx = parse("MSH|^~\\&|A\rOBX|1|ST|||a\\S\\b\\F\\c^second").segments("OBX")[0]
    assert obx.value(5) == "a^b|c" and obx.value(5, 2) == "second"
    assert Field("x\\.br\\y").text == "x\ny"


@pytest.mark.parametrize("name", sample_files())
def test_every_sample_message_decodes_and_parses(name: str) -> None:
    raw = shared("hl7v2", name).read_bytes()
    message = parse(decode(raw))
    assert message.all_segments[0].name in {"MSH", "FHS"}
    assert message.msh.value(9) and message.msh.value(10)
    lines = [line for line in decode(raw).split("\r") if line.strip() and not line.startswith("//")]
    assert len(message.all_segments) == len(lines)


@pytest.mark.parametrize("name", sample_files("bad_inputs"))
def test_bad_inputs_raise_a_parse_error(name: str) -> None:
    raw = shared("hl7v2", "bad_inputs", name).read_bytes()
    with pytest.raises(V2ParseError) as caught:
        parse(decode(raw))
    assert caught.value.segment is not None and caught.value.field


def test_fields_match_python_hl7() -> None:
    text = decode(shared("hl7v2", "35_ORU_R01_lab.hl7").read_bytes())
    ours, theirs = parse(text), hl7.parse(text)
    for segment, reference in zip(ours.all_segments, theirs, strict=True):
        assert [segment.raw(n) for n in range(len(reference))] == [str(field) for field in reference]


def test_8859_1_sample_is_read_in_its_declared_charset() -> None:
    text = decode(shared("hl7v2", "02_ORU_R01_251_starlims_cancelled.hl7").read_bytes())
    assert "Ciprofloxacin 2.0 \u00ef\u00bf\u00bdg/mL" in text  # UTF-8 bytes in an 8859/1 message, read as 8859/1
