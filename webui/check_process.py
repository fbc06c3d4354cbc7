"""What the editor's check processes start with (webui/evaluation.py, check_in_time).

Their forkserver imports this module, so that every check process, a fork of it, starts
with the compiler imported and what it builds at its first use already built (its LALR
parser, loaded from the user's cache, and the modules compile_source imports at its first
call). A check process's first check otherwise did that work inside the check's time
limit: 0.7 s more than a later check when the forkserver imported nothing, 0.25 s more
when it imported the compiler alone (one idle core; several times that on a loaded
machine, where a cold process's check of a short source answered "took longer than 10 s").
"""

from __future__ import annotations

from .evaluation import check

# small, but through every stage a check runs: parsing, units, the IR, an example
WARM_UP = """methodology warm.up "warm-up" version 1.0.0 {
  covers bike_ride
  effective from 2024-01-01
  timezone Asia/Shanghai
}

input distance: quantity [km] between 0 km and 50 km
parameter ef [g/km] source "none: a warm-up" = 10

reduction = ef * distance
points = floor(reduction / 1 g)

example "2 km" { distance: 2 km } => reduction 20 g, points 20
"""

try:
    warm_up_check: dict | None = check(WARM_UP, "<warm-up>")
except Exception:  # noqa: BLE001 - a compiler bug: the processes start cold, not broken
    warm_up_check = None  # (an exception here would end the forkserver, and every check)
