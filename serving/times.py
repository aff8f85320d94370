"""Times from query parameters, in UTC: one place that refuses the ones UTC cannot hold.

A time with an offset can fall outside the years 1-9999 once converted to UTC (0001-01-01T00:00:00+05:00,
9999-12-31T23:59:59-05:00), and a day's end can be past 9999-12-31; Python raises OverflowError there,
which used to escape as a 500. Every route that takes a time converts it here: 422 invalid_period.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from serving.db import as_utc
from serving.errors import ApiError


def utc_param(value: datetime | None, name: str) -> datetime | None:
    """`value` in UTC (a naive time is UTC); 422 invalid_period when UTC has no such time."""
    try:
        return as_utc(value)
    except (OverflowError, ValueError) as exc:
        raise ApiError(
            422, "invalid_period", f"{name}={value.isoformat()} is outside the years 1-9999 in UTC"
        ) from exc


def day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, UTC)


def day_after(d: date) -> datetime | None:
    """The start of the day after `d` in UTC, an exclusive end; None (no end) after 9999-12-31."""
    try:
        return day_start(d) + timedelta(days=1)
    except OverflowError:
        return None
