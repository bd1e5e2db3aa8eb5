"""HL7 v2 acknowledgements: MSH + MSA (+ ERR), built with the delimiters of the message answered.

MSA-1: ``AA`` accepted (only after the data is committed), ``AE`` error (mapping or validation failed),
``AR`` reject (unparseable or unsupported). ERR follows v2.5: ERR-2 location (segment^sequence^field),
ERR-3 HL7 error code (table 0357), ERR-4 severity, ERR-8 user message.

An ACK answers in the character set of the message: it repeats the message's MSH-18 (HL7 table 0211), and
``encode_ack`` writes it in that set (UTF-8 when none or an unknown one is declared).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from mappers.v2 import CHARSETS, DEFAULT_DELIMITERS, Delimiters, Message, declared_charset

# HL7 table 0357 (message error condition codes)
SEGMENT_SEQUENCE_ERROR = ("100", "Segment sequence error")
DATA_TYPE_ERROR = ("102", "Data type error")
UNSUPPORTED_MESSAGE_TYPE = ("200", "Unsupported message type")
APPLICATION_ERROR = ("207", "Application internal error")

_CONTROL_IDS = itertools.count(1)


@dataclass(frozen=True)
class Problem:
    """What went wrong, for the ERR segment: table 0357 code, text, and where (segment position, field)."""

    code: tuple[str, str]
    text: str
    segment: int | None = None
    field: str | None = None


def acknowledgement(message: Message | None, code: str, problem: Problem | None = None, raw_head: str = "") -> str:
    """The ACK for ``message`` (or, when it could not be parsed, for the header line ``raw_head``)."""
    delimiters = message.delimiters if message is not None else DEFAULT_DELIMITERS
    header = _header_fields(message, raw_head, delimiters)
    segments = [_msh(header, delimiters), _join(delimiters, "MSA", code, header["control_id"])]
    if problem is not None:
        segments.append(_err(problem, delimiters))
    return "\r".join(segments) + "\r"


def encode_ack(ack: str) -> bytes:
    """The bytes of ``ack`` in the character set its own MSH-18 declares (table 0211), UTF-8 when it declares
    none or one Python has no codec for; a character that set cannot hold is sent as ``?``."""
    head = ack.split("\r", 1)[0]
    codec = CHARSETS.get(declared_charset(head.encode("utf-8")), "utf-8")
    return ack.encode(codec, errors="replace")


def _header_fields(message: Message | None, raw_head: str, delimiters: Delimiters) -> dict[str, str]:
    """MSH-3..6, 9..12 and 18 of the message answered, from the parsed message or its raw first line."""
    numbers = (3, 4, 5, 6, 9, 10, 11, 12, 18)
    if message is not None:
        msh = message.msh
        raw = {n: msh.raw(n) for n in numbers}
    else:
        parts = raw_head.split("|") if raw_head.startswith("MSH|") else []
        raw = {n: parts[n - 1] if len(parts) > n - 1 else "" for n in numbers}
    trigger = raw[9].split(delimiters.component)[1] if delimiters.component in raw[9] else ""
    return {
        "sending_application": raw[5],
        "sending_facility": raw[6],
        "receiving_application": raw[3],
        "receiving_facility": raw[4],
        "trigger": trigger,
        "control_id": raw[10],
        "processing_id": raw[11] or "P",
        "version": raw[12] or "2.5.1",
        "charset": raw[18],
    }


def _msh(header: dict[str, str], d: Delimiters) -> str:
    """The ACK's MSH: sender and receiver swapped, MSH-11/12 and (when sent) MSH-18 of the message kept."""
    encoding = d.component + d.repetition + d.escape + d.subcomponent + d.truncation
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    message_type = d.component.join(["ACK", header["trigger"], "ACK"])
    control_id = f"ACK{next(_CONTROL_IDS)}{now[:14]}"
    fields = [
        "MSH",
        encoding,
        header["sending_application"],
        header["sending_facility"],
        header["receiving_application"],
        header["receiving_facility"],
        now,
        "",
        message_type,
        control_id,
        header["processing_id"],
        header["version"],
    ]
    if header["charset"]:
        fields += ["", "", "", "", "", header["charset"]]  # MSH-13..17 empty, MSH-18
    return d.field.join(fields)


def _err(problem: Problem, d: Delimiters) -> str:
    segment_id, _, field_number = (problem.field or "").partition("-")
    location = d.component.join(
        [segment_id, str(problem.segment or ""), field_number] if problem.field or problem.segment else []
    )
    text = escape(problem.text, d)
    code = d.component.join([problem.code[0], escape(problem.code[1], d), "HL70357"])
    return _join(d, "ERR", "", location, code, "E", "", "", "", text)


def escape(text: str, d: Delimiters) -> str:
    """``text`` with the message's delimiters escaped (HL7 v2 section 2.7), line breaks as ``\\.br\\``."""
    out = text.replace(d.escape, f"{d.escape}E{d.escape}")
    for character, code in ((d.field, "F"), (d.component, "S"), (d.repetition, "R"), (d.subcomponent, "T")):
        out = out.replace(character, f"{d.escape}{code}{d.escape}")
    return out.replace("\r", " ").replace("\n", f"{d.escape}.br{d.escape}")


def _join(d: Delimiters, *values: str) -> str:
    return d.field.join(values)
