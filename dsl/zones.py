"""Time zones: the one default zone and the one cache of zone objects.

A methodology without a `timezone` line, a cap without `in <zone>`, the engine's local
days and the web UI's dates all take DEFAULT_TIMEZONE from here, so that they cannot
drift apart; every package looks a zone up with `zone(name)`. Here, in the lowest package,
because the checker already needs both.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Shanghai"


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The zone of an IANA name; ZoneInfoNotFoundError or ValueError when there is none."""
    return ZoneInfo(name)


# IANA names are at most 30 characters (`America/Argentina/ComodRivadavia`, 32, is the
# longest alias); longer text is no zone, and never reaches the file system, where a long
# name is `OSError: File name too long` (issue 17).
MAX_ZONE_LENGTH = 64


def valid_zone(name: str) -> bool:
    if not name or len(name) > MAX_ZONE_LENGTH:
        return False
    try:
        zone(name)
        return True
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
