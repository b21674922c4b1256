"""The desk's business calendar: when the servicedesk is open, for SLA due times.

The model. A *business day* is a local date whose weekday is one of the office-hours
weekdays, that is not a public holiday of the country and not one of the configured
closing days. On a business day the desk is open from ``OfficeHours.start`` up to, not
including, ``OfficeHours.end``, local time (Europe/Amsterdam unless configured). *Open
time* is the real time that passes while the desk is open; SLA durations count only open
time (PROCESS.md, "Response and SLA"). Contracts with 24/7 support count all time instead:
`add_calendar_time`.

Each business day is one interval ``[open, close)``, built from the local date and clock
times and converted to UTC day by day, so zoneinfo settles daylight saving time: office
hours of 08:30-17:00 give 8.5 hours of open time on the switch Sundays of March and
October too. Only office hours that contain the switch itself (02:00-03:00) are an hour
longer or shorter that day, because open time is real time.

Every datetime taken must be timezone-aware (naive ones raise ValueError) and every
datetime returned is aware and in UTC. The work goes day by day, never minute by minute,
and the public holidays are computed once per year.

Public holidays come from the ``holidays`` package (PUBLIC category, names in Dutch), and
the calendar follows it as it is. For NL (holidays 0.109) that includes Goede vrijdag,
although in Dutch business practice Good Friday is not a general day off, and includes
Bevrijdingsdag (5 May) only in lustrum years (2025, 2030, ...), as many collective labour
agreements do. A closing day adds what the package lacks, such as Bevrijdingsdag in
other years; `open_on_holidays` names the package's holidays the desk works on anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

# Without it the package picks the language from the process locale (LANG=C gives English).
HOLIDAY_LANGUAGE = "nl"
# More days than this without a business day in a row means the configuration is wrong:
# stop searching instead of looping for ever.
MAX_CLOSED_DAYS = 2 * 366
ONE_DAY = timedelta(days=1)
NO_TIME = timedelta(0)


@dataclass(frozen=True)
class OfficeHours:
    """When the desk is open on a business day: ``[start, end)`` local time, on these weekdays."""

    start: time = time(8, 30)
    end: time = time(17, 0)
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday=0

    def __post_init__(self) -> None:
        if not self.weekdays:
            raise ValueError("office hours need at least one weekday")
        if not self.weekdays <= frozenset(range(7)):
            raise ValueError(f"weekdays are 0 (Monday) to 6 (Sunday), not {sorted(self.weekdays)}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("office hours are local clock times, without a tzinfo")
        if self.start >= self.end:
            raise ValueError("office hours must end after they start, on the same day")


DEFAULT_OFFICE_HOURS = OfficeHours()


def add_calendar_time(start: datetime, duration: timedelta) -> datetime:
    """For 24/7 contracts: the moment ``duration`` of real time after ``start``, in UTC."""
    return _utc(start) + _not_negative(duration)


class BusinessCalendar:
    """Office hours on business days in one timezone, for SLA due times."""

    def __init__(
        self,
        hours: OfficeHours = DEFAULT_OFFICE_HOURS,
        *,
        timezone: str = "Europe/Amsterdam",
        closing_days: Iterable[date] = (),
        country: str = "NL",
        open_on_holidays: Iterable[str] = (),
    ) -> None:
        self.hours = hours
        self.timezone = _zone(timezone)
        self.closing_days = frozenset(_plain_date(day) for day in closing_days)
        self.country = country
        # Holidays (by name, any case) the desk works on anyway, e.g. "Goede vrijdag".
        self.open_on_holidays = frozenset(name.casefold() for name in open_on_holidays)
        _check_country(country)
        self._holidays_by_year: dict[int, dict[date, str]] = {}

    def is_business_day(self, day: date) -> bool:
        """Whether the desk opens on this local date at all."""
        day = _plain_date(day)
        return (
            day.weekday() in self.hours.weekdays
            and day not in self.closing_days
            and day not in self._public_holidays(day.year)
        )

    def holiday_name(self, day: date) -> str | None:
        """The public holiday on this date, in Dutch (``None`` too for a mere closing day)."""
        return self._public_holidays(_plain_date(day).year).get(day)

    def is_open(self, at: datetime) -> bool:
        """Whether the desk is open at this moment."""
        at = _utc(at)
        day = self._local_date(at)
        if not self.is_business_day(day):
            return False
        opens, closes = self._open_interval(day)
        return opens <= at < closes

    def next_opening(self, at: datetime) -> datetime:
        """``at`` itself when the desk is open then, else the next moment it opens."""
        opens, _ = next(self._open_spans_from(_utc(at)))
        return opens

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The first moment by which ``duration`` of open time has passed since ``start``.

        A deadline that uses up a day exactly is that day's closing time (Friday 16:59 plus
        one minute is Friday 17:00), not the next opening. A zero duration gives ``start``.
        """
        start, remaining = _utc(start), _not_negative(duration)
        if not remaining:
            return start
        spans = self._open_spans_from(start)
        while True:
            opens, closes = next(spans)
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """The open time in ``[start, end)``; zero when ``end`` is not after ``start``."""
        start, end = _utc(start), _utc(end)
        total = NO_TIME
        day, last_day = self._local_date(start), self._local_date(end)
        while day <= last_day:
            if self.is_business_day(day):
                opens, closes = self._open_interval(day)
                total += max(NO_TIME, min(closes, end) - max(opens, start))
            day += ONE_DAY
        return total

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The deadline for "within ``days`` working days" of ``start``.

        Counting begins at ``next_opening(start)`` (``start`` itself when the desk is open).
        The deadline is that local clock time on the ``days``-th business day after the
        day counting begins, clamped into that day's office hours: Friday 16:59 plus one
        working day is Monday 16:59. When counting begins exactly at the opening of a day,
        the deadline is the closing time of the business day before the one the clock rule
        gives, the same moment in open time, but not a morning later: a ticket of Saturday
        (counted from Monday 08:30) plus one working day is Monday 17:00, not Tuesday 08:30.
        With the same office hours every business day this is
        ``add_business_time(start, days * length of a business day)``. Zero days gives
        ``next_opening(start)``.
        """
        if days < 0:
            raise ValueError(f"a negative number of working days: {days}")
        begin = self.next_opening(start)
        if days == 0:
            return begin
        local_begin = begin.astimezone(self.timezone)
        business_days = self._business_days_from(local_begin.date())
        if local_begin.time() == self.hours.start:
            _, closes = self._open_interval(_nth(business_days, days - 1))
            return closes
        target_day = _nth(business_days, days)
        opens, closes = self._open_interval(target_day)
        return min(max(self._at_local(target_day, local_begin.time()), opens), closes)

    def _public_holidays(self, year: int) -> dict[date, str]:
        found = self._holidays_by_year.get(year)
        if found is None:
            found = {
                day: name
                for day, name in holidays.country_holidays(
                    self.country, years=year, expand=False, language=HOLIDAY_LANGUAGE
                ).items()
                if name.casefold() not in self.open_on_holidays
            }
            self._holidays_by_year[year] = found
        return found

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.timezone).date()

    def _at_local(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, tzinfo=self.timezone).astimezone(UTC)

    def _open_interval(self, day: date) -> tuple[datetime, datetime]:
        """The office hours of a local date, ``[open, close)`` in UTC."""
        opens = self._at_local(day, self.hours.start)
        # Only office hours that start in a DST gap could close "before" they open.
        return opens, max(opens, self._at_local(day, self.hours.end))

    def _business_days_from(self, day: date) -> Iterator[date]:
        """The business days from ``day`` (included) on; raises when none come for years."""
        closed_in_a_row = 0
        while True:
            if self.is_business_day(day):
                closed_in_a_row = 0
                yield day
            else:
                closed_in_a_row += 1
                if closed_in_a_row > MAX_CLOSED_DAYS:
                    raise ValueError(f"the desk is closed for more than two years up to {day}")
            day += ONE_DAY

    def _open_spans_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The open intervals from ``moment`` (UTC) on, the first one cut to begin there."""
        for day in self._business_days_from(self._local_date(moment)):
            opens, closes = self._open_interval(day)
            if closes > moment:
                yield max(opens, moment), closes


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass a timezone-aware one")
    return at.astimezone(UTC)


def _not_negative(duration: timedelta) -> timedelta:
    if duration < NO_TIME:
        raise ValueError(f"a negative duration: {duration}")
    return duration


def _plain_date(day: date) -> date:
    # A datetime is a date too, but never equal to one: it would miss every closing day.
    if isinstance(day, datetime):
        raise TypeError(f"a date, not a datetime: {day.isoformat()}")
    return day


def _nth(days: Iterator[date], n: int) -> date:
    """The element at index ``n`` of ``days`` (``n=0``: the first)."""
    return next(islice(days, n, None))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def _check_country(country: str) -> None:
    try:
        holidays.country_holidays(country)
    except NotImplementedError as exc:
        raise ValueError(f"no public holidays known for country {country!r}") from exc
