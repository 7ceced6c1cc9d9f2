"""When a recurring schedule fires: a cron expression in an IANA time zone, or a fixed interval.

Pure functions of time (epoch seconds in, epoch seconds out); nothing here reads a clock.

Daylight saving time follows the rules of cron users' expectations, in wall-clock time of the zone:
- a local time skipped by spring-forward (02:30 on a day that jumps from 02:00 to 03:00) fires once, at
  the first valid instant after it (the moment of the jump);
- a local time repeated by fall-back fires once, at its first occurrence.
Intervals (`every`) are real elapsed time, aligned to multiples of the interval since the epoch, so
`every 5m` fires at :00, :05, ... whatever the zone.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from .durations import format_duration, parse_duration
from .errors import InvalidSchedule, JobsError

MAX_INTERVAL = 3650 * 86400  # ten years: every fire time stays a date (before the year 10000)
# The last fire time shown: a day before the calendar ends, so that it is a date in every zone.
LAST_INSTANT = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp()) - 1


@dataclass(frozen=True)
class Timing:
    """A validated cron expression (5 fields) or interval in whole seconds, with its time zone."""

    cron: str | None = None
    every: int | None = None
    tz: str = "UTC"

    @classmethod
    def parse(
        cls, cron: str | None = None, every: str | float | None = None, tz: str | None = None
    ) -> Timing:
        """Validate the definition; raise InvalidSchedule with one readable line when it is wrong."""
        if (cron is None) == (every is None):
            raise InvalidSchedule("give either a cron expression or an interval (every), not both or neither")
        zone = tz or "UTC"
        if not isinstance(zone, str):
            raise InvalidSchedule(f"time zone {tz!r} is not text (use an IANA name such as Europe/Berlin)")
        _zone(zone)
        if cron is not None:
            if not isinstance(cron, str):
                raise InvalidSchedule(f"cron expression {cron!r} is not text")
            cron = " ".join(cron.split())
            _refuse_drawn_fields(cron)
            if len(cron.split()) != 5 or not croniter.is_valid(cron):
                raise InvalidSchedule(
                    f"{cron!r} is not a valid cron expression (5 fields: min hour day month weekday)"
                )
            timing = cls(cron=cron, tz=zone)
            try:
                timing.next_after(0)
            except CroniterBadDateError:
                raise InvalidSchedule(
                    f"cron expression {cron!r} matches no date, so it never fires"
                ) from None
            return timing
        seconds = _interval(every)
        return cls(every=seconds, tz=zone)

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.tz)

    def describe(self) -> str:
        """The definition as a user wrote it, e.g. "cron 0 0 1 * * (Europe/Berlin)" or "every 30s"."""
        if self.cron:
            return f"cron {self.cron} ({self.tz})"
        return f"every {format_duration(self.every, exact=True)}"

    def next_after(self, after: float) -> int:
        """The first fire time strictly after the instant `after`."""
        if self.every:
            return (int(after) // self.every + 1) * self.every
        zone = self.zone
        local = datetime.fromtimestamp(int(after), zone).replace(tzinfo=None)
        candidates = copy.copy(_parsed(self.cron))
        candidates.set_current(local)
        while True:
            instant = _instant(candidates.get_next(datetime), zone)
            if instant > after:
                return instant

    def last_before(self, moment: int, since: int) -> int:
        """The last fire time before the whole second `moment`, given `since`, a fire time before it.
        Found by bisection: about log2(moment - since) steps, however many fires lie between."""
        low, high = since, moment - 1
        while low < high:  # the first second after which the next fire is `moment` or later
            middle = (low + high) // 2
            if self.next_after(middle) >= moment:
                high = middle
            else:
                low = middle + 1
        return low

    def upcoming(self, after: float, count: int) -> list[int]:
        """The next `count` fire times after `after`; fewer when the calendar ends first (LAST_INSTANT)."""
        fires, moment = [], after
        while len(fires) < count:
            try:
                moment = self.next_after(moment)
            except (ValueError, OverflowError):  # a cron fire after the year 9999: no datetime holds it
                break
            if moment > LAST_INSTANT:
                break
            fires.append(moment)
        return fires


def until_next_multiple(now: float, period: float) -> float:
    """Seconds from `now` to the next multiple of `period` (both epoch seconds). Fire times and due times
    are whole seconds, so a loop that sleeps this long, with `period` a divisor of one second, looks for
    them just after they come."""
    return period - now % period


def _refuse_drawn_fields(cron: str) -> None:
    """InvalidSchedule for croniter's random (R) and hashed (H) fields. R is drawn anew at each parse, so
    every scheduler process would fire at its own times; H needs a hash id. No month or weekday name
    starts with either letter."""
    if any(part[0] in "RrHh" for part in cron.split()):
        raise InvalidSchedule(
            f"cron expression {cron!r}: random (R) and hashed (H) fields are not supported (each "
            "scheduler process would draw its own times); write the values out"
        )


@functools.lru_cache(maxsize=1024)
def _parsed(cron: str) -> croniter:
    """`cron` parsed, to copy: parsing it costs far more than the search for a fire time."""
    return croniter(cron)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory, not a zone
        raise InvalidSchedule(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None


def _interval(every: str | float) -> int:
    try:
        if isinstance(every, bool):
            raise TypeError("a flag is not a duration")
        seconds = parse_duration(every) if isinstance(every, str) else float(every)
    except (ValueError, TypeError, JobsError):
        raise InvalidSchedule(f"interval {every!r} is not a duration such as 30s, 5m or 1h") from None
    if not math.isfinite(seconds) or seconds < 1 or seconds != int(seconds):
        raise InvalidSchedule(f"interval {every!r} must be a whole number of seconds, at least 1s")
    if seconds > MAX_INTERVAL:
        raise InvalidSchedule(f"interval {every!r} is longer than {MAX_INTERVAL // 86400}d")
    return int(seconds)


def _instant(local: datetime, zone: ZoneInfo) -> int:
    """Epoch seconds of the naive wall-clock time `local` in `zone`: its first occurrence when fall-back
    repeats it, the moment of the jump when spring-forward skips it."""
    first = local.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local:
        return int(first.timestamp())
    # Skipped: the two readings of `local` bracket the jump; find its first instant by bisection.
    low, high = sorted((int(local.replace(tzinfo=zone, fold=1).timestamp()), int(first.timestamp())))
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= local:
            high = middle
        else:
            low = middle + 1
    return low
