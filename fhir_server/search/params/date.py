"""Date search parameters: index extraction (https://hl7.org/fhir/R4/search.html#date).

A value is indexed as the range of instants it covers, naive UTC: ``1980`` is 1980-01-01T00:00:00 to
1980-12-31T23:59:59.999999; a dateTime without a timezone is taken as UTC. A Period runs from its start
to its end (open ends go to the ends of time); a Timing covers each event and its repeat.boundsPeriod.
Values that don't parse are skipped.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_server.search.prefixes import split_prefix
from resources.registry import SearchParam

START_OF_TIME = datetime(1, 1, 1)
END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999)
DateRange = tuple[datetime, datetime]
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _year_month_day_range(text: str) -> DateRange:
    """The range of a date with year, year-month or year-month-day precision."""
    year = int(text[:4])
    if len(text) == 4:
        return datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
    month = int(text[5:7])
    if len(text) == 7:
        last_day = calendar.monthrange(year, month)[1]
        return datetime(year, month, 1), datetime(year, month, last_day, 23, 59, 59, 999999)
    day = datetime(year, month, int(text[8:10]))
    return day, day.replace(hour=23, minute=59, second=59, microsecond=999999)


def _precision(text: str) -> timedelta:
    """The width of the range a time of day covers: its last written digit (minute, second, fraction)."""
    clock = text[text.index("T") + 1 :].rstrip("Z").split("+")[0].split("-")[0]
    if clock.count(":") < 2:
        return timedelta(minutes=1) if ":" in clock else timedelta(hours=1)
    if "." not in clock:
        return timedelta(seconds=1)
    digits = min(len(clock.split(".", 1)[1]), 6)
    return timedelta(microseconds=10 ** (6 - digits))


def _to_utc(moment: datetime) -> datetime:
    """A parsed dateTime as naive UTC (naive input is already UTC), clamped to the ends of time."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return START_OF_TIME if moment.year == 1 else END_OF_TIME


def date_range(text: Any) -> DateRange | None:
    """The UTC range a date, dateTime or instant covers; None when it doesn't parse."""
    return _parsed_range(text) if isinstance(text, str) and len(text) >= 4 else None


@lru_cache(maxsize=65536)
def _parsed_range(text: str) -> DateRange | None:
    """date_range of a string, cached: resources written together share their dates."""
    try:
        if "T" not in text:
            return _year_month_day_range(text) if _DATE.match(text) else None
        low = datetime.fromisoformat(text)
        high = low + (_precision(text) - timedelta(microseconds=1))
    except (ValueError, OverflowError):
        return None
    return _to_utc(low), _to_utc(high)


def period_range(period: Any) -> DateRange | None:
    """The range of a Period; a missing start or end is open to the ends of time."""
    if not isinstance(period, dict):
        return None
    start, end = date_range(period.get("start")), date_range(period.get("end"))
    if start is None and end is None:
        return None
    low, high = start[0] if start else START_OF_TIME, end[1] if end else END_OF_TIME
    return (low, high) if low <= high else None


def timing_ranges(timing: Any) -> list[DateRange | None]:
    """The ranges of a Timing: each event, and the repeat.boundsPeriod."""
    if not isinstance(timing, dict):
        return []
    ranges = [date_range(event) for event in timing.get("event") or ()]
    repeat = timing.get("repeat")
    if isinstance(repeat, dict):
        ranges.append(period_range(repeat.get("boundsPeriod")))
    return ranges


RANGES_BY_TYPE: dict[str, Callable[[Any], list[DateRange | None]]] = {
    "date": lambda value: [date_range(value)],
    "dateTime": lambda value: [date_range(value)],
    "instant": lambda value: [date_range(value)],
    "Period": lambda value: [period_range(value)],
    "Timing": timing_ranges,
}


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[DateRange]:
    """The (low, high) row values of a date, dateTime, instant, Period or Timing."""
    ranges = RANGES_BY_TYPE.get(fhir_type)
    return [] if ranges is None else [r for r in ranges(value) if r is not None]


def clause(table: FromClause, modifier: str | None, value: str) -> ColumnElement[bool]:
    """A ``[prefix]date`` against the indexed [low, high] ranges."""
    return _compare(table.c.low, table.c.high, value)


def point_clause(column: ColumnElement[datetime], value: str) -> ColumnElement[bool]:
    """A ``[prefix]date`` against a single instant column (``_lastUpdated``)."""
    return _compare(column, column, value)


def _compare(low: Any, high: Any, value: str) -> ColumnElement[bool]:
    prefix, text = split_prefix(value)
    found = date_range(text)
    if found is None:
        raise ValueError(f"'{text}' is not a FHIR date, dateTime or instant")
    return range_clause(prefix, low, high, *found)


def range_clause(prefix: str, low: Any, high: Any, start: Any, end: Any) -> ColumnElement[bool]:
    """How a target range [low, high] relates to a search range [start, end] for each prefix.

    https://hl7.org/fhir/R4/search.html#prefix: ``ge`` is "the range above the search value overlaps the
    target, or the search range contains it" (``le`` mirrors it); ``ap`` here: the ranges overlap.
    """
    match prefix:
        case "eq":
            return and_(low >= start, high <= end)
        case "ne":
            return or_(low < start, high > end)
        case "gt":
            return high > end
        case "lt":
            return low < start
        case "ge":
            return or_(high > end, and_(low >= start, high <= end))
        case "le":
            return or_(low < start, and_(low >= start, high <= end))
        case "sa":
            return low > end
        case "eb":
            return high < start
        case _:
            return and_(low <= end, high >= start)
