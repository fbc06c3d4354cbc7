"""Civil time for arrays: UTC microseconds <-> the local time of one zone; calendar parts.

The arrays get exactly what engine/records.py (naive text -> UTC) and engine/scalar.py
(`LocalTime`, UTC -> local) get from zoneinfo one value at a time:

- the instants where the zone's offset changes come from its TZif data (the file zoneinfo
  itself reads); after the last one, from the zone's rule string, they are found by
  sampling zoneinfo week by week and bisecting to the second;
- every offset is asked of zoneinfo (never derived from the data);
- then an array costs one `searchsorted` (none when no change falls within its range).

Local -> UTC follows zoneinfo's `fold=0`: an ambiguous local time takes the earlier
offset; a local time in a gap takes the offset before the gap. A change happening at
UTC second T is seen by local times from T + max(offset before, offset after).

Instants the table does not cover (no TZif data found, or beyond year 2200) are asked of
zoneinfo one distinct value at a time.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np

from dsl.zones import zone

from .. import records

US = 1_000_000
DAY_US = 86_400 * US
_EPOCH = records.EPOCH
_MIN_S = -62_135_596_800 + 2 * 86_400   # 0001-01-03 UTC: datetime arithmetic stays in range
_MAX_S = 253_402_300_799 - 2 * 86_400   # 9999-12-29
_HORIZON_S = 7_258_118_400              # 2200-01-01: rule-based changes are found up to here
_WEEK_S = 7 * 86_400


def _explicit_transitions(name: str):
    """(transition seconds, rule string) from the TZif data zoneinfo reads, or None."""
    try:
        from zoneinfo import _common, _tzpath
        path = _tzpath.find_tzfile(name)
        handle = open(path, "rb") if path is not None else _common.load_tzdata(name)
        with handle:
            data = _common.load_data(handle)
        trans_utc, tz_str = data[1], data[-1]
    except Exception:  # pragma: no cover - a Python without these internals
        return None
    if isinstance(tz_str, bytes):
        tz_str = tz_str.decode("ascii", "replace")
    return [int(t) for t in trans_utc if _MIN_S <= t <= _MAX_S], tz_str or ""


class ZoneTable:
    """One zone's offsets as arrays. Build with `zone_table(name)` (cached)."""

    def __init__(self, name: str):
        self.name = name
        self.zone = zone(name)
        explicit = _explicit_transitions(name)
        if explicit is None:  # pragma: no cover
            self._t = np.zeros(0, dtype=np.int64)
            self._off = np.zeros(1, dtype=np.int64)
            self._lo, self._hi = 1, 0  # covers nothing: every value asks zoneinfo
            self._finish()
            return
        seconds, rule = explicit
        times = sorted(set(seconds))
        self._lo = _MIN_S if times else 0
        if "," in rule or not rule:
            # rule-based changes after the last listed one: look for them up to the horizon
            times += self._find_changes(times[-1] if times else 0, _HORIZON_S)
            self._hi = _HORIZON_S
        else:
            self._hi = _MAX_S
        times = sorted(set(times))
        self._t = np.asarray(times, dtype=np.int64)
        offsets = [self._offset_s(times[0] - 1 if times else 0)]
        offsets += [self._offset_s(t) for t in times]
        self._off = np.asarray(offsets, dtype=np.int64)
        self._finish()

    def _finish(self):
        t_us = self._t * US
        off_us = self._off * US
        self._t_us = t_us
        self._off_us = off_us
        # local wall time from which each change is seen (fold=0)
        self._w_us = t_us + np.maximum(off_us[:-1], off_us[1:])
        self._lo_us = self._lo * US
        self._hi_us = self._hi * US

    # ------------------------------------------------------------ zoneinfo, one value
    def _offset_s(self, utc_s: int) -> int:
        moment = (_EPOCH + dt.timedelta(seconds=utc_s)).astimezone(self.zone)
        return int(moment.utcoffset().total_seconds())

    def _find_changes(self, start_s: int, end_s: int) -> list[int]:
        found = []
        t, off = start_s, self._offset_s(start_s)
        while t < end_s:
            nxt = min(t + _WEEK_S, end_s)
            off_next = self._offset_s(nxt)
            if off_next != off:
                lo, hi = t, nxt  # offset(lo) = off, offset(hi) != off: the change is in (lo, hi]
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._offset_s(mid) == off:
                        lo = mid
                    else:
                        hi = mid
                found.append(hi)
            t, off = nxt, off_next
        return found

    def _slow_utc_offsets(self, utc_us: np.ndarray) -> np.ndarray:
        values, inverse = np.unique(utc_us, return_inverse=True)
        local = [records.us_to_datetime(int(v)).astimezone(self.zone) for v in values]
        offs = np.asarray([int(m.utcoffset().total_seconds()) * US for m in local], dtype=np.int64)
        return offs[inverse]

    def _slow_local_offsets(self, local_us: np.ndarray) -> np.ndarray:
        values, inverse = np.unique(local_us, return_inverse=True)
        offs = []
        for v in values:
            naive = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(v))
            offs.append(naive.replace(tzinfo=self.zone).utcoffset() // dt.timedelta(microseconds=1))
        return np.asarray(offs, dtype=np.int64)[inverse]

    def changes_us(self) -> tuple[list[int], list[int]]:
        """(the UTC µs of each change of offset, the offsets in µs: one more than the
        changes, the one in force before the first change first); the offset of an
        instant u is offsets[number of changes <= u], exact for u from 0001-01-03 up to
        2200-01-01 in every zone (the kernels' moved instants, engine/to_c.py)."""
        return [int(v) for v in self._t_us], [int(v) for v in self._off_us]

    # ------------------------------------------------------------ arrays
    def utc_offsets(self, utc_us: np.ndarray) -> np.ndarray | int:
        """Offset (µs) of the zone at each UTC instant; an int when it is the same for all."""
        utc_us = np.asarray(utc_us, dtype=np.int64)
        if utc_us.size == 0:
            return 0
        low, high = int(utc_us.min()), int(utc_us.max())
        if low >= self._lo_us and high <= self._hi_us:
            i = np.searchsorted(self._t_us, [low, high], side="right")
            if i[0] == i[1]:
                return int(self._off_us[i[0]])
            return self._off_us[np.searchsorted(self._t_us, utc_us, side="right")]
        inside = (utc_us >= self._lo_us) & (utc_us <= self._hi_us)
        out = np.empty(utc_us.shape, dtype=np.int64)
        out[inside] = self._off_us[np.searchsorted(self._t_us, utc_us[inside], side="right")]
        out[~inside] = self._slow_utc_offsets(utc_us[~inside])
        return out

    def local_to_utc(self, local_us: np.ndarray) -> np.ndarray:
        """UTC µs of naive local times (µs since 1970-01-01T00:00 on the wall clock)."""
        local_us = np.asarray(local_us, dtype=np.int64)
        if local_us.size == 0:
            return local_us.copy()
        margin = DAY_US
        low, high = int(local_us.min()), int(local_us.max())
        if low >= self._lo_us + margin and high <= self._hi_us - margin:
            i = np.searchsorted(self._w_us, [low, high], side="right")
            if i[0] == i[1]:
                return local_us - int(self._off_us[i[0]])
            return local_us - self._off_us[np.searchsorted(self._w_us, local_us, side="right")]
        inside = (local_us >= self._lo_us + margin) & (local_us <= self._hi_us - margin)
        offs = np.empty(local_us.shape, dtype=np.int64)
        offs[inside] = self._off_us[np.searchsorted(self._w_us, local_us[inside], side="right")]
        offs[~inside] = self._slow_local_offsets(local_us[~inside])
        return local_us - offs

    def local_us(self, utc_us: np.ndarray) -> np.ndarray:
        return np.asarray(utc_us, dtype=np.int64) + self.utc_offsets(utc_us)

    def local_day(self, utc_us: np.ndarray) -> np.ndarray:
        return self.local_us(utc_us) // DAY_US


@lru_cache(maxsize=64)
def zone_table(name: str) -> ZoneTable:
    return ZoneTable(name)


# ---------------------------------------------------------------- the calendar
def civil_from_days(days: np.ndarray):
    """Days since 1970-01-01 -> (year, month, day) of the proleptic Gregorian calendar."""
    z = np.asarray(days, dtype=np.int64) + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of valid (year, month, day) arrays.

    Records of a file span a few years at most: then the first day of each month in that
    span is computed once and looked up (3 operations a row instead of 20).
    """
    year = np.asarray(year, dtype=np.int64)
    month = np.asarray(month, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    if year.size > 4096:
        low, high = int(year.min()), int(year.max())
        if high - low < 400 and int(month.min()) >= 1 and int(month.max()) <= 12:
            years = np.repeat(np.arange(low, high + 1, dtype=np.int64), 12)
            months = np.tile(np.arange(1, 13, dtype=np.int64), high - low + 1)
            first = _days_from_civil(years, months, np.ones_like(years))
            return first[(year - low) * 12 + (month - 1)] + (day - 1)
    return _days_from_civil(year, month, day)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    table = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    return table[np.clip(month, 0, 12)] + (leap & (month == 2))




def period_index(days: np.ndarray, period: str) -> np.ndarray:
    """engine.cross_record.period_of for arrays of local days."""
    days = np.asarray(days, dtype=np.int64)
    if period == "day":
        return days
    if period == "week":
        return (days + 3) // 7
    year, month, _ = civil_from_days(days)
    return year * 12 + month - 1 if period == "month" else year
