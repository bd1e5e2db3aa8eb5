"""The errors of the HL7 v2 -> FHIR path, one tree so the gateway can choose its ACK by class.

::

    V2Error                    anything the mappers reject
    ├── V2DecodeError          bytes that are not text in the declared (or fallback) charset   -> AR
    ├── V2ParseError           text that is not an HL7 v2 message                               -> AR
    └── MappingError           a parsed message that cannot become FHIR                         -> AE
        ├── UnsupportedMessage MSH-9 names a message type no mapper handles                     -> AR
        └── InvalidValue       a field whose value its datatype does not allow

Each carries ``segment`` and ``field`` when known (ERR-2 location), e.g. ``segment=3, field="OBX-5"``.
"""

from __future__ import annotations


class V2Error(Exception):
    """Base of every error raised while decoding, parsing or mapping HL7 v2."""

    def __init__(self, message: str, segment: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.segment = segment
        self.field = field


class V2DecodeError(V2Error):
    """The bytes are not text in the character set the message declares (or the fallback)."""


class V2ParseError(V2Error):
    """The text is not an HL7 v2 message; ``segment`` (1-based position) and ``field`` locate the problem."""


class MappingError(V2Error):
    """A well-formed message that cannot be mapped to FHIR."""


class UnsupportedMessage(MappingError):
    """No mapper handles the message type and trigger event in MSH-9."""


class InvalidValue(MappingError):
    """A value that its HL7 datatype does not allow (a bad TS, NM, SN, ...)."""
