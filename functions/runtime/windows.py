"""How an entity-stats window resolves to rollup buckets (minute and hour lists, functions/runtime/rollup.py).

Windows end at the rollup watermark (every comment committed before it is counted) and start at a bucket
boundary at or before ``watermark - window``, so an answer covers at least the window asked for:

* up to one hour: minute buckets from the minute of ``watermark - window`` to the minute of the watermark
  (e.g. ``1h`` covers 60 to 61 minutes);
* longer: hour buckets from the hour of ``watermark - window`` up to the hours the worker has merged, then
  minute buckets to the watermark (``24h`` covers 24 to 25 hours, from about 84 lists instead of 1,440).

Shapes::

    w = resolve(timedelta(hours=1), watermark, hours_merged_before)
    w.start, w.end                    # what the answer reports as window_start / window_end
    w.minute_start, w.minute_end      # minute buckets with minute_start <= bucket < minute_end
    w.hour_start, w.hour_end          # hour buckets with hour_start <= bucket < hour_end (may be empty)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ResolvedWindow:
    start: datetime
    end: datetime
    minute_start: datetime
    minute_end: datetime
    hour_start: datetime
    hour_end: datetime


def _floor(at: datetime, unit: timedelta) -> datetime:
    at = at.astimezone(UTC)
    if unit == HOUR:
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(second=0, microsecond=0)


def resolve(window: timedelta, watermark: datetime, hours_merged_before: datetime) -> ResolvedWindow:
    """The buckets that answer ``window`` (> 0) ending at ``watermark``; ``hours_merged_before``: hour lists
    exist for every hour before it. Raises ValueError for a window that is not positive."""
    if window <= timedelta(0):
        raise ValueError("window must be positive")
    minute_end = _floor(watermark, MINUTE) + MINUTE
    if window <= HOUR:
        minute_start = _floor(watermark - window, MINUTE)
        return ResolvedWindow(minute_start, watermark, minute_start, minute_end, minute_start, minute_start)
    hour_start = _floor(watermark - window, HOUR)
    hour_end = max(hour_start, min(_floor(hours_merged_before, HOUR), _floor(watermark, HOUR)))
    return ResolvedWindow(hour_start, watermark, hour_end, minute_end, hour_start, hour_end)
