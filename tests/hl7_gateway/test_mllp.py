"""MLLP framing and HL7 ACKs, without a network."""

from __future__ import annotations

from hl7_gateway.ack import Problem, acknowledgement
from hl7_gateway.mllp import Deframer, TooLarge, frame
from mappers.v2 import parse

MESSAGE = b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000-0500||ORU^R01^ORU_R01|MSG0001|P|2.5.1\rPID|1||123^^^H"


def test_frames_split_across_reads_and_junk_between() -> None:
    deframer = Deframer()
    stream = b"\x00\x00junk" + frame(MESSAGE) + b"\n\x00" + frame(b"second")
    found = [m for i in range(0, len(stream), 7) for m in deframer.feed(stream[i : i + 7])]
    assert found == [MESSAGE, b"second"]


def test_several_frames_in_one_read() -> None:
    assert Deframer().feed(frame(b"a") + frame(b"b") + frame(b"c")) == [b"a", b"b", b"c"]


def test_oversize_frame_reported_once_then_skipped() -> None:
    deframer = Deframer(max_bytes=100)
    found = deframer.feed(frame(MESSAGE + b"x" * 500)[:-2])
    assert len(found) == 1 and isinstance(found[0], TooLarge)
    assert found[0].head.startswith(b"MSH|")
    assert deframer.feed(b"\x1c\x0d" + frame(b"next")) == [b"next"]


def test_ack_accept_echoes_control_id_and_swaps_sender() -> None:
    ack = acknowledgement(parse(MESSAGE.decode()), "AA")
    msh, msa = ack.rstrip("\r").split("\r")
    fields = msh.split("|")
    assert fields[2:6] == ["EHR", "HOSP", "LAB", "HOSP"]
    assert fields[8] == "ACK^R01^ACK"
    assert msa == "MSA|AA|MSG0001"


def test_ack_error_has_err_segment_with_location_code_and_text() -> None:
    problem = Problem(("102", "Data type error"), "bad value | here", segment=2, field="PID-7")
    ack = acknowledgement(parse(MESSAGE.decode()), "AE", problem)
    err = ack.rstrip("\r").split("\r")[2].split("|")
    assert err[0] == "ERR"
    assert err[2] == "PID^2^7"
    assert err[3] == "102^Data type error^HL70357"
    assert err[4] == "E"
    assert err[8] == "bad value \\F\\ here"


def test_ack_for_unparseable_message_uses_raw_header() -> None:
    ack = acknowledgement(
        None, "AR", Problem(("100", "Segment sequence error"), "nope"), raw_head="MSH|^~\\&|A|B|C|D|x||ADT^A01|42|P|2.3"
    )
    assert "MSA|AR|42" in ack
