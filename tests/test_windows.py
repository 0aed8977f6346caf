"""Send windows and the text hours, with fixed instants (invariant 5)."""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from campaigns.sequences.windows import Window, is_allowed, next_allowed

NY = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
TEXT_HOURS = Window.every_day(8, 21)
WEEKDAYS_9_17 = Window(frozenset(range(5)), time(9, 0), time(17, 0))


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_inside_window_is_unchanged():
    t = utc(2026, 3, 2, 15, 0)  # 10:00 New York, Monday
    assert next_allowed(t, WEEKDAYS_9_17, NY) == t


def test_text_held_overnight_to_eight_local_new_york():
    t = utc(2026, 3, 3, 3, 0)  # 22:00 Monday in New York (EST, UTC-5)
    assert not is_allowed(t, TEXT_HOURS, NY)
    assert next_allowed(t, TEXT_HOURS, NY) == utc(2026, 3, 3, 13, 0)  # 08:00 EST


def test_across_spring_forward_eight_local_is_an_hour_earlier_in_utc():
    # DST starts Sunday 8 March 2026 at 02:00 in New York.
    before = next_allowed(utc(2026, 3, 7, 3, 0), TEXT_HOURS, NY)  # Fri 22:00 EST
    after = next_allowed(utc(2026, 3, 9, 2, 0), TEXT_HOURS, NY)  # Sun 22:00 EDT
    assert before == utc(2026, 3, 7, 13, 0)  # 08:00 EST = 13:00 UTC
    assert after == utc(2026, 3, 9, 12, 0)  # 08:00 EDT = 12:00 UTC
    assert after.astimezone(NY).hour == 8


def test_the_night_of_the_change_itself():
    t = utc(2026, 3, 8, 6, 30)  # 01:30 EST on the morning of the change
    result = next_allowed(t, TEXT_HOURS, NY)
    assert result == utc(2026, 3, 8, 12, 0)
    assert result.astimezone(NY).strftime("%H:%M %Z") == "08:00 EDT"


def test_kolkata_half_hour_offset():
    t = utc(2026, 3, 2, 16, 0)  # 21:30 in Kolkata (UTC+5:30): too late to text
    assert not is_allowed(t, TEXT_HOURS, KOLKATA)
    assert next_allowed(t, TEXT_HOURS, KOLKATA) == utc(2026, 3, 3, 2, 30)  # 08:00 IST


def test_twenty_to_nine_is_allowed_and_nine_pm_is_not():
    assert is_allowed(utc(2026, 3, 3, 1, 59), TEXT_HOURS, NY)  # 20:59 EST
    assert not is_allowed(utc(2026, 3, 3, 2, 0), TEXT_HOURS, NY)  # 21:00 EST
    assert is_allowed(utc(2026, 3, 2, 13, 0), TEXT_HOURS, NY)  # 08:00 EST
    assert not is_allowed(utc(2026, 3, 2, 12, 59), TEXT_HOURS, NY)  # 07:59 EST


def test_last_seconds_before_nine_pm_are_still_allowed():
    t = utc(2026, 3, 3, 1, 59, 30)  # 20:59:30 EST
    assert next_allowed(t, TEXT_HOURS, NY) == t
    assert next_allowed(utc(2026, 3, 3, 2, 0, 1), TEXT_HOURS, NY) == utc(2026, 3, 3, 13, 0)


def test_campaign_window_narrows_text_hours_never_widens():
    wide = Window.every_day(6, 23)
    narrowed = wide.intersect(TEXT_HOURS)
    assert (narrowed.start, narrowed.end) == (time(8), time(21))
    weekday = WEEKDAYS_9_17.intersect(TEXT_HOURS)
    assert weekday == WEEKDAYS_9_17


def test_weekend_skipped_by_weekday_window():
    t = utc(2026, 3, 6, 23, 0)  # Friday 18:00 New York
    assert next_allowed(t, WEEKDAYS_9_17, NY) == utc(2026, 3, 9, 13, 0)  # Monday 09:00 EDT


def test_window_with_no_days_in_common_is_none():
    sat = Window(frozenset({5}), time(9), time(12))
    assert sat.intersect(WEEKDAYS_9_17) is None


@pytest.mark.parametrize("hour", range(24))
def test_result_is_always_inside_the_window(hour):
    t = utc(2026, 11, 1, hour, 17)  # the autumn change in New York
    result = next_allowed(t, TEXT_HOURS, NY)
    assert result >= t and is_allowed(result, TEXT_HOURS, NY)
