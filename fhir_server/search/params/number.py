"""Number search parameters: index extraction (https://hl7.org/fhir/R4/search.html#number).

A number stands for the range its precision implies: ``100`` is 99.5 to 100.5, ``1.50`` is 1.495 to
1.505. JSON parsed into floats keeps no trailing zeros, so ``1.50`` read that way counts as ``1.5``;
pass ``decimal.Decimal`` values (``parse_float=Decimal``) to keep the precision as written.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_server.search.prefixes import split_prefix
from resources.registry import SearchParam

# (value, low, high)
NumberRange = tuple[float, float, float]


def is_number(value: Any) -> bool:
    """True for a JSON number (int, float or Decimal, not bool), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return isinstance(value, int) or math.isfinite(value)


def precision_range(value: Any) -> NumberRange | None:
    """The value with the half-unit of its last significant digit either side; None if not a number."""
    if not is_number(value):
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(repr(value))
        half = Decimal(5).scaleb(int(number.as_tuple().exponent) - 1)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return float(number), float(number - half), float(number + half)


def range_bounds(range_value: Any) -> NumberRange | None:
    """A Range as (value, low, high): low/high are its bounds (open ends infinite), value the low end."""
    if not isinstance(range_value, dict):
        return None
    low, high = _bound(range_value.get("low")), _bound(range_value.get("high"))
    if low is None:
        return None if high is None else (high, -math.inf, high)
    return low, low, math.inf if high is None else high


def _bound(quantity: Any) -> float | None:
    """The value of a Range bound (a SimpleQuantity), if it has a number."""
    value: Any = quantity.get("value") if isinstance(quantity, dict) else None
    return float(value) if is_number(value) else None


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[NumberRange]:
    """The (value, low, high) row values of a decimal/integer or a Range."""
    number = range_bounds(value) if fhir_type == "Range" else precision_range(value)
    return [] if number is None else [number]


def clause(table: FromClause, modifier: str | None, value: str) -> ColumnElement[bool]:
    """A ``[prefix]number``: ``eq`` matches values within the search value's precision range."""
    return value_clause(table.c.value, value)


def value_clause(column: Any, value: str) -> ColumnElement[bool]:
    """A ``[prefix]number`` search value against a numeric column (numbers and quantities)."""
    prefix, text = split_prefix(value)
    try:
        parsed = precision_range(Decimal(text))
    except InvalidOperation:
        parsed = None
    if parsed is None:
        raise ValueError(f"'{text}' is not a number")
    return number_clause(prefix, column, *parsed)


def number_clause(prefix: str, column: Any, value: float, low: float, high: float) -> ColumnElement[bool]:
    """https://hl7.org/fhir/R4/search.html#number"""
    match prefix:
        case "eq":
            return and_(column >= low, column < high)
        case "ne":
            return or_(column < low, column >= high)
        case "gt" | "sa":
            return column > value
        case "lt" | "eb":
            return column < value
        case "ge":
            return column >= value
        case "le":
            return column <= value
        case _:
            low, high = sorted((value * 0.9, value * 1.1))
            return and_(column >= low, column <= high)
