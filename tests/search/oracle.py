"""An independent FHIR R4 search evaluator over an in-memory corpus: the oracle of ``test_oracle.py``.

It reads what each search parameter covers from the official ``search-parameters.json`` (the FHIRPath
expressions, evaluated with fhirpathpy) and applies the matching rules of the search page,
https://hl7.org/fhir/R4/search.html, as written out below. It imports nothing from ``fhir_server``: it is
a second opinion, not a replay of the server's index tables.

Choices where the spec leaves room (stated so a failing comparison can be judged):

- a date or dateTime without a timezone is taken as UTC;
- the target of a number or quantity comparison is its value as a point, the search value a range;
- ``ap`` widens the search range by ``approximation`` (the spec recommends 10% of the value, or for
  dates of the gap to now, "but systems may choose other values"); the test brackets it between 0 and
  10%;
- sorting: ascending on a resource's lowest value, descending on its highest; strings compare
  case- and accent-insensitively; resources without a value sort last.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

Resource = dict[str, Any]
Params = list[tuple[str, str]]
SortKey = tuple[Any, ...]

FHIRPATH_MODEL = models["r4"]
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RECOMMENDED_APPROXIMATION = Decimal("0.1")
RESULT_PARAMETERS = frozenset({"_count", "_sort", "_include", "_revinclude", "_total", "_summary", "_elements"})


class OracleError(Exception):
    """The query uses something this oracle does not evaluate (a test bug, not a server bug)."""


# --- search parameter definitions ---------------------------------------------------------------------


@dataclass(frozen=True)
class SearchParameter:
    """One SearchParameter resource of the spec, reduced to what evaluation needs."""

    url: str
    code: str
    type: str
    expression: str
    targets: tuple[str, ...]
    components: tuple[tuple[str, str], ...]


class Registry:
    """The spec's search parameters by (resource type, code), with FHIRPath compiled per resource type."""

    def __init__(self, search_parameters: Path) -> None:
        bundle = json.loads(search_parameters.read_bytes())
        self._by_base: dict[tuple[str, str], SearchParameter] = {}
        self._by_url: dict[str, SearchParameter] = {}
        for entry in bundle["entry"]:
            resource = entry["resource"]
            param = SearchParameter(
                url=resource["url"],
                code=resource["code"],
                type=resource["type"],
                expression=resource.get("expression", ""),
                targets=tuple(resource.get("target", ())),
                components=tuple((c["definition"], c["expression"]) for c in resource.get("component", ())),
            )
            self._by_url[param.url] = param
            for base in resource["base"]:
                self._by_base[(base, param.code)] = param
        self._compiled: dict[tuple[str, str], Callable[[Resource, dict[str, Any]], list[Any]] | None] = {}

    def get(self, resource_type: str, code: str) -> SearchParameter:
        for base in (resource_type, "DomainResource", "Resource"):
            if (base, code) in self._by_base:
                return self._by_base[(base, code)]
        raise OracleError(f"no search parameter {code!r} on {resource_type}")

    def by_url(self, url: str) -> SearchParameter:
        return self._by_url[url]

    def references_of(self, resource_type: str) -> list[SearchParameter]:
        """Every reference parameter defined on a resource type (what ``_include=*`` follows)."""
        return [p for (base, _), p in self._by_base.items() if base == resource_type and p.type == "reference"]

    def evaluate(self, param: SearchParameter, resource: Resource) -> list[Any]:
        """The values a parameter's expression selects in a resource."""
        key = (param.url, resource["resourceType"])
        if key not in self._compiled:
            expression = expression_for(param.expression, resource["resourceType"])
            self._compiled[key] = compile_fhirpath(expression, FHIRPATH_MODEL) if expression else None
        compiled = self._compiled[key]
        return [] if compiled is None else list(compiled(resource, {}))


def expression_for(expression: str, resource_type: str) -> str:
    """The branches of a (possibly multi-resource) expression that apply to one resource type.

    ``X.where(resolve() is Patient)`` becomes a test on the literal reference's type, which is what
    resolve() amounts to for the relative and absolute references a server stores.
    """
    branches = []
    for branch in split_top_level(expression, "|"):
        head = re.match(r"\(?\s*([A-Za-z]+)", branch)
        if head and head.group(1) in ("Resource", "DomainResource"):
            branch = branch.replace(head.group(1) + ".", resource_type + ".", 1)
        elif not head or head.group(1) != resource_type:
            continue
        branches.append(branch)
    joined = " | ".join(branches)
    return re.sub(r"resolve\(\)\s+is\s+([A-Za-z]+)", r"reference.matches('^(.*/)?\1/[^/]+(/_history/[^/]+)?$')", joined)


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on a separator outside parentheses and quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


# --- value escaping: https://hl7.org/fhir/R4/search.html#escaping ------------------------------------


def split_escaped(value: str, separator: str) -> list[str]:
    """Split a parameter value on an unescaped separator (``,`` ``|`` ``$``), keeping escapes."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


# --- string: https://hl7.org/fhir/R4/search.html#string -----------------------------------------------

HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def normalize(text: str) -> str:
    """Case-folded, with combining characters (accents) removed."""
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def string_parts(value: Any) -> list[str]:
    """The strings a string parameter searches in a value: itself, or a HumanName's or Address's parts."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    keys = HUMAN_NAME_PARTS if any(k in value for k in ("family", "given")) else ADDRESS_PARTS
    parts: list[str] = []
    for key in keys:
        item = value.get(key)
        parts.extend(item if isinstance(item, list) else [item] if isinstance(item, str) else [])
    return parts


def string_matches(part: str, modifier: str | None, query: str) -> bool:
    if modifier == "exact":
        return part == query
    if modifier == "contains":
        return normalize(query) in normalize(part)
    return normalize(part).startswith(normalize(query))


# --- token: https://hl7.org/fhir/R4/search.html#token -------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One (system, code) a token value offers, and the texts ``:text`` searches."""

    system: str | None
    code: str | None


def token_codes(value: Any) -> list[Token]:
    if isinstance(value, bool):
        return [Token(None, "true" if value else "false")]
    if isinstance(value, str):
        return [Token(None, value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or set(value) <= {"text", "id", "extension"}:
        return [t for coding in value.get("coding", ()) for t in token_codes(coding)]
    if "value" in value:  # Identifier, ContactPoint
        return [Token(value.get("system"), str(value["value"]))]
    return [Token(value.get("system"), value.get("code"))]


def token_texts(value: Any) -> list[str]:
    """CodeableConcept.text, Coding.display, Identifier.type.text."""
    if not isinstance(value, dict):
        return []
    texts = [value.get("text"), value.get("display")]
    texts += [c.get("display") for c in value.get("coding", ())]
    texts.append((value.get("type") or {}).get("text") if isinstance(value.get("type"), dict) else None)
    return [t for t in texts if isinstance(t, str)]


def token_matches(value: Any, modifier: str | None, query: str) -> bool:
    if modifier == "text":
        return any(string_matches(text, None, query) for text in token_texts(value))
    parts = split_escaped(query, "|")
    codes = token_codes(value)
    if len(parts) == 1:
        return any(t.code == unescape(parts[0]) for t in codes)
    system, code = unescape(parts[0]), unescape(parts[1])
    if system == "":
        return any(t.system is None and t.code == code for t in codes)
    if code == "":
        return any(t.system == system for t in codes)
    return any(t.system == system and t.code == code for t in codes)


# --- ranges shared by number, quantity and date -------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A closed range [low, high]; ``None`` ends are open (missing Period bounds)."""

    low: Any
    high: Any


def lower(a: Any, b: Any) -> bool:
    """a < b where None on either side is the open end it stands for (low: -inf, high: +inf)."""
    return a is not None and b is not None and a < b


def compare(prefix: str, search: Span, target: Span) -> bool:
    """The range column of https://hl7.org/fhir/R4/search.html#prefix (ap: see ``approximately``)."""
    contains = (
        target.low is not None
        and target.high is not None
        and not lower(target.low, search.low)
        and not lower(search.high, target.high)
    )
    above = target.high is None or lower(search.high, target.high)
    below = target.low is None or lower(target.low, search.low)
    match prefix:
        case "eq":
            return contains
        case "ne":
            return not contains
        case "gt":
            return above
        case "lt":
            return below
        case "ge":
            return above or contains
        case "le":
            return below or contains
        case "sa":
            return target.low is not None and lower(search.high, target.low)
        case "eb":
            return target.high is not None and lower(target.high, search.low)
        case "ap":
            return overlaps(search, target)
    raise OracleError(f"unknown prefix {prefix}")


def overlaps(search: Span, target: Span) -> bool:
    return not lower(target.high, search.low) and not lower(search.high, target.low)


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


# --- date: https://hl7.org/fhir/R4/search.html#date ---------------------------------------------------

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")
MICROSECOND = timedelta(microseconds=1)


def date_span(text: str) -> Span:
    """The closed UTC range a date, dateTime or instant covers at its precision."""
    found = _DATE.match(text)
    if not found:
        raise OracleError(f"not a FHIR date: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0))
    if fraction:
        start += timedelta(microseconds=int(fraction[1:7].ljust(6, "0")))
    end = _end_of(start, year, month, day, hour, second, fraction)
    offset = _offset(zone)
    return Span((start - offset).replace(tzinfo=UTC), (end - offset).replace(tzinfo=UTC) - MICROSECOND)


def _end_of(start: datetime, *parts: str | None) -> datetime:
    """The first instant after the range that starts at ``start`` with the written precision."""
    _, month, day, hour, second, fraction = parts
    if fraction:
        return start + timedelta(microseconds=10 ** max(0, 6 - len(fraction[1:])))
    if second:
        return start + timedelta(seconds=1)
    if hour:
        return start + timedelta(minutes=1)
    if day:
        return start + timedelta(days=1)
    if month:
        return datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
    return datetime(start.year + 1, 1, 1)


def _offset(zone: str | None) -> timedelta:
    if not zone or zone == "Z":
        return timedelta(0)
    sign = -1 if zone[0] == "-" else 1
    return sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))


def date_spans(value: Any) -> list[Span]:
    """A date/dateTime/instant string, a Period (open ends stay open) or a Timing (its outer limits)."""
    if isinstance(value, str):
        return [date_span(value)]
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:
        start, end = value.get("start"), value.get("end")
        return [Span(date_span(start).low if start else None, date_span(end).high if end else None)]
    events = [date_span(e) for e in value.get("event", ())]
    bounds = (value.get("repeat") or {}).get("boundsPeriod")
    spans = events + (date_spans(bounds) if bounds else [])
    return [Span(min(s.low for s in spans), max(s.high for s in spans))] if spans else []


def approximately(search: Span, approximation: Decimal, now: datetime) -> Span:
    """The search range widened by a fraction of the gap between now and the date."""
    gap = abs(now - search.low)
    margin = timedelta(seconds=float(Decimal(gap.total_seconds()) * approximation))
    return Span(search.low - margin, search.high + margin)


# --- number and quantity: https://hl7.org/fhir/R4/search.html#number, #quantity -----------------------


def number_span(text: str) -> tuple[Decimal, Span]:
    """A search number and its implicit range: half a unit of its last significant digit either side."""
    try:
        number = Decimal(text)
    except InvalidOperation as error:
        raise OracleError(f"not a number: {text!r}") from error
    half = Decimal(5).scaleb(int(number.as_tuple().exponent) - 1)
    return number, Span(number - half, number + half)


def number_matches(prefix: str, text: str, value: Decimal, approximation: Decimal) -> bool:
    """``eq``/``ne`` use the implicit range; other prefixes compare with the exact number."""
    number, span = number_span(text)
    match prefix:
        case "eq":
            return span.low <= value < span.high
        case "ne":
            return not span.low <= value < span.high
        case "gt" | "sa":
            return value > number
        case "lt" | "eb":
            return value < number
        case "ge":
            return value >= number
        case "le":
            return value <= number
        case "ap":
            margin = abs(number) * approximation
            return number - margin <= value <= number + margin or span.low <= value < span.high
    raise OracleError(f"unknown prefix {prefix}")


def quantity_matches(quantity: Any, query: str, approximation: Decimal) -> bool:
    """``[prefix]number|system|code``; with no system the code may match the unit as well."""
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return False
    number, *units = split_escaped(query, "|")
    system, code = (unescape(units[0]), unescape(units[1])) if len(units) == 2 else ("", "")
    if system and (quantity.get("system") != system or quantity.get("code") != code):
        return False
    if not system and code and code not in (quantity.get("code"), quantity.get("unit")):
        return False
    prefix, text = split_prefix(number)
    return number_matches(prefix, text, Decimal(str(quantity["value"])), approximation)


# --- reference: https://hl7.org/fhir/R4/search.html#reference -----------------------------------------


def reference_key(reference: str, base_url: str) -> str | None:
    """``Type/id`` of a literal reference to this server (relative, or absolute under the base)."""
    local = reference.removeprefix(base_url.rstrip("/") + "/")
    found = re.fullmatch(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?", local)
    return f"{found.group(1)}/{found.group(2)}" if found else None


def reference_matches(key: str | None, modifier: str | None, query: str, base_url: str) -> bool:
    """``[id]``, ``[type]/[id]``, an absolute URL, or ``:[type]`` with an id."""
    if key is None:
        return False
    if modifier:
        return key == f"{modifier}/{query}"
    wanted = reference_key(query, base_url)
    return key == wanted if wanted else key.split("/", 1)[1] == query


# --- the corpus and the search ------------------------------------------------------------------------


@dataclass
class Result:
    """What a search should return: matches (in order when sorted) and included resources."""

    matches: list[str]
    includes: set[str] = field(default_factory=set)


class Descending:
    """Wraps a sort value so that ascending order of the wrapper is descending order of the value."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: Descending) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"-{self.value!r}"


@dataclass(frozen=True)
class Include:
    """One ``_include`` or ``_revinclude`` (``Type:param[:target]``), maybe ``:iterate``."""

    spec: str
    reverse: bool
    iterate: bool


@dataclass
class Query:
    """One parsed search: the types searched, the criteria, and the result parameters."""

    types: list[str]
    criteria: Params = field(default_factory=list)
    sort: list[str] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)


class Oracle:
    """Evaluates FHIR searches over a fixed set of resources (as the server stored them)."""

    def __init__(
        self,
        resources: Iterable[Resource],
        spec: Path,
        base_url: str,
        *,
        approximation: Decimal = RECOMMENDED_APPROXIMATION,
        now: datetime | None = None,
    ) -> None:
        self.registry = Registry(spec / "search-parameters.json")
        self.compartments = {
            c["code"]: c["param"]
            for c in json.loads((spec / "compartmentdefinition-patient.json").read_bytes())["resource"]
            if c.get("param")
        }
        self.resources = {f"{r['resourceType']}/{r['id']}": r for r in resources}
        self.base_url = base_url
        self.approximation = approximation
        self.now = now or datetime.now(UTC)
        self._values: dict[tuple[str, str], list[Any]] = {}
        self._pointed: dict[tuple[str, str], set[str]] = {}

    def with_approximation(self, approximation: Decimal) -> Oracle:
        """The same oracle with another ``ap`` width (shares the parsed registry and value cache)."""
        other = object.__new__(Oracle)
        other.__dict__.update(self.__dict__)
        other.approximation = approximation
        return other

    @cached_property
    def by_type(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for key in self.resources:
            grouped.setdefault(key.split("/")[0], []).append(key)
        return grouped

    def of_type(self, resource_type: str) -> list[str]:
        return self.by_type.get(resource_type, [])

    # values of a parameter in a resource

    def values(self, key: str, param: SearchParameter) -> list[Any]:
        cached = self._values.get((key, param.url))
        if cached is None:
            cached = self._values[(key, param.url)] = self.registry.evaluate(param, self.resources[key])
        return cached

    def targets(self, key: str, param: SearchParameter, target_type: str | None = None) -> list[str]:
        """The local resources a reference parameter of a resource points at (present in the corpus)."""
        found = []
        for value in self.values(key, param):
            reference = value.get("reference") if isinstance(value, dict) else value
            target = reference_key(reference, self.base_url) if isinstance(reference, str) else None
            if target in self.resources and (target_type is None or target.startswith(target_type + "/")):
                found.append(target)
        return found

    # searching

    def search(self, path: str, params: Params) -> Result:
        """Evaluate ``GET [base]/[path]?params``: path is a type, ``""`` (all types) or a compartment."""
        query = self.parse(path, params)
        candidates = self.compartment(path) if path.count("/") == 2 else None
        matches = [
            key
            for resource_type in query.types
            for key in self.of_type(resource_type)
            if (candidates is None or key in candidates)
            and all(self.matches(key, name, value) for name, value in query.criteria)
        ]
        if query.sort:
            matches.sort(key=lambda k: self.sort_key(k, query.sort))
        return Result(matches, self.included(matches, query))

    def parse(self, path: str, params: Params) -> Query:
        types = [path.split("/")[-1]] if path else []
        query = Query(types)
        for name, value in params:
            if name == "_type":
                query.types = value.split(",")
            elif name == "_sort":
                query.sort = value.split(",")
            elif name.split(":")[0] in ("_include", "_revinclude"):
                query.includes.append(Include(value, name.startswith("_rev"), name.endswith(":iterate")))
            elif name not in RESULT_PARAMETERS:
                query.criteria.append((name, value))
        return query

    def compartment(self, path: str) -> set[str]:
        """Resources of a type in a Patient compartment, by the R4 CompartmentDefinition's params."""
        compartment_type, compartment_id, resource_type = path.split("/")
        if compartment_type != "Patient":
            raise OracleError("only the Patient compartment is evaluated")
        owner = f"Patient/{compartment_id}"
        members = {owner} if resource_type == "Patient" else set()
        for code in self.compartments.get(resource_type, ()):
            param = self.registry.get(resource_type, code)
            members |= {k for k in self.of_type(resource_type) if owner in self.targets(k, param)}
        return members

    def matches(self, key: str, name: str, value: str) -> bool:
        """Whether one resource satisfies one ``name=value`` criterion (values OR'd)."""
        resource_type = key.split("/")[0]
        if name == "_filter":
            return FilterExpression(value).evaluate(lambda n, o, v: self.filter_test(key, n, o, v))
        if name.startswith("_has:"):
            return key in self.reverse_chain(name, value)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        param = self.registry.get(resource_type, code)
        if dot:
            return any(self.matches(t, rest, value) for t in self.targets(key, param, modifier or None))
        values = self.values(key, param)
        if modifier == "missing":
            return (not values) == (value == "true")
        alternatives = split_escaped(value, ",")
        if modifier == "not":
            return not any(token_matches(v, None, q) for q in alternatives for v in values)
        return any(self.value_matches(key, param, modifier or None, v, q) for q in alternatives for v in values)

    def filter_test(self, key: str, name: str, operator: str, value: str) -> bool:
        """One ``param op value`` of a ``_filter`` (https://hl7.org/fhir/R4/search_filter.html).

        Strings compare normalised (case and accents, as string search does); tokens and references
        ``eq`` as their ordinary match; dates, numbers and quantities take the operator as a prefix.
        """
        head, dot, rest = name.partition(".")
        param = self.registry.get(key.split("/")[0], head)
        if dot:
            return any(self.filter_test(t, rest, operator, value) for t in self.targets(key, param))
        escaped = value.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$")
        if param.type in ("date", "number", "quantity") and operator in PREFIXES:
            return self.matches(key, head, operator + escaped)
        if param.type == "string" and operator in STRING_FILTERS:
            compare_parts = STRING_FILTERS[operator]
            parts = [normalize(p) for v in self.values(key, param) for p in string_parts(v)]
            return any(compare_parts(part, normalize(value)) for part in parts)
        if param.type in ("token", "reference", "uri") and operator in ("eq", "ne"):
            found = self.matches(key, head, escaped)
            return found if operator == "eq" else not found
        raise OracleError(f"_filter {param.type} {operator} is not evaluated")

    def value_matches(self, key: str, param: SearchParameter, modifier: str | None, value: Any, query: str) -> bool:
        match param.type:
            case "string":
                return any(string_matches(part, modifier, unescape(query)) for part in string_parts(value))
            case "token":
                return token_matches(value, modifier, query)
            case "date":
                return self.date_matches(value, query)
            case "quantity":
                return quantity_matches(value, query, self.approximation)
            case "number":
                prefix, text = split_prefix(query)
                return value is not None and number_matches(prefix, text, Decimal(str(value)), self.approximation)
            case "reference":
                return self.reference_value_matches(value, modifier, query)
            case "composite":
                return self.composite_matches(key, param, value, query)
            case "uri":
                return value == unescape(query)
        raise OracleError(f"{param.type} parameters are not evaluated")

    def date_matches(self, value: Any, query: str) -> bool:
        prefix, text = split_prefix(query)
        search = date_span(text)
        if prefix == "ap":
            search = approximately(search, self.approximation, self.now)
        return any(compare(prefix, search, target) for target in date_spans(value))

    def reference_value_matches(self, value: Any, modifier: str | None, query: str) -> bool:
        if modifier == "identifier":
            identifier = value.get("identifier") if isinstance(value, dict) else None
            return identifier is not None and token_matches(identifier, None, query)
        reference = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(reference, str):
            return False
        return reference_matches(reference_key(reference, self.base_url), modifier, unescape(query), self.base_url)

    def composite_matches(self, key: str, param: SearchParameter, item: Any, query: str) -> bool:
        """Every component matches within the same item the composite's expression selected."""
        parts = split_escaped(query, "$")
        if len(parts) != len(param.components):
            raise OracleError(f"{param.code} takes {len(param.components)} components")
        base = param.expression
        for (definition, expression), part in zip(param.components, parts, strict=True):
            component = self.registry.by_url(definition)
            values = evaluate_relative(item, expression, base)
            if not any(self.value_matches(key, component, None, v, part) for v in values):
                return False
        return True

    def reverse_chain(self, name: str, value: str) -> set[str]:
        """``_has:Type:param:rest=value``: what resources of Type matching ``rest`` point at via param."""
        if (name, value) not in self._pointed:
            self._pointed[(name, value)] = self._reverse_chain(name, value)
        return self._pointed[(name, value)]

    def _reverse_chain(self, name: str, value: str) -> set[str]:
        _, source_type, code, rest = name.split(":", 3)
        param = self.registry.get(source_type, code)
        pointed: set[str] = set()
        for source in self.of_type(source_type):
            if self.matches(source, rest, value):
                pointed.update(self.targets(source, param))
        return pointed

    # result parameters

    def sort_key(self, key: str, sort: list[str]) -> SortKey:
        parts: list[Any] = []
        for item in sort:
            descending = item.startswith("-")
            param = self.registry.get(key.split("/")[0], item.lstrip("-"))
            keys = [k for v in self.values(key, param) for k in sort_values(param.type, v, descending)]
            if not keys:
                parts.append((1,))
            else:
                parts.append((0, Descending(max(keys)) if descending else min(keys)))
        return tuple(parts)

    def included(self, matches: list[str], query: Query) -> set[str]:
        """What the includes add: every include follows the matches, ``:iterate`` ones what they add too."""
        matched = set(matches)
        found: set[str] = set().union(*(self.follow(include, matches) for include in query.includes))
        frontier = found - matched
        iterating = [include for include in query.includes if include.iterate]
        while frontier and iterating:
            added = set().union(*(self.follow(include, sorted(frontier)) for include in iterating))
            frontier = added - found - matched
            found |= frontier
        return found - matched

    def follow(self, include: Include, keys: list[str]) -> set[str]:
        """The resources the given ones point at (``_include``) or that point at them (``_revinclude``)."""
        found: set[str] = set()
        wanted = set(keys)
        for source_type, param, target_type in self.include_params(include.spec):
            if include.reverse:
                found.update(s for s in self.of_type(source_type) if wanted & set(self.targets(s, param, target_type)))
            else:
                for key in (k for k in keys if k.startswith(source_type + "/")):
                    found.update(self.targets(key, param, target_type))
        return found

    def include_params(self, spec: str) -> Iterator[tuple[str, SearchParameter, str | None]]:
        """(source type, parameter, target type) for ``Type:param[:target]``, ``Type:*`` or ``*``."""
        source, _, rest = spec.partition(":")
        code, _, target = rest.partition(":")
        if source == "*" or code == "*":
            types = list(self.by_type) if source == "*" else [source]
            for resource_type in types:
                for param in self.registry.references_of(resource_type):
                    yield resource_type, param, None
            return
        yield source, self.registry.get(source, code), target or None


def evaluate_relative(item: Any, expression: str, base: str) -> list[Any]:
    """A composite component's expression, evaluated on one item its composite selected."""
    from fhirpathpy import evaluate

    return list(evaluate(item, {"expression": expression, "base": base}, {}, FHIRPATH_MODEL))


def sort_values(param_type: str, value: Any, descending: bool) -> list[Any]:
    """What a value sorts by: normalised strings, date range ends, numbers, codes."""
    match param_type:
        case "string":
            return [normalize(p) for p in string_parts(value)]
        case "date":
            return [(s.high if descending else s.low) for s in date_spans(value) if (s.high if descending else s.low)]
        case "token":
            return [t.code for t in token_codes(value) if t.code]
        case "number" | "quantity":
            number = value.get("value") if isinstance(value, dict) else value
            return [Decimal(str(number))] if number is not None else []
    raise OracleError(f"sorting on {param_type} parameters is not evaluated")


# --- _filter: https://hl7.org/fhir/R4/search_filter.html ----------------------------------------------

_FILTER_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+)')
FILTER_PREFIXES = {"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}


class FilterExpression:
    """A parsed ``_filter`` value: ``and`` binds tighter than ``or``; ``not(...)`` and parentheses."""

    def __init__(self, text: str) -> None:
        self.tokens = [t for t in _FILTER_TOKEN.findall(text) if t]
        self.position = 0
        self.tree = self._or()
        if self.position != len(self.tokens):
            raise OracleError(f"unparsed _filter tail: {self.tokens[self.position :]}")

    def evaluate(self, test: Callable[[str, str, str], bool]) -> bool:
        """The filter's truth for one resource, given how to test one ``param op value``."""
        return _evaluate_filter(self.tree, test)

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _or(self) -> Any:
        node = self._and()
        while self._peek() == "or":
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> Any:
        node = self._factor()
        while self._peek() == "and":
            self._take()
            node = ("and", node, self._factor())
        return node

    def _factor(self) -> Any:
        token = self._take()
        if token == "not" and self._peek() == "(":
            self._take()
            inner = self._or()
            self._take()
            return ("not", inner)
        if token == "(":
            inner = self._or()
            self._take()
            return inner
        operator, value = self._take(), self._take()
        return ("test", token, operator, json.loads(value) if value.startswith('"') else value)


def _evaluate_filter(node: Any, test: Callable[[str, str, str], bool]) -> bool:
    match node:
        case ("or", left, right):
            return _evaluate_filter(left, test) or _evaluate_filter(right, test)
        case ("and", left, right):
            return _evaluate_filter(left, test) and _evaluate_filter(right, test)
        case ("not", inner):
            return not _evaluate_filter(inner, test)
        case ("test", name, operator, value):
            return bool(test(name, operator, value))
    raise OracleError(f"bad _filter node {node}")


STRING_FILTERS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda part, value: part == value,
    "ne": lambda part, value: part != value,
    "sw": lambda part, value: part.startswith(value),
    "ew": lambda part, value: part.endswith(value),
    "co": lambda part, value: value in part,
}
