"""Quantity search parameters: index extraction (https://hl7.org/fhir/R4/search.html#quantity).

A row is (param, system, code, unit, value, low, high). A Quantity (and Age, Duration, Distance, Count)
covers the range its precision implies; a Money is indexed with the ISO 4217 system and its currency as
the code; a Range covers low..high with the units of its bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_server.search.params.index_rows import clip
from fhir_server.search.params.number import NumberRange, precision_range, range_bounds, value_clause
from resources.registry import SearchParam

QUANTITY_TYPES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"})
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
SYSTEM_LENGTH, CODE_LENGTH = 512, 128
# (system, code, unit)
Units = tuple[str | None, str | None, str | None]
# (system, code, unit, value, low, high)
QuantityValues = tuple[str | None, str | None, str | None, float, float, float]


def units(quantity: dict[str, Any]) -> Units:
    """The (system, code, unit) of a Quantity, cut to the column lengths."""
    return (
        clip(quantity.get("system"), SYSTEM_LENGTH),
        clip(quantity.get("code"), CODE_LENGTH),
        clip(quantity.get("unit"), CODE_LENGTH),
    )


def quantity_values(quantity: dict[str, Any]) -> tuple[Units, NumberRange | None]:
    """A Quantity's units and its value range (None without a numeric value)."""
    return units(quantity), precision_range(quantity.get("value"))


def money_values(money: dict[str, Any]) -> tuple[Units, NumberRange | None]:
    """A Money's units (system ISO 4217, code the currency) and its value range."""
    currency = clip(money.get("currency"), CODE_LENGTH)
    return (CURRENCY_SYSTEM if currency else None, currency, None), precision_range(money.get("value"))


def range_values(range_value: dict[str, Any]) -> tuple[Units, NumberRange | None]:
    """A Range's units (from its low bound, else its high bound) and its low..high bounds."""
    bound = next((b for b in (range_value.get("low"), range_value.get("high")) if isinstance(b, dict)), {})
    return units(bound), range_bounds(range_value)


VALUES_BY_TYPE: dict[str, Callable[[dict[str, Any]], tuple[Units, NumberRange | None]]] = {
    **dict.fromkeys(QUANTITY_TYPES, quantity_values),
    "Money": money_values,
    "Range": range_values,
}


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[QuantityValues]:
    """The (system, code, unit, value, low, high) row values of a Quantity-like value, Money or Range.

    SampledData (also allowed by Observation's value-quantity) is not indexed.
    """
    values_of = VALUES_BY_TYPE.get(fhir_type)
    if values_of is None or not isinstance(value, dict):
        return []
    value_units, number = values_of(value)
    return [] if number is None else [(*value_units, *number)]


def clause(table: FromClause, modifier: str | None, value: str) -> ColumnElement[bool]:
    """``[prefix]number|system|code``; the code also matches the human unit when no system is given."""
    number, _, units = value.partition("|")
    system, _, code = units.partition("|") if units else ("", "", "")
    conditions = [value_clause(table.c.value, number)]
    if system:
        conditions.append(table.c.system == system)
    if code:
        conditions.append(table.c.code == code if system else or_(table.c.code == code, table.c.unit == code))
    return and_(*conditions)
