"""Fire times: cron expressions in IANA zones across real DST transitions, fixed intervals, bad input.
Time is passed in; nothing sleeps."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from jobs.errors import InvalidSchedule
from jobs.firetimes import Timing, until_next_multiple


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def local(fires: list[int], zone: str) -> list[str]:
    return [datetime.fromtimestamp(fire, ZoneInfo(zone)).isoformat() for fire in fires]


def utc(fires: list[int]) -> list[str]:
    return [datetime.fromtimestamp(fire, UTC).strftime("%m-%dT%H:%M") for fire in fires]


def test_monthly_at_midnight_in_berlin():
    timing = Timing.parse(cron="0 0 1 * *", tz="Europe/Berlin")
    assert local(timing.upcoming(at("2026-11-26T12:00:00+00:00"), 3), "Europe/Berlin") == [
        "2026-12-01T00:00:00+01:00",
        "2027-01-01T00:00:00+01:00",
        "2027-02-01T00:00:00+01:00",
    ]


@pytest.mark.parametrize(
    ("zone", "day", "jump_local"),
    [
        ("Europe/Berlin", "2026-03-29", "2026-03-29T03:00:00+02:00"),
        ("America/New_York", "2026-03-08", "2026-03-08T03:00:00-04:00"),
    ],
)
def test_a_time_skipped_by_spring_forward_fires_once_at_the_jump(zone, day, jump_local):
    timing = Timing.parse(cron="30 2 * * *", tz=zone)  # 02:30 does not exist on `day`
    fires = timing.upcoming(at(f"{day}T00:00:00+00:00") - 86400, 3)
    assert local(fires, zone)[1] == jump_local
    assert [local(fires, zone)[i][11:16] for i in (0, 2)] == ["02:30", "02:30"]  # the days around it


@pytest.mark.parametrize(
    ("zone", "day", "first_utc", "next_utc"),
    [
        ("Europe/Berlin", "2026-10-25", "10-25T00:30", "10-26T01:30"),
        ("America/New_York", "2026-11-01", "11-01T05:30", "11-02T06:30"),
    ],
)
def test_a_time_repeated_by_fall_back_fires_once_at_its_first_occurrence(zone, day, first_utc, next_utc):
    timing = Timing.parse(cron="30 1 * * *" if zone == "America/New_York" else "30 2 * * *", tz=zone)
    fires = timing.upcoming(at(f"{day}T00:00:00+00:00") - 3600 * 6, 2)
    assert utc(fires) == [first_utc, next_utc]


def test_every_few_minutes_across_the_berlin_gap_fires_once_for_the_whole_gap():
    timing = Timing.parse(cron="*/20 * * * *", tz="Europe/Berlin")
    fires = timing.upcoming(at("2026-03-29T00:30:00+00:00"), 4)
    assert local(fires, "Europe/Berlin") == [
        "2026-03-29T01:40:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00, 02:20 and 02:40 do not exist: one fire at the jump
        "2026-03-29T03:20:00+02:00",
        "2026-03-29T03:40:00+02:00",
    ]


def test_every_few_minutes_across_the_berlin_repeat_does_not_fire_the_hour_twice():
    timing = Timing.parse(cron="*/30 * * * *", tz="Europe/Berlin")
    fires = timing.upcoming(at("2026-10-24T23:45:00+00:00"), 4)
    assert local(fires, "Europe/Berlin") == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00",  # the repeated 02:00-02:59 (+01:00) does not fire again
        "2026-10-25T03:30:00+01:00",
    ]


def test_next_after_a_fire_time_is_strictly_later_even_inside_the_repeated_hour():
    timing = Timing.parse(cron="*/30 * * * *", tz="Europe/Berlin")
    inside_second_pass = at("2026-10-25T02:10:00+01:00")
    assert local([timing.next_after(inside_second_pass)], "Europe/Berlin") == ["2026-10-25T03:00:00+01:00"]
    fire = timing.next_after(at("2026-11-26T10:00:00+00:00"))
    assert timing.next_after(fire) == fire + 1800


def test_the_last_fire_before_a_moment_across_the_berlin_gap():
    timing = Timing.parse(cron="*/20 * * * *", tz="Europe/Berlin")
    since = timing.next_after(at("2026-03-01T00:00:00+00:00"))
    jump = int(at("2026-03-29T03:00:00+02:00"))
    assert local([timing.last_before(jump, since)], "Europe/Berlin") == ["2026-03-29T01:40:00+01:00"]
    assert local([timing.last_before(jump + 1, since)], "Europe/Berlin") == ["2026-03-29T03:00:00+02:00"]
    assert timing.last_before(timing.next_after(since), since) == since


def test_intervals_are_aligned_to_the_epoch_and_ignore_the_zone():
    timing = Timing.parse(every="5m", tz="America/New_York")
    start = at("2026-11-01T05:31:10+00:00")
    assert utc(timing.upcoming(start, 3)) == ["11-01T05:35", "11-01T05:40", "11-01T05:45"]
    assert Timing.parse(every="1s").next_after(100.5) == 101


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "not a valid cron expression"),
        ({"cron": "* * *"}, "not a valid cron expression"),
        ({"cron": "* * * * * *"}, "not a valid cron expression"),
        ({"every": "0.5s"}, "at least 1s"),
        ({"every": "soon"}, "not a duration"),
        ({"every": 0}, "at least 1s"),
        ({"every": float("nan")}, "at least 1s"),
        ({"every": float("inf")}, "at least 1s"),
        ({"every": True}, "not a duration"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "* * * * *", "every": "5s"}, "either a cron expression or an interval"),
        ({}, "either a cron expression or an interval"),
    ],
)
def test_bad_timings_are_refused_with_one_clear_line(options, message):
    with pytest.raises(InvalidSchedule, match=message) as error:
        Timing.parse(**options)
    assert "\n" not in str(error.value)


def test_random_and_hashed_cron_fields_are_refused_as_each_process_would_draw_its_own_times():
    for cron in ("R * * * *", "0 r(1-5) * * *", "R/15 * * * *", "H * * * *", "0 H(0-5) * * *"):
        with pytest.raises(InvalidSchedule, match=r"random \(R\) and hashed \(H\) fields"):
            Timing.parse(cron=cron)
    assert Timing.parse(cron="0 0 * mar thu").cron == "0 0 * mar thu"  # names are not drawn


@pytest.mark.parametrize("options", [{"every": "3650d"}, {"cron": "0 0 29 2 *", "tz": "Pacific/Kiritimati"}])
def test_upcoming_fire_times_end_with_the_calendar_as_dates_in_every_zone(options):
    fires = Timing.parse(**options).upcoming(at("9970-01-01T00:00:00+00:00"), 1000)
    assert 0 < len(fires) < 1000
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):  # the first and the last zone to reach a date
        assert datetime.fromtimestamp(fires[-1], ZoneInfo(zone)).year > 9990


def test_loops_on_multiples_of_a_divisor_of_a_second_wake_just_after_each_whole_second():
    second = 1_800_000_000
    assert [until_next_multiple(second + offset, 0.2) for offset in (0.05, 0.5, 0.999)] == pytest.approx(
        [0.15, 0.1, 0.001], abs=1e-6
    )
    assert until_next_multiple(second + 0.25, 1) == pytest.approx(0.75, abs=1e-6)
