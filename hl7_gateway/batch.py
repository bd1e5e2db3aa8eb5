"""HL7 v2 batches (section 2.10.3): ``[FHS] BHS {MSH ...} BTS [FTS]`` split into their messages, and the
response batch with one acknowledgement per message, in order.

Split on bytes, so each message is stored as the sender encoded it and decoded on its own (MSH-18).
"""

from __future__ import annotations

from dataclasses import dataclass

from mappers.v2 import UTF8_BOM

BATCH_HEADERS = (b"FHS", b"BHS")
BATCH_TRAILERS = (b"BTS", b"FTS")


@dataclass(frozen=True)
class Batch:
    """The header lines (FHS, BHS) and the messages (raw bytes, CR-separated segments) of a batch."""

    headers: list[str]
    messages: list[bytes]


def is_batch(raw: bytes) -> bool:
    return raw.removeprefix(UTF8_BOM).lstrip(b"\r\n")[:3] in BATCH_HEADERS


def split_batch(raw: bytes) -> Batch:
    """The batch's header lines and its messages; segments end in CR whatever the sender used."""
    body = raw.removeprefix(UTF8_BOM).replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    lines = [line for line in body.split(b"\r") if line.strip()]
    messages: list[list[bytes]] = []
    for line in lines:
        if line.startswith(b"MSH"):
            messages.append([line])
        elif messages and line[:3] not in BATCH_TRAILERS + BATCH_HEADERS:
            messages[-1].append(line)
    headers = [line.decode("latin-1") for line in lines if line[:3] in BATCH_HEADERS]
    return Batch(headers, [b"\r".join(segments) + b"\r" for segments in messages])


def batch_acknowledgement(batch: Batch, acks: list[str]) -> str:
    """The response batch: FHS/BHS with sender and receiver swapped, the ACKs, BTS (count) and FTS."""
    separator = batch.headers[0][3] if batch.headers and len(batch.headers[0]) > 3 else "|"
    trailers = [f"BTS{separator}{len(acks)}"]
    if batch.headers and batch.headers[0].startswith("FHS"):
        trailers.append(f"FTS{separator}1")
    headers = [_reply_header(line) for line in batch.headers]
    return "".join(line + "\r" for line in headers) + "".join(acks) + "\r".join(trailers) + "\r"


def _reply_header(line: str) -> str:
    """An FHS/BHS of the response batch: sender (-3, -4) and receiver (-5, -6) swapped, the rest kept."""
    if len(line) < 4:
        return line
    fields = line.split(line[3])
    fields += [""] * (7 - len(fields))
    fields[2], fields[3], fields[4], fields[5] = fields[4], fields[5], fields[2], fields[3]
    return line[3].join(fields)
