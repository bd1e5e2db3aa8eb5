"""Parse the ``_filter`` search parameter into a syntax tree: https://hl7.org/fhir/R4/search_filter.html

Pure: no I/O and no registry look-ups; whether each parameter exists is the caller's check.
The grammar, as this module reads the ABNF in the spec's "Syntax" section::

    filter    = andExp *(SP "or" SP andExp)          ; "and" binds tighter than "or", both left-assoc
    andExp    = term *(SP "and" SP term)
    term      = ["not" *SP] "(" *SP filter *SP ")" / paramExp
    paramExp  = paramPath 1*SP compareOp 1*SP compValue
    paramPath = paramName ["[" filter "]"] ["." paramPath]
    paramName = ("_" / ALPHA) *("_" / "-" / DIGIT / ALPHA)
    compValue = string / token   ; string: a JSON string; token: non-whitespace except "]" and ")"

Keywords and operators are case-insensitive (operators come back in lower case). Every syntax error
is a ``BadRequest`` with ``expression=["_filter"]`` whose message names what was expected, the 0-based
character position and what was found there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn, TypeAlias

from fhir_server.errors import BadRequest

# https://hl7.org/fhir/R4/search_filter.html#ops, in the spec's order (the error message lists them).
COMPARISON_OPERATORS = (
    "eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "ap",
    "sa", "eb", "pr", "po", "ss", "sb", "in", "ni", "re",
)  # fmt: skip
MAX_NESTING = 64  # parentheses, brackets and "not" groups inside each other
MAX_COMPARISONS = 128  # bounds the depth of the (left-deep) tree the caller walks recursively
_SPACE = " \t\r\n"
_SPACES = re.compile(r"[ \t\r\n]*")
_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_-]*)?")
_TOKEN = re.compile(r"[^ \t\r\n)\]]*")
_PLAIN_STRING_PART = re.compile(r'[^"\\]*')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True, slots=True)
class PathSegment:
    """One step of a paramPath: a search parameter code, maybe with a bracketed filter."""

    name: str
    filter: FilterNode | None = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """paramExp: ``path op value``; ``value`` is unquoted and unescaped (``pr``: "true"/"false")."""

    path: tuple[PathSegment, ...]
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class And:
    """logExp with ``and``."""

    left: FilterNode
    right: FilterNode


@dataclass(frozen=True, slots=True)
class Or:
    """logExp with ``or``."""

    left: FilterNode
    right: FilterNode


@dataclass(frozen=True, slots=True)
class Not:
    """``not (filter)``."""

    inner: FilterNode


FilterNode: TypeAlias = Comparison | And | Or | Not


def parse_filter(text: str) -> FilterNode:
    """The syntax tree of a ``_filter`` value; ``BadRequest`` on any syntax error."""
    if not text.strip(_SPACE):
        raise _error("expected a filter expression at position 0, found end of text")
    parser = _Parser(text)
    node = parser.filter()
    parser.end()
    return node


def _error(message: str) -> BadRequest:
    """A 400 naming the ``_filter`` parameter."""
    return BadRequest(f"_filter: {message}", expression="_filter")


def _is_space(char: str) -> bool:
    return char != "" and char in _SPACE


def _is_name_char(char: str) -> bool:
    return char in ("_", "-") or (char.isascii() and char.isalnum())


def _describe(text: str, pos: int) -> str:
    """What sits at ``pos``, for an error message: the word there, "a space" or "end of text"."""
    if pos >= len(text):
        return "end of text"
    if _is_space(text[pos]):
        return "a space"
    word = text[pos:].split(maxsplit=1)[0]
    return f"'{word[:20]}...'" if len(word) > 20 else f"'{word}'"


class _Parser:
    """Recursive descent over ``text``; scanning is done on demand, as names and values lex differently."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.comparisons = 0

    # -- grammar rules

    def filter(self) -> FilterNode:
        """filter = andExp *("or" andExp)"""
        node = self.and_exp()
        while self.keyword("or"):
            node = Or(node, self.and_exp())
        return node

    def and_exp(self) -> FilterNode:
        """andExp = term *("and" term)"""
        node = self.term()
        while self.keyword("and"):
            node = And(node, self.term())
        return node

    def term(self) -> FilterNode:
        """term = ["not"] "(" filter ")" / paramExp"""
        self.skip_space()
        if self.peek() == "(":
            return self.nested("(", ")")
        if self.not_keyword():
            return Not(self.nested("(", ")"))
        return self.comparison()

    def nested(self, opening: str, closing: str) -> FilterNode:
        """A filter between ``opening`` (at the cursor) and ``closing``."""
        start = self.pos
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _error(f"nesting deeper than {MAX_NESTING} levels at position {start}")
        self.pos += 1
        node = self.filter()
        self.skip_space()
        if self.peek() != closing:
            self.fail(f"'and', 'or' or '{closing}'", f" (the '{opening}' at position {start} is not closed)")
        self.pos += 1
        self.depth -= 1
        return node

    def comparison(self) -> Comparison:
        """paramExp = paramPath SP compareOp SP compValue"""
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise _error(f"more than {MAX_COMPARISONS} comparisons at position {self.pos}")
        path = self.path()
        self.require_space("a comparison operator")
        op = self.operator()
        self.require_space("a value")
        return Comparison(path, op, self.value(op))

    def path(self) -> tuple[PathSegment, ...]:
        """paramPath = paramName ["[" filter "]"] ["." paramPath]"""
        segments = [self.segment()]
        while self.peek() == ".":
            self.pos += 1
            segments.append(self.segment())
        return tuple(segments)

    def segment(self) -> PathSegment:
        """One paramName with its optional bracketed filter."""
        name = self.name()
        inner = self.nested("[", "]") if self.peek() == "[" else None
        return PathSegment(name, inner)

    def name(self) -> str:
        """paramName; a ``:`` (a modifier) is refused."""
        name = self.match(_NAME)
        if not name:
            self.fail("a search parameter name")
        if self.peek() == ":":
            raise _error(f"':' (a modifier) is not allowed in a search parameter name, at position {self.pos}")
        return name

    def operator(self) -> str:
        """compareOp, in lower case."""
        start = self.pos
        while self.peek().isascii() and self.peek().isalpha():
            self.pos += 1
        op = self.text[start : self.pos].lower()
        if op not in COMPARISON_OPERATORS:
            self.pos = start
            self.fail(f"a comparison operator ({', '.join(COMPARISON_OPERATORS)})")
        return op

    def value(self, op: str) -> str:
        """compValue: a JSON string or a token; for ``pr`` only true/false."""
        start = self.pos
        value = self.string() if self.peek() == '"' else self.token()
        if op != "pr":
            return value
        if value.lower() not in ("true", "false"):
            self.pos = start
            self.fail("'true' or 'false' after 'pr'")
        return value.lower()

    def token(self) -> str:
        """A run of characters other than whitespace, ``)`` and ``]``."""
        token = self.match(_TOKEN)
        if not token:
            self.fail("a value")
        return token

    def string(self) -> str:
        """A double-quoted JSON string, unescaped: https://www.rfc-editor.org/rfc/rfc8259#section-7"""
        start = self.pos
        self.pos += 1
        chars = [self.match(_PLAIN_STRING_PART)]
        while (char := self.peek()) != '"':
            if char == "" or self.pos + 1 == len(self.text):
                raise _error(f"unterminated string starting at position {start}")
            self.pos += 1
            chars += [self.escape(), self.match(_PLAIN_STRING_PART)]
        self.pos += 1
        return "".join(chars)

    def escape(self) -> str:
        """The character a backslash escape (cursor after the backslash) stands for."""
        char = self.peek()
        if char == "u":
            return self.unicode_escape()
        if char not in _ESCAPES:
            self.fail("an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX) after '\\'")
        self.pos += 1
        return _ESCAPES[char]

    def unicode_escape(self) -> str:
        """``uXXXX``, or a ``uD8xx\\uDCxx`` surrogate pair; a lone surrogate is refused."""
        start = self.pos - 1
        code = self.hex4()
        if 0xDC00 <= code <= 0xDFFF:
            self.pos = start
            self.fail("a high surrogate before a low one")
        if 0xD800 <= code <= 0xDBFF:
            if self.text[self.pos : self.pos + 2] != "\\u":
                self.fail("'\\u' and a low surrogate after a high surrogate")
            self.pos += 1
            low = self.hex4()
            if not 0xDC00 <= low <= 0xDFFF:
                self.pos -= 6
                self.fail("a low surrogate after a high surrogate")
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        return chr(code)

    def hex4(self) -> int:
        """The four hex digits after the ``u`` at the cursor."""
        digits = self.text[self.pos + 1 : self.pos + 5]
        if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
            self.fail("four hex digits after '\\u'")
        self.pos += 5
        return int(digits, 16)

    def end(self) -> None:
        """Nothing may follow the top-level filter but whitespace."""
        self.skip_space()
        char = self.peek()
        if char == "":
            return
        if char in ")]":
            raise _error(f"unmatched '{char}' at position {self.pos}")
        self.fail("'and', 'or' or the end of the filter")

    # -- scanning

    def peek(self) -> str:
        """The character at the cursor, or "" at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def match(self, pattern: re.Pattern[str]) -> str:
        """Consume and return what ``pattern`` matches at the cursor (maybe "")."""
        found = pattern.match(self.text, self.pos)
        assert found is not None, "patterns match the empty string"
        self.pos = found.end()
        return found.group()

    def skip_space(self) -> None:
        self.match(_SPACES)

    def require_space(self, then: str) -> None:
        """At least one whitespace character, then any more."""
        if not _is_space(self.peek()):
            self.fail(f"a space and then {then}")
        self.skip_space()

    def keyword(self, word: str) -> bool:
        """Consume ``word`` (any case) if it comes next as a whole word."""
        self.skip_space()
        end = self.pos + len(word)
        if self.text[self.pos : end].lower() != word or _is_name_char(self.text[end : end + 1]):
            return False
        self.pos = end
        return True

    def not_keyword(self) -> bool:
        """Consume ``not`` if a ``(`` follows; otherwise ``not`` is a parameter name."""
        start = self.pos
        if self.keyword("not"):
            self.skip_space()
            if self.peek() == "(":
                return True
        self.pos = start
        return False

    def fail(self, expected: str, note: str = "") -> NoReturn:
        """Raise "expected X at position N, found Y"."""
        found = _describe(self.text, self.pos)
        raise _error(f"expected {expected} at position {self.pos}, found {found}{note}")
