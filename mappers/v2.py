"""HL7 v2 decoding and a small parsed-message model; pure functions, no I/O.

``decode(raw)`` turns the bytes of one message (or batch) into text with CR segment separators, honouring
MSH-18 (HL7 table 0211); ``parse(text)`` splits it with the delimiters of MSH-1/MSH-2 into a
:class:`Message` of :class:`Segment` objects whose fields are read with HL7 numbering as :class:`Field`
values. Text is unescaped (``unescape``) only when a leaf value is read, after splitting, so an escaped
delimiter never splits a value.

Raises :class:`V2DecodeError` and :class:`V2ParseError` (the tree is drawn in ``mappers.errors``).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, replace
from functools import lru_cache

from mappers.errors import V2DecodeError, V2Error, V2ParseError

__all__ = ["Delimiters", "Field", "Message", "Segment", "V2DecodeError", "V2Error", "V2ParseError", "decode", "parse"]

UTF8_BOM = b"\xef\xbb\xbf"
SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
HEADER_SEGMENTS = ("MSH", "FHS", "BHS")

# HL7 table 0211 (alternate character sets) -> Python codec, for the sets Python can decode.
CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso8859-1",
    "ISO IR100": "iso8859-1",
    "8859/2": "iso8859-2",
    "ISO IR101": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "ISO IR144": "iso8859-5",
    "8859/6": "iso8859-6",
    "ISO IR127": "iso8859-6",
    "8859/7": "iso8859-7",
    "ISO IR126": "iso8859-7",
    "8859/8": "iso8859-8",
    "ISO IR138": "iso8859-8",
    "8859/9": "iso8859-9",
    "ISO IR148": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc-kr",
    "BIG-5": "big5",
    "ISO IR87": "iso2022-jp",
    "JAS2020": "iso2022-jp",
    "JIS X 0202": "iso2022-jp",
}


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The separators of MSH-1/MSH-2 (HL7 v2 section 2.5.4); ``truncation`` is the optional 5th character."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    def nested(self) -> Delimiters:
        """The delimiters one level down: a component's parts are split on the subcomponent separator."""
        return nested_delimiters(self)


@lru_cache(maxsize=64)
def nested_delimiters(delimiters: Delimiters) -> Delimiters:
    """``delimiters`` with the subcomponent separator as the component separator (computed once)."""
    return replace(delimiters, component=delimiters.subcomponent, subcomponent="\x00")


DEFAULT_DELIMITERS = Delimiters()


def decode(raw: bytes, fallback_charset: str = "latin-1") -> str:
    """The text of ``raw``: BOM stripped, CR/LF/CRLF made CR, decoded per MSH-18 (table 0211), NUL characters
    dropped (they are no HL7 text, and no database text column takes them).

    Without a known MSH-18 the bytes are read as UTF-8 when they are valid UTF-8 (which text in a
    single-byte set almost never is), else in ``fallback_charset``.
    """
    body = raw[len(UTF8_BOM) :] if raw.startswith(UTF8_BOM) else raw
    codec = CHARSETS.get(declared_charset(body)) or ("utf-8" if is_utf8(body) else fallback_charset)
    try:
        text = body.decode(codec)
    except (UnicodeDecodeError, LookupError) as error:
        raise V2DecodeError(f"message is not valid {codec}: {error}") from error
    return normalise_separators(text.replace("\x00", ""))


def is_utf8(body: bytes) -> bool:
    """Whether ``body`` is valid UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def first_line(raw: bytes) -> str:
    """The first segment of raw message bytes (BOM dropped; CR or LF ends it), read as latin-1, without NULs."""
    return raw.removeprefix(UTF8_BOM).split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1").replace("\x00", "")


def declared_charset(body: bytes) -> str:
    """MSH-18 (first repetition, first component) of the message header, or "" when absent."""
    head = first_line(body)
    if not head.startswith("MSH") or len(head) < 8:
        return ""
    try:
        delimiters = header_delimiters(head, 1)
    except V2ParseError:
        return ""
    fields = head.split(delimiters.field)
    if len(fields) <= 17:
        return ""
    first = fields[17].split(delimiters.repetition, 1)[0]
    return first.split(delimiters.component, 1)[0].strip().upper()


def normalise_separators(text: str) -> str:
    """``text`` with CRLF and LF segment separators made CR."""
    return text.replace("\r\n", "\r").replace("\n", "\r")


def header_delimiters(line: str, position: int) -> Delimiters:
    """The delimiters declared by a header segment (MSH, FHS, BHS) line, validated."""
    if len(line) < 4:
        raise V2ParseError(f"{line[:3]} segment has no field separator", position, f"{line[:3]}-1")
    separator = line[3]
    characters = line[4:].split(separator, 1)[0]
    if (len(characters) == 5 and characters[4] != "#") or len(characters) not in (4, 5):
        raise V2ParseError(f"{line[:3]}-2 encoding characters {characters!r} are not 4 (or 5)", position, "MSH-2")
    chosen = separator + characters
    if len(set(chosen)) != len(chosen) or any(c.isalnum() or c.isspace() for c in chosen):
        raise V2ParseError(f"{line[:3]} delimiters {chosen!r} must be distinct punctuation", position, "MSH-2")
    return Delimiters(separator, characters[0], characters[1], characters[2], characters[3], characters[4:])


def unescape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """``text`` with HL7 escape sequences resolved (section 2.7): delimiters, ``\\Xhh\\``, ``\\.br\\``.

    Highlighting (``\\H\\``, ``\\N\\``) and other formatting sequences are dropped; an unterminated
    escape is kept literally.
    """
    escape = delimiters.escape
    if escape not in text:
        return text
    parts = text.split(escape)
    out = [parts[0]]
    for index in range(1, len(parts), 2):
        if index + 1 >= len(parts):
            out.append(escape + parts[index])
            break
        out.append(escape_value(parts[index], delimiters))
        out.append(parts[index + 1])
    return "".join(out)


def escape_value(sequence: str, delimiters: Delimiters) -> str:
    """The text one escape sequence (without its escape characters) stands for."""
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": delimiters.escape,
        "P": delimiters.truncation,
        ".br": "\n",
    }
    if sequence in simple:
        return simple[sequence]
    if sequence[:1] == "X" and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", sequence[1:]):
        return codecs.decode(sequence[1:], "hex").decode("latin-1")
    return ""


@dataclass(frozen=True, slots=True)
class Field:
    """One repetition of a field (or a component read as a composite): raw text plus its delimiters."""

    raw: str
    delimiters: Delimiters = DEFAULT_DELIMITERS

    def __bool__(self) -> bool:
        return self.raw not in ("", '""')

    @property
    def text(self) -> str:
        """The whole value, unescaped (for ST/TX/FT whose text may hold unescaped separators)."""
        return unescape(self.raw, self.delimiters)

    def components(self) -> list[str]:
        """The raw components (1-based in HL7, 0-based in this list)."""
        return self.raw.split(self.delimiters.component)

    def part(self, n: int) -> Field:
        """Component ``n`` (1-based) as a composite whose components are its subcomponents."""
        components = self.components()
        raw = components[n - 1] if 0 < n <= len(components) else ""
        return Field(raw, self.delimiters.nested())

    def component(self, n: int, subcomponent: int = 1) -> str:
        """The unescaped, stripped text of component ``n``, subcomponent ``subcomponent`` (1-based); "" if absent."""
        components = self.components()
        parts = components[n - 1].split(self.delimiters.subcomponent) if 0 < n <= len(components) else []
        raw = parts[subcomponent - 1].strip() if 0 < subcomponent <= len(parts) else ""
        return "" if raw == '""' else unescape(raw, self.delimiters)


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment; ``fields[n]`` is the raw text of field ``n`` in HL7 numbering (``fields[0]`` the name)."""

    fields: tuple[str, ...]
    delimiters: Delimiters

    @property
    def name(self) -> str:
        return self.fields[0]

    def raw(self, n: int) -> str:
        """The raw (escaped) text of field ``n``, all repetitions; "" when absent."""
        return self.fields[n] if 0 <= n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[Field]:
        """Every non-empty repetition of field ``n``."""
        raw = self.raw(n)
        if self.name in HEADER_SEGMENTS and n <= 2:
            return [Field(raw, self.delimiters)]
        return [field for part in raw.split(self.delimiters.repetition) if (field := Field(part, self.delimiters))]

    def field(self, n: int) -> Field:
        """The first repetition of field ``n`` (empty when absent)."""
        repetitions = self.repetitions(n)
        return repetitions[0] if repetitions else Field("", self.delimiters)

    def value(self, n: int, component: int = 1, subcomponent: int = 1) -> str:
        """The unescaped text at ``n``.``component``.``subcomponent`` of the first repetition."""
        return self.field(n).component(component, subcomponent)


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed message: its segments in order and the delimiters of its header."""

    all_segments: tuple[Segment, ...]
    delimiters: Delimiters

    def segments(self, name: str) -> list[Segment]:
        """Every segment called ``name``, in order."""
        return [segment for segment in self.all_segments if segment.name == name]

    def segment(self, name: str) -> Segment | None:
        """The first segment called ``name``, or None."""
        return next((segment for segment in self.all_segments if segment.name == name), None)

    @property
    def msh(self) -> Segment:
        """The message header (the first MSH)."""
        header = self.segment("MSH")
        if header is None:
            raise V2ParseError("no MSH segment", 1, "MSH")
        return header


def parse(text: str) -> Message:
    """The message in ``text``, split by the delimiters its first header segment (MSH, FHS or BHS) declares.

    Blank lines, a BOM and ``//`` comment lines (as in published message collections) are skipped; any
    other line must be a segment: three upper-case letters or digits then the field separator.
    """
    lines = [line for line in normalise_separators(text.lstrip("\ufeff")).split("\r") if line.strip()]
    lines = [line for line in lines if not line.startswith("//")]
    if not lines or lines[0][:3] not in HEADER_SEGMENTS:
        raise V2ParseError("message does not start with an MSH (or FHS/BHS) segment", 1, "MSH")
    delimiters = header_delimiters(lines[0], 1)
    segments = tuple(parse_segment(line, position, delimiters) for position, line in enumerate(lines, 1))
    return Message(segments, delimiters)


def parse_segment(line: str, position: int, delimiters: Delimiters) -> Segment:
    """One segment line; a header segment's own MSH-1 is put back so field numbers match HL7."""
    fields = line.rstrip().split(delimiters.field)
    name = fields[0]
    if not SEGMENT_NAME.match(name):
        raise V2ParseError(f"segment {position} has no valid name: {line[:20]!r}", position)
    if name in HEADER_SEGMENTS:
        header_delimiters(line, position)
        fields.insert(1, delimiters.field)
    return Segment(tuple(fields), delimiters)
