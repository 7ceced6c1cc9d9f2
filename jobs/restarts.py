"""How long to wait before restarting a process that exited: long enough not to spin on one that exits
as soon as it starts, short for one that ran fine for a while."""

from __future__ import annotations

HEALTHY_AFTER = 10.0  # seconds: a process that exits later than this ran fine; its delay starts over


class CrashLoop:
    """The restart delays of a process (or of the processes of a pool): `first` after a healthy run,
    doubling with each exit in a row that comes within HEALTHY_AFTER of its start, up to `ceiling`."""

    def __init__(self, first: float, ceiling: float):
        self.first, self.ceiling = first, ceiling
        self.quick_exits = 0

    def delay(self, lived: float) -> float:
        """Seconds to wait before restarting a process that exited after running `lived` seconds."""
        self.quick_exits = 0 if lived > HEALTHY_AFTER else self.quick_exits + 1
        return min(self.ceiling, self.first * 2 ** min(self.quick_exits, 16))
