"""One inbound HL7 v2 message: decode, parse, map, apply through the FHIR transaction path, acknowledge.

The ACK is ``AA`` only after the transaction Bundle the mapper produced has been committed by the
Repository (the same code a client's ``POST /fhir`` transaction runs); ``AE`` when mapping or FHIR
validation/storage refuses it; ``AR`` when it cannot be read or its type is not supported.
"""

from __future__ import annotations

import logging

from fhir_server.api.request import Context, FhirRequest
from fhir_server.api.router import dispatch
from fhir_server.errors import FhirError
from hl7_gateway.ack import (
    APPLICATION_ERROR,
    DATA_TYPE_ERROR,
    SEGMENT_SEQUENCE_ERROR,
    UNSUPPORTED_MESSAGE_TYPE,
    Problem,
    acknowledgement,
)
from mappers.errors import MappingError, UnsupportedMessage, V2Error
from mappers.messages import map_message
from mappers.v2 import Message, decode, first_line, parse

log = logging.getLogger("hl7_gateway")

BATCH_HEADERS = ("FHS", "BHS")
BATCH_TRAILERS = ("BTS", "FTS")


def process_message(ctx: Context, raw: bytes) -> str:
    """The ACK text for one message (already unframed); every message gets one, whatever happens."""
    try:
        return _process(ctx, raw)
    except Exception:
        log.exception("unexpected error processing an HL7 v2 message")
        problem = Problem(APPLICATION_ERROR, "the message could not be processed; the error has been logged")
        return acknowledgement(None, "AE", problem, raw_head=first_line(raw))


def _process(ctx: Context, raw: bytes) -> str:
    try:
        text = decode(raw)
    except V2Error as error:
        return acknowledgement(None, "AR", _problem(error, SEGMENT_SEQUENCE_ERROR), raw_head=first_line(raw))
    if text[:3] in BATCH_HEADERS:
        return _batch(ctx, text)
    return _single(ctx, text)


def _single(ctx: Context, text: str) -> str:
    try:
        message = parse(text)
    except V2Error as error:
        head = text.split("\r", 1)[0]
        return acknowledgement(None, "AR", _problem(error, SEGMENT_SEQUENCE_ERROR), raw_head=head)
    return _mapped_and_applied(ctx, message)


def _batch(ctx: Context, text: str) -> str:
    """A batch (FHS/BHS ... BTS/FTS): every message processed on its own, one batch of ACKs returned.

    HL7 v2 section 2.10.3: the response batch carries one acknowledgement per message, in order.
    """
    lines = [line for line in text.split("\r") if line.strip()]
    messages: list[list[str]] = []
    for line in lines:
        if line.startswith("MSH"):
            messages.append([line])
        elif messages and line[:3] not in BATCH_TRAILERS + BATCH_HEADERS:
            messages[-1].append(line)
    acks = [_single(ctx, "\r".join(segments)) for segments in messages]
    headers = [_reply_header(line) for line in lines if line[:3] in BATCH_HEADERS]
    trailers = (
        [f"BTS{lines[0][3]}{len(acks)}", f"FTS{lines[0][3]}1"]
        if lines[0][:3] == "FHS"
        else [f"BTS{lines[0][3]}{len(acks)}"]
    )
    return "\r".join(headers) + "\r" + "".join(acks) + "\r".join(trailers) + "\r"


def _reply_header(line: str) -> str:
    """The FHS/BHS of the response batch: sender and receiver swapped, the rest kept."""
    fields = line.split(line[3])
    fields += [""] * (7 - len(fields))
    fields[2], fields[3], fields[4], fields[5] = fields[4], fields[5], fields[2], fields[3]
    return line[3].join(fields)


def _mapped_and_applied(ctx: Context, message: Message) -> str:
    try:
        bundle = map_message(message)
    except UnsupportedMessage as error:
        return acknowledgement(message, "AR", _problem(error, UNSUPPORTED_MESSAGE_TYPE))
    except MappingError as error:
        return acknowledgement(message, "AE", _problem(error, DATA_TYPE_ERROR))
    try:
        dispatch(ctx, FhirRequest("POST", "", headers={"prefer": "return=minimal"}, body=bundle))
    except FhirError as error:
        log.info("message %s refused by FHIR validation or storage: %s", message.msh.raw(10), error.diagnostics)
        return acknowledgement(message, "AE", Problem(APPLICATION_ERROR, error.diagnostics))
    return acknowledgement(message, "AA")


def _problem(error: V2Error, code: tuple[str, str]) -> Problem:
    return Problem(code, str(error), error.segment, error.field)


def too_large(head: bytes, limit: int) -> str:
    """The AR for a frame over the size limit (answered from its first line)."""
    problem = Problem(APPLICATION_ERROR, f"message larger than the {limit} bytes this listener accepts")
    return acknowledgement(None, "AR", problem, raw_head=first_line(head))
