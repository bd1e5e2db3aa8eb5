"""The ``_filter`` parser: https://hl7.org/fhir/R4/search_filter.html (examples from that page)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest

from fhir_server.errors import BadRequest
from fhir_server.search.filter import (
    COMPARISON_OPERATORS,
    MAX_COMPARISONS,
    MAX_NESTING,
    And,
    Comparison,
    FilterNode,
    Not,
    Or,
    PathSegment,
    parse_filter,
)


def cmp(path: str, op: str, value: str) -> Comparison:
    """A comparison on a dotted path without bracketed filters."""
    return Comparison(tuple(PathSegment(name) for name in path.split(".")), op, value)


A, B, C = cmp("a", "eq", "1"), cmp("b", "eq", "2"), cmp("c", "eq", "3")
HAS_COMPONENT = cmp("type", "eq", "has-component")


def related(then: str | None, op: str, value: str) -> Comparison:
    """``related[type eq has-component](.then)? op value``."""
    path = (PathSegment("related", HAS_COMPONENT),) + ((PathSegment(then),) if then else ())
    return Comparison(path, op, value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name eq peter", cmp("name", "eq", "peter")),
        ('name co "pet"', cmp("name", "co", "pet")),
        (
            'given eq "peter" and birthdate ge 2014-10-10',
            And(cmp("given", "eq", "peter"), cmp("birthdate", "ge", "2014-10-10")),
        ),
        ("code eq http://loinc.org|1234-5", cmp("code", "eq", "http://loinc.org|1234-5")),
        ('subject.name co "pet"', cmp("subject.name", "co", "pet")),
        (
            'code eq http://loinc.org|1234-5 and subject.name co "pet"',
            And(cmp("code", "eq", "http://loinc.org|1234-5"), cmp("subject.name", "co", "pet")),
        ),
        ('related[type eq "has-component"].target pr true', related("target", "pr", "true")),
        ("related[type eq has-component].target pr false", related("target", "pr", "false")),
        ("related[type eq has-component].target re Observation/4", related("target", "re", "Observation/4")),
        ("related[type eq has-component] pr true", related(None, "pr", "true")),
        (
            "code-value-quantity eq code$loinc|12907-2,value$ge150|http://unitsofmeasure.org|mmol/L",
            cmp("code-value-quantity", "eq", "code$loinc|12907-2,value$ge150|http://unitsofmeasure.org|mmol/L"),
        ),
        ("_lastUpdated gt 2020-01-01T00:00:00+01:00", cmp("_lastUpdated", "gt", "2020-01-01T00:00:00+01:00")),
        ("value-quantity lt 5.4", cmp("value-quantity", "lt", "5.4")),
        ('not (name eq "x")', Not(cmp("name", "eq", "x"))),
        ("not(a eq 1)", Not(A)),
        ("not eq 1", cmp("not", "eq", "1")),
        ("and eq 1 and or eq 2", And(cmp("and", "eq", "1"), cmp("or", "eq", "2"))),
        ("(a eq 1)", A),
        ("(a eq 1 or b eq 2) and c eq 3", And(Or(A, B), C)),
        ("a eq 1 or b eq 2 and c eq 3", Or(A, And(B, C))),
        ("a eq 1 and b eq 2 or c eq 3", Or(And(A, B), C)),
        ("a eq 1 and b eq 2 and c eq 3", And(And(A, B), C)),
        ("a eq 1 or b eq 2 or c eq 3", Or(Or(A, B), C)),
        ("a eq 1 and (b eq 2 or c eq 3)", And(A, Or(B, C))),
        ("not (a eq 1 or b eq 2) and c eq 3", And(Not(Or(A, B)), C)),
        ("((a eq 1))", A),
    ],
)
def test_parses_spec_examples_and_precedence(text: str, expected: FilterNode) -> None:
    assert parse_filter(text) == expected


def test_bracketed_filter_can_hold_a_logical_expression() -> None:
    inner = Or(cmp("type", "eq", "has-member"), cmp("type", "eq", "derived-from"))
    expected = Comparison((PathSegment("related", inner), PathSegment("target")), "re", "Observation/4")
    assert parse_filter("related[type eq has-member or type eq derived-from].target re Observation/4") == expected


@pytest.mark.parametrize(
    "text",
    [
        "  a eq 1   and\tb eq 2  ",
        "a   eq   1 and b eq 2",
        "( a eq 1 and b eq 2 )",
        "a eq 1\nand b eq 2",
    ],
)
def test_tolerates_extra_whitespace(text: str) -> None:
    assert parse_filter(text) == And(A, B)


@pytest.mark.parametrize("op", COMPARISON_OPERATORS)
def test_every_operator_is_case_insensitive(op: str) -> None:
    value = "true" if op == "pr" else "x"
    assert parse_filter(f"a {op.upper()} {value}") == cmp("a", op, value)


def test_keywords_are_case_insensitive() -> None:
    assert parse_filter("a eq 1 AND b eq 2 Or NOT (c eq 3)") == Or(And(A, B), Not(C))


@pytest.mark.parametrize(("value", "expected"), [("TRUE", "true"), ('"false"', "false"), ("False", "false")])
def test_present_value_is_normalised(value: str, expected: str) -> None:
    assert parse_filter(f"a pr {value}") == cmp("a", "pr", expected)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\\"', "\\"),
        ('""', ""),
        ('"peter and paul or not (x)"', "peter and paul or not (x)"),
        ('"a]b)c"', "a]b)c"),
        (r'"line\nbreak\t\/"', "line\nbreak\t/"),
        (r'"caf\u00e9"', "café"),
        (r'"\ud83d\ude00"', "\U0001f600"),
    ],
)
def test_string_values_are_unquoted_and_unescaped(literal: str, expected: str) -> None:
    assert parse_filter(f"name eq {literal}") == cmp("name", "eq", expected)


def test_quotes_inside_a_token_are_kept() -> None:
    assert parse_filter('a eq x"y') == cmp("a", "eq", 'x"y')


def error_of(text: str) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse_filter(text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a filter expression at position 0, found end of text"),
        ("   ", "expected a filter expression at position 0, found end of text"),
        ("name foo peter", "expected a comparison operator (eq, ne, co, "),
        ("name foo peter", "at position 5, found 'foo'"),
        ("name eqx peter", "found 'eqx'"),
        ("name", "expected a space and then a comparison operator at position 4, found end of text"),
        ("name eq", "expected a space and then a value at position 7, found end of text"),
        ("name eq ", "expected a value at position 8, found end of text"),
        ('name eq"x"', "expected a space and then a value at position 7, found '\"x\"'"),
        ("name eq )", "expected a value at position 8, found ')'"),
        ("name:exact eq x", "':' (a modifier) is not allowed in a search parameter name, at position 4"),
        ("subject.name:exact eq x", "':' (a modifier) is not allowed in a search parameter name, at position 12"),
        ("na$me eq 1", "expected a space and then a comparison operator at position 2, found '$me'"),
        ("1a eq 2", "expected a search parameter name at position 0, found '1a'"),
        ("a. eq 1", "expected a search parameter name at position 2, found a space"),
        ("a eq 1 and", "expected a search parameter name at position 10, found end of text"),
        ("()", "expected a search parameter name at position 1, found ')'"),
        (
            "(name eq x",
            "expected 'and', 'or' or ')' at position 10, found end of text (the '(' at position 0 is not closed)",
        ),
        ("not (a eq 1", "(the '(' at position 4 is not closed)"),
        ("(a eq 1 b eq 2)", "expected 'and', 'or' or ')' at position 8, found 'b'"),
        ("related[type eq x.target pr true", "found 'pr' (the '[' at position 7 is not closed)"),
        ("(a eq 1]", "expected 'and', 'or' or ')' at position 7, found ']'"),
        ("name eq x)", "unmatched ')' at position 9"),
        ("name eq x]", "unmatched ']' at position 9"),
        ("name eq peter foo", "expected 'and', 'or' or the end of the filter at position 14, found 'foo'"),
        ("a eq 1 andb eq 2", "found 'andb'"),
        ('name eq "peter', "unterminated string starting at position 8"),
        ('name eq "pet\\', "unterminated string starting at position 8"),
        ('name eq "a\\qb"', "expected an escape"),
        ('name eq "a\\qb"', "at position 11, found 'qb\"'"),
        ('name eq "\\u12"', "expected four hex digits after '\\u' at position 10"),
        ('name eq "\\ud800"', "expected '\\u' and a low surrogate after a high surrogate at position 15"),
        ('name eq "\\ud800\\u0041"', "expected a low surrogate after a high surrogate at position 15"),
        ('name eq "\\udc00"', "expected a high surrogate before a low one at position 9"),
        ("a pr maybe", "expected 'true' or 'false' after 'pr' at position 5, found 'maybe'"),
        ("a eq " + "x" * 30 + " b", "found 'b'"),
        ("a eq 1 " + "y" * 30, "found '" + "y" * 20 + "...'"),
    ],
)
def test_syntax_errors_say_what_was_expected_and_where(text: str, message: str) -> None:
    error = error_of(text)
    assert message in error.diagnostics
    assert error.diagnostics.startswith("_filter: ")


def test_errors_are_400_on_the_filter_parameter() -> None:
    error = error_of("name foo peter")
    assert error.status == 400
    assert [issue.expression for issue in error.issues] == [["_filter"]]
    assert error.issues[0].code == "invalid"
    assert error.outcome()["issue"][0]["expression"] == ["_filter"]


def parens(depth: int) -> str:
    return "(" * depth + "a eq 1" + ")" * depth


def brackets(depth: int) -> str:
    text = "a eq 1"
    for _ in range(depth):
        text = f"a[{text}] pr true"
    return text


def nots(depth: int) -> str:
    return "not (" * depth + "a eq 1" + ")" * depth


@pytest.mark.parametrize("build", [parens, brackets, nots])
def test_nesting_is_limited(build: Callable[[int], str]) -> None:
    parse_filter(build(MAX_NESTING))
    assert f"nesting deeper than {MAX_NESTING} levels" in error_of(build(MAX_NESTING + 1)).diagnostics


@pytest.mark.parametrize("text", ["(" * 100_000, "not (" * 50_000, "a[" * 50_000, parens(5_000)])
def test_pathological_nesting_is_a_bad_request_not_a_recursion_error(text: str) -> None:
    assert "nesting deeper than" in error_of(text).diagnostics


def test_number_of_comparisons_is_limited() -> None:
    parse_filter(" and ".join(["a eq 1"] * MAX_COMPARISONS))
    error = error_of(" or ".join(["a eq 1"] * (MAX_COMPARISONS + 1)))
    assert f"more than {MAX_COMPARISONS} comparisons" in error.diagnostics


def test_random_input_only_ever_raises_bad_request() -> None:
    alphabet = ["a", "eq", "pr", "and", "or", "not", "(", ")", "[", "]", '"', "\\", ".", ":", " ", "1", "true", "u"]
    rng = random.Random(4711)
    parsed = 0
    for attempt in range(5000):
        separator = " " if attempt % 2 else ""
        text = separator.join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        with contextlib.suppress(BadRequest):
            assert isinstance(parse_filter(text), Comparison | And | Or | Not)
            parsed += 1
    assert parsed > 0
