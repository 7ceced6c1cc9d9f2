"""Times as RQ writes them in a job's hash: "2026-11-27T01:02:03.456789Z", UTC and fixed width, so that
byte order is time order. Written and read without RQ's `strftime` and `strptime`, which cost several
times as much where the enqueue, the take and a job's end make and read them."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(at: datetime) -> str:
    """`at` as RQ's `utcformat` writes a time in UTC (a naive `at` is taken as UTC, as RQ takes it)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """A time as RQ writes it (with or without the fraction), in UTC; ValueError for anything else."""
    if not text.endswith("Z"):
        raise ValueError(f"not a time as RQ writes it: {text!r}")
    return datetime.fromisoformat(text)
