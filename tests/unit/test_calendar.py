"""The desk's business calendar: office hours, Dutch public holidays, DST, SLA due times."""

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.calendar import (
    BusinessCalendar,
    OfficeHours,
    add_calendar_time,
)

AMS = ZoneInfo("Europe/Amsterdam")
EVERY_DAY = OfficeHours(weekdays=frozenset(range(7)))
HOURS = timedelta(hours=1)
DAY_OF_OPEN_TIME = timedelta(hours=8, minutes=30)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=AMS)


@pytest.fixture
def desk() -> BusinessCalendar:
    return BusinessCalendar()


# Construction


def test_office_hours_without_weekdays_are_refused() -> None:
    with pytest.raises(ValueError, match="weekday"):
        OfficeHours(weekdays=frozenset())


def test_a_weekday_outside_monday_to_sunday_is_refused() -> None:
    with pytest.raises(ValueError, match="weekdays"):
        OfficeHours(weekdays=frozenset({7}))


def test_office_hours_that_end_before_they_start_are_refused() -> None:
    with pytest.raises(ValueError, match="end after"):
        OfficeHours(start=time(17), end=time(8, 30))


def test_an_unknown_country_is_refused() -> None:
    with pytest.raises(ValueError, match="XX"):
        BusinessCalendar(country="XX")


def test_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        BusinessCalendar(timezone="Mars/Olympus")


# Public holidays, as the holidays package has them for NL


def test_koningsdag_2026_is_monday_27_april(desk: BusinessCalendar) -> None:
    assert date(2026, 4, 27).weekday() == 0
    assert desk.holiday_name(date(2026, 4, 27)) == "Koningsdag"
    assert not desk.is_business_day(date(2026, 4, 27))
    assert desk.is_business_day(date(2026, 4, 28))


def test_koningsdag_2025_moves_to_saturday_26_april_as_the_27th_is_a_sunday(
    desk: BusinessCalendar,
) -> None:
    assert desk.holiday_name(date(2025, 4, 26)) == "Koningsdag"
    assert desk.holiday_name(date(2025, 4, 27)) is None


def test_hemelvaartsdag_2026_thursday_14_may_is_skipped(desk: BusinessCalendar) -> None:
    assert desk.holiday_name(date(2026, 5, 14)) == "Hemelvaartsdag"
    due = desk.add_business_time(local(2026, 5, 13, 16), DAY_OF_OPEN_TIME)
    assert due == local(2026, 5, 15, 16)


def test_every_dutch_public_holiday_of_2026_is_known(desk: BusinessCalendar) -> None:
    names = {
        day: desk.holiday_name(day)
        for day in (date(2026, 1, 1) + timedelta(days=n) for n in range(365))
        if desk.holiday_name(day)
    }
    assert names == {
        date(2026, 1, 1): "Nieuwjaarsdag",
        date(2026, 4, 3): "Goede vrijdag",
        date(2026, 4, 5): "Eerste paasdag",
        date(2026, 4, 6): "Tweede paasdag",
        date(2026, 4, 27): "Koningsdag",
        date(2026, 5, 14): "Hemelvaartsdag",
        date(2026, 5, 24): "Eerste pinksterdag",
        date(2026, 5, 25): "Tweede pinksterdag",
        date(2026, 12, 25): "Eerste kerstdag",
        date(2026, 12, 26): "Tweede kerstdag",
    }


def test_goede_vrijdag_is_a_holiday_because_the_package_says_so(desk: BusinessCalendar) -> None:
    assert not desk.is_business_day(date(2026, 4, 3))
    assert not desk.is_business_day(date(2027, 3, 26))


def test_bevrijdingsdag_is_a_holiday_only_in_lustrum_years(desk: BusinessCalendar) -> None:
    assert desk.holiday_name(date(2025, 5, 5)) == "Bevrijdingsdag"
    assert desk.holiday_name(date(2030, 5, 5)) == "Bevrijdingsdag"
    assert desk.holiday_name(date(2026, 5, 5)) is None
    assert desk.is_business_day(date(2026, 5, 5))


def test_holiday_sets_are_computed_once_per_year(
    desk: BusinessCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    years: list[int] = []
    real = holidays.country_holidays

    def counting(*args: Any, **kwargs: Any) -> holidays.HolidayBase:
        years.append(kwargs["years"])
        return real(*args, **kwargs)

    monkeypatch.setattr(holidays, "country_holidays", counting)
    desk.add_business_time(local(2026, 12, 1, 9), 200 * HOURS)
    desk.business_time_between(local(2026, 1, 1), local(2027, 12, 31))
    assert sorted(years) == [2026, 2027]


# Office hours and openings


def test_the_desk_opens_at_0830_and_closes_at_1700_local(desk: BusinessCalendar) -> None:
    assert not desk.is_open(local(2026, 6, 1, 8, 29))
    assert desk.is_open(local(2026, 6, 1, 8, 30))
    assert desk.is_open(local(2026, 6, 1, 16, 59))
    assert not desk.is_open(local(2026, 6, 1, 17))


def test_is_open_takes_any_timezone(desk: BusinessCalendar) -> None:
    assert desk.is_open(datetime(2026, 6, 1, 6, 30, tzinfo=UTC))  # 08:30 CEST
    assert not desk.is_open(datetime(2026, 1, 5, 7, 0, tzinfo=UTC))  # 08:00 CET


def test_next_opening_while_open_is_that_moment_in_utc(desk: BusinessCalendar) -> None:
    opening = desk.next_opening(local(2026, 6, 2, 10, 15))
    assert opening == local(2026, 6, 2, 10, 15)
    assert opening.tzinfo is UTC


def test_the_next_opening_after_friday_closing_is_monday_0830(desk: BusinessCalendar) -> None:
    assert desk.next_opening(local(2026, 10, 23, 17)) == local(2026, 10, 26, 8, 30)


def test_a_ticket_arriving_on_saturday_is_counted_from_monday_0830(desk: BusinessCalendar) -> None:
    saturday = local(2026, 10, 24, 11)
    assert desk.next_opening(saturday) == local(2026, 10, 26, 8, 30)
    assert desk.add_business_time(saturday, HOURS) == local(2026, 10, 26, 9, 30)
    assert desk.add_working_days(saturday, 1) == local(2026, 10, 26, 17)


# Adding open time


def test_friday_1659_plus_one_minute_is_friday_1700(desk: BusinessCalendar) -> None:
    due = desk.add_business_time(local(2026, 10, 23, 16, 59), timedelta(minutes=1))
    assert due == local(2026, 10, 23, 17)


def test_friday_1659_plus_two_minutes_is_monday_0831(desk: BusinessCalendar) -> None:
    due = desk.add_business_time(local(2026, 10, 23, 16, 59), timedelta(minutes=2))
    assert due == local(2026, 10, 26, 8, 31)


def test_christmas_eve_ticket_lands_on_monday_28_december(desk: BusinessCalendar) -> None:
    due = desk.add_business_time(local(2026, 12, 24, 16), DAY_OF_OPEN_TIME)
    assert due == local(2026, 12, 28, 16)


def test_forty_business_hours_are_a_working_week_and_a_bit(desk: BusinessCalendar) -> None:
    due = desk.add_business_time(local(2026, 6, 1, 8, 30), 40 * HOURS)
    assert due == local(2026, 6, 5, 14, 30)
    assert due.tzinfo is UTC


def test_adding_nothing_gives_the_start_itself_even_outside_hours(desk: BusinessCalendar) -> None:
    assert desk.add_business_time(local(2026, 10, 24, 11), timedelta(0)) == local(2026, 10, 24, 11)


def test_a_negative_duration_is_refused(desk: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="negative"):
        desk.add_business_time(local(2026, 6, 1, 9), -HOURS)


# Working days


def test_friday_1659_plus_one_working_day_is_monday_1659(desk: BusinessCalendar) -> None:
    assert desk.add_working_days(local(2026, 10, 23, 16, 59), 1) == local(2026, 10, 26, 16, 59)


def test_working_days_skip_public_holidays(desk: BusinessCalendar) -> None:
    # Thursday before Easter: Goede vrijdag and Tweede paasdag are not working days.
    assert desk.add_working_days(local(2026, 4, 2, 10), 1) == local(2026, 4, 7, 10)


def test_working_days_counted_from_an_opening_end_at_a_closing(desk: BusinessCalendar) -> None:
    assert desk.add_working_days(local(2026, 6, 1, 8, 30), 1) == local(2026, 6, 1, 17)
    assert desk.add_working_days(local(2026, 6, 1, 8, 30), 5) == local(2026, 6, 5, 17)


def test_zero_working_days_is_the_next_opening(desk: BusinessCalendar) -> None:
    assert desk.add_working_days(local(2026, 6, 1, 18), 0) == local(2026, 6, 2, 8, 30)


def test_a_negative_number_of_working_days_is_refused(desk: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="negative"):
        desk.add_working_days(local(2026, 6, 1, 9), -1)


# Daylight saving time


def test_a_duration_spanning_the_march_switch_weekend(desk: BusinessCalendar) -> None:
    # 29 March 2026: 02:00 CET becomes 03:00 CEST.
    start = local(2026, 3, 27, 12)
    assert desk.add_business_time(start, DAY_OF_OPEN_TIME) == local(2026, 3, 30, 12)
    assert desk.business_time_between(start, local(2026, 3, 30, 12)) == DAY_OF_OPEN_TIME
    assert desk.add_working_days(start, 1) == local(2026, 3, 30, 12)


def test_a_duration_spanning_the_october_switch_weekend(desk: BusinessCalendar) -> None:
    # 25 October 2026: 03:00 CEST becomes 02:00 CET.
    start = local(2026, 10, 23, 12)
    assert desk.add_business_time(start, DAY_OF_OPEN_TIME) == local(2026, 10, 26, 12)
    assert desk.business_time_between(start, local(2026, 10, 26, 12)) == DAY_OF_OPEN_TIME
    assert desk.add_working_days(start, 1) == local(2026, 10, 26, 12)


@pytest.mark.parametrize("switch_day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_a_sunday_of_office_hours_on_a_switch_day_has_eight_and_a_half_hours(
    switch_day: date,
) -> None:
    desk = BusinessCalendar(EVERY_DAY)
    midnight = datetime.combine(switch_day, time(0), tzinfo=AMS)
    next_midnight = datetime.combine(switch_day + timedelta(days=1), time(0), tzinfo=AMS)
    assert desk.is_business_day(switch_day)
    assert desk.business_time_between(midnight, next_midnight) == DAY_OF_OPEN_TIME
    opens = desk.next_opening(midnight)
    assert opens.astimezone(AMS).time() == time(8, 30)
    assert desk.add_business_time(opens, DAY_OF_OPEN_TIME).astimezone(AMS).time() == time(17)


def test_office_hours_containing_the_switch_count_real_time() -> None:
    night_shift = BusinessCalendar(OfficeHours(start=time(0), end=time(6), weekdays=frozenset({6})))
    march = night_shift.business_time_between(local(2026, 3, 29), local(2026, 3, 30))
    october = night_shift.business_time_between(local(2026, 10, 25), local(2026, 10, 26))
    assert (march, october) == (5 * HOURS, 7 * HOURS)


# Open time between two moments


def test_business_time_between_a_working_week(desk: BusinessCalendar) -> None:
    assert desk.business_time_between(local(2026, 6, 1), local(2026, 6, 8)) == 5 * DAY_OF_OPEN_TIME


def test_business_time_between_reversed_moments_is_zero(desk: BusinessCalendar) -> None:
    assert desk.business_time_between(local(2026, 6, 2, 12), local(2026, 6, 1, 12)) == timedelta(0)


def test_business_time_between_excludes_the_end(desk: BusinessCalendar) -> None:
    start = local(2026, 6, 1, 16, 59)
    assert desk.business_time_between(start, local(2026, 6, 1, 17)) == timedelta(minutes=1)
    assert desk.business_time_between(start, local(2026, 6, 2, 8, 30)) == timedelta(minutes=1)


# Closing days


def test_a_closing_day_moves_the_christmas_deadline() -> None:
    desk = BusinessCalendar(closing_days=[date(2026, 12, 28)])
    assert not desk.is_business_day(date(2026, 12, 28))
    assert desk.holiday_name(date(2026, 12, 28)) is None
    due = desk.add_business_time(local(2026, 12, 24, 16), DAY_OF_OPEN_TIME)
    assert due == local(2026, 12, 29, 16)


def test_bevrijdingsdag_outside_lustrum_years_can_be_a_closing_day() -> None:
    desk = BusinessCalendar(closing_days=[date(2026, 5, 5)])
    assert desk.add_working_days(local(2026, 5, 4, 10), 1) == local(2026, 5, 6, 10)


def test_a_year_of_closing_days_is_waited_out() -> None:
    year = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    desk = BusinessCalendar(closing_days=year)
    assert desk.next_opening(local(2026, 1, 1)) == local(2027, 1, 4, 8, 30)


def test_closing_everything_for_more_than_two_years_is_refused() -> None:
    three_years = [date(2026, 1, 1) + timedelta(days=n) for n in range(3 * 366)]
    desk = BusinessCalendar(closing_days=three_years)
    with pytest.raises(ValueError, match="two years"):
        desk.next_opening(local(2026, 1, 1))
    with pytest.raises(ValueError, match="two years"):
        desk.add_business_time(local(2026, 1, 1), HOURS)
    assert desk.business_time_between(local(2026, 1, 1), local(2026, 2, 1)) == timedelta(0)


def test_a_datetime_is_not_taken_for_a_date(desk: BusinessCalendar) -> None:
    with pytest.raises(TypeError):
        desk.is_business_day(local(2026, 6, 1, 9))


# Naive datetimes

NAIVE = datetime(2026, 6, 1, 9)


@pytest.mark.parametrize(
    "call",
    [
        lambda desk: desk.is_open(NAIVE),
        lambda desk: desk.next_opening(NAIVE),
        lambda desk: desk.add_business_time(NAIVE, HOURS),
        lambda desk: desk.business_time_between(NAIVE, local(2026, 6, 2)),
        lambda desk: desk.business_time_between(local(2026, 5, 1), NAIVE),
        lambda desk: desk.add_working_days(NAIVE, 1),
        lambda desk: add_calendar_time(NAIVE, HOURS),
    ],
)
def test_naive_datetimes_are_refused(
    desk: BusinessCalendar, call: Callable[[BusinessCalendar], object]
) -> None:
    with pytest.raises(ValueError, match="naive"):
        call(desk)


# 24/7 contracts


def test_calendar_time_is_plain_utc_arithmetic_across_the_switch() -> None:
    due = add_calendar_time(local(2026, 3, 28, 12), 24 * HOURS)
    assert due == local(2026, 3, 29, 13)
    assert due.tzinfo is UTC


# Properties

ZONES = st.sampled_from(
    [AMS, UTC, ZoneInfo("America/New_York"), timezone(timedelta(hours=5, minutes=30))]
)
STARTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=ZONES
)


@settings(max_examples=300, deadline=None)
@given(start=STARTS, duration=st.timedeltas(min_value=timedelta(0), max_value=200 * HOURS))
def test_business_time_between_is_the_inverse_of_add_business_time(
    start: datetime, duration: timedelta
) -> None:
    desk = BusinessCalendar()
    due = desk.add_business_time(start, duration)
    assert due.tzinfo is UTC
    assert due >= start
    assert desk.business_time_between(start, due) == duration


@settings(max_examples=300, deadline=None)
@given(start=STARTS, days=st.integers(min_value=0, max_value=30))
def test_working_days_are_whole_days_of_open_time(start: datetime, days: int) -> None:
    desk = BusinessCalendar()
    due = desk.add_working_days(start, days)
    assert due == desk.add_business_time(desk.next_opening(start), days * DAY_OF_OPEN_TIME)
    assert desk.business_time_between(start, due) == days * DAY_OF_OPEN_TIME


def test_a_holiday_the_desk_works_on_is_a_business_day() -> None:
    from datetime import date

    from gateway.domain.calendar import BusinessCalendar

    good_friday = date(2026, 4, 3)
    assert not BusinessCalendar().is_business_day(good_friday)
    working = BusinessCalendar(open_on_holidays=["Goede Vrijdag"])
    assert working.is_business_day(good_friday)
    assert working.holiday_name(good_friday) is None
    assert not working.is_business_day(date(2026, 4, 6))  # Tweede paasdag stays
