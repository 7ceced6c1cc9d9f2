"""Human durations ("30s", "5m", "1h", "2d", or plain seconds) to seconds."""

from __future__ import annotations

import math
import re

from .errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: str | int | float) -> float:
    """Return the number of seconds `value` stands for; raise ConfigError if it is not a duration."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not value >= 0:  # NaN too
            raise ConfigError(f"duration must not be negative: {value}")
        if math.isinf(value):
            raise ConfigError(f"duration {value!r} is too long")
        return float(value)
    match = _PATTERN.match(str(value))
    if not match:
        raise ConfigError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h, 2d)")
    number, unit = match.groups()
    seconds = float(number) * _UNITS[unit or "s"]
    if math.isinf(seconds):
        raise ConfigError(f"duration {value!r} is too long")
    return seconds


def format_duration(seconds: float, exact: bool = False) -> str:
    """Return a short human form of `seconds` ("1h 5m", "42s", "350 ms"): its two largest units, or every
    unit when `exact` ("1h 5m 30s")."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    seconds = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts if exact else parts[:2])
