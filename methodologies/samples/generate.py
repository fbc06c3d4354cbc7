"""Writes the sample activity files of the bundled methodologies, reproducibly.

    python methodologies/samples/generate.py                    # rewrite every sample
    python methodologies/samples/generate.py wuhan-metro-bike   # just one
    python methodologies/samples/generate.py --out DIR          # write them elsewhere

Each sample is methodologies/samples/<methodology file name>.csv: a few hundred realistic
records of several accounts over a few weeks, local times in Asia/Shanghai (written
without an offset, so they are read in the methodology's time zone; a few carry +08:00),
units in the column headers (`distance[km]`). Besides ordinary credited records each file
mixes in what an integrator really sends: records the methodology rejects, records past a
daily cap, overlapping rides, a repeated record id, and a couple of broken rows that
cannot be read (`tanpu eval` reports them with their row number and reason).

Every file has its own seeded generator (random.Random with a string seed), so the same
script always writes the same bytes; only the standard library is used. Check a sample
with `tanpu eval methodologies/<name>.tanpu methodologies/samples/<name>.csv -o /dev/null`.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- helpers
class Sample:
    """Rows of one sample file, with the tricks every file shares."""

    def __init__(self, name: str, header: list[str]):
        self.name = name
        self.header = header
        self.rng = random.Random(f"tanpu-samples:{name}:v1")
        self.rows: list[dict] = []
        self.count = 0

    def next_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count:05d}"

    def add(self, row: dict) -> dict:
        self.rows.append(row)
        return row

    def repeat_ids(self, n: int) -> None:
        """n records re-sent under the id of an earlier record (DUPLICATE_ID)."""
        for _ in range(n):
            original = self.rng.choice(self.rows)
            copy = dict(original)
            self.rows.insert(self.rng.randrange(len(self.rows) + 1), copy)

    def break_rows(self, broken: list[dict]) -> None:
        """Rows that cannot be read, placed at random."""
        for row in broken:
            self.rows.insert(self.rng.randrange(len(self.rows) + 1), row)

    def write(self, folder: Path = HERE) -> Path:
        path = folder / f"{self.name}.csv"
        # the header's unit goes (`distance[km]` -> distance), a leg's index stays (legs[0].mode)
        names = [h[:h.rindex("[")] if h.endswith("]") else h for h in self.header]
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(self.header)
            for row in self.rows:
                writer.writerow([row.get(n, "") for n in names])
        return path


def stamp(t: dt.datetime, offset: bool = False) -> str:
    text = t.strftime("%Y-%m-%dT%H:%M")
    return text + "+08:00" if offset else text


def days(start: dt.date, n: int):
    return [start + dt.timedelta(days=i) for i in range(n)]


def at(day: dt.date, hour: float) -> dt.datetime:
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=round(hour * 60))


def ride(sample: Sample, prefix: str, account: str, start: dt.datetime, km: float,
         speed_kmh: float, fields: dict, start_name: str, end_name: str) -> dt.datetime:
    """One ride record; returns its end."""
    minutes = max(2, round(km / speed_kmh * 60))
    end = start + dt.timedelta(minutes=minutes)
    row = {"id": sample.next_id(prefix), "account": account, "distance": f"{km:.1f}",
           start_name: stamp(start, sample.rng.random() < 0.03), end_name: stamp(end)}
    row.update(fields)
    sample.add(row)
    return end


# ---------------------------------------------------------------- per methodology
def shenzhen_public_transit() -> Sample:
    s = Sample("shenzhen-public-transit", ["id", "account", "mode", "distance[km]", "boarded", "alighted"])
    r = s.rng
    accounts = [f"sz-{i:03d}" for i in range(1, 13)]
    for day in days(dt.date(2024, 5, 6), 21):
        for account in accounts:
            for hour in (7.5, 18.0):
                if r.random() < (0.75 if day.weekday() < 5 else 0.25):
                    mode = r.choices(["metro", "ebus", "diesel_bus"], [0.5, 0.42, 0.08])[0]
                    km = r.uniform(3, 28) if mode == "metro" else r.uniform(1.5, 14)
                    start = at(day, hour + r.uniform(-0.7, 1.2))
                    end = ride(s, "sz", account, start, km, r.uniform(14, 32), {"mode": mode},
                               "boarded", "alighted")
                    if r.random() < 0.04:  # a second ride reported inside the first: OVERLAP
                        ride(s, "sz", account, start + (end - start) / 2, r.uniform(1, 5), 15,
                             {"mode": "ebus"}, "boarded", "alighted")
    s.add({"id": "sz-bad-times", "account": "sz-003", "mode": "metro", "distance": "9.4",
           "boarded": "2024-05-14T19:40", "alighted": "2024-05-14T19:10"})  # BAD_TIMES
    s.add({"id": "sz-too-far", "account": "sz-007", "mode": "metro", "distance": "250",
           "boarded": "2024-05-15T06:00", "alighted": "2024-05-15T09:00"})  # OUT_OF_RANGE
    s.repeat_ids(3)
    s.break_rows([
        {"id": "sz-broken-1", "account": "sz-002", "mode": "metro", "distance": "12,5",
         "boarded": "2024-05-16T08:00", "alighted": "2024-05-16T08:30"},
        {"id": "sz-broken-2", "account": "sz-009", "mode": "taxi", "distance": "6.0",
         "boarded": "2024-05-17T08:00", "alighted": "2024-05-17T08:20"},
        {"id": "sz-broken-3", "account": "sz-011", "mode": "ebus", "distance": "4.2",
         "boarded": "2024-05-32T08:00", "alighted": "2024-05-32T08:20"},
    ])
    return s


def rooftop_pv_grid() -> Sample:
    s = Sample("rooftop-pv-grid", ["id", "account", "time", "generated[kWh]", "region", "capacity[MW]"])
    r = s.rng
    sites = []
    regions = ["south", "central", "east", "north", "southwest", "northwest", "northeast"]
    for i in range(1, 23):
        region = regions[(i - 1) % len(regions)]
        capacity_kw = r.choice([5, 8, 10, 12, 15, 20]) if i <= 16 else r.choice([120, 450, 1800, 4800])
        sites.append((f"pv-{region}-{i:02d}", region, capacity_kw))
    sites.append(("pv-central-big", "central", 6500))  # CAPACITY_LIMIT
    months = [(2022, m) for m in range(7, 13)] + [(2023, m) for m in range(1, 9)]
    yield_kwh_per_kw = {1: 75, 2: 80, 3: 100, 4: 115, 5: 125, 6: 120, 7: 130, 8: 128, 9: 110,
                        10: 100, 11: 85, 12: 72}
    for account, region, capacity_kw in sites:
        for year, month in months:
            last = (dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1))
            kwh = capacity_kw * yield_kwh_per_kw[month] * r.uniform(0.8, 1.1)
            s.add({"id": s.next_id(account), "account": account, "time": stamp(at(last, 23.5)),
                   "generated": f"{kwh:.1f}", "region": region, "capacity": f"{capacity_kw / 1000:g}"})
    # a household that reports December 2021: before the methodology's start (not applicable)
    s.add({"id": "pv-2021-12", "account": "pv-south-01", "time": "2021-12-31T23:30",
           "generated": "612.0", "region": "south", "capacity": "0.008"})
    s.repeat_ids(2)
    s.break_rows([
        {"id": "pv-broken-1", "account": "pv-central-02", "time": "2023-03-31T23:30",
         "generated": "1,234.5", "region": "central", "capacity": "0.01"},
        {"id": "pv-broken-2", "account": "pv-east-03", "time": "2023-03-31T23:30",
         "generated": "980.0", "region": "hubei", "capacity": "0.01"},
    ])
    return s


def wuhan_metro_bike() -> Sample:
    s = Sample("wuhan-metro-bike", ["id", "account", "mode", "distance[km]", "started", "ended"])
    r = s.rng
    accounts = [f"wh-{i:03d}" for i in range(1, 13)]
    heavy = {"wh-004", "wh-010"}  # long metro commutes plus an evening trip: past the 3 kg cap
    for day in days(dt.date(2025, 8, 4), 21):
        workday = day.weekday() < 5
        for account in accounts:
            if account in heavy and workday:
                t = at(day, 7.2 + r.uniform(0, 0.5))
                for _ in range(3):
                    end = ride(s, "wh", account, t, r.uniform(14, 22), r.uniform(25, 35),
                               {"mode": "metro"}, "started", "ended")
                    t = end + dt.timedelta(hours=r.uniform(3, 5))
                continue
            for hour in (7.8, 18.2):
                if r.random() < (0.7 if workday else 0.3):
                    mode = r.choices(["metro", "shared_bike", "bus"], [0.5, 0.4, 0.1])[0]
                    start = at(day, hour + r.uniform(-0.8, 1.0))
                    if mode == "shared_bike":
                        # first/last mile by bike, then (sometimes) the metro
                        end = ride(s, "wh", account, start, r.uniform(0.5, 4.5), r.uniform(8, 15),
                                   {"mode": mode}, "started", "ended")
                        if r.random() < 0.5:
                            ride(s, "wh", account, end + dt.timedelta(minutes=r.randint(2, 8)),
                                 r.uniform(4, 18), r.uniform(20, 32), {"mode": "metro"}, "started", "ended")
                    else:
                        end = ride(s, "wh", account, start, r.uniform(3, 20), r.uniform(15, 32),
                                   {"mode": mode}, "started", "ended")
                        if r.random() < 0.05:  # a bike ride reported during the metro ride: OVERLAP
                            ride(s, "wh", account, start + (end - start) / 3, 1.5, 10,
                                 {"mode": "shared_bike"}, "started", "ended")
    # platform policy: implausibly fast bike rides (IMPLAUSIBLE_SPEED)
    for i, (account, day) in enumerate([("wh-002", 6), ("wh-008", 13), ("wh-011", 20)]):
        start = at(dt.date(2025, 8, day), 22.0)
        s.add({"id": f"wh-fast-{i + 1}", "account": account, "mode": "shared_bike",
               "distance": "6.0", "started": stamp(start),
               "ended": stamp(start + dt.timedelta(minutes=8))})
    s.add({"id": "wh-bad-times", "account": "wh-006", "mode": "metro", "distance": "8.0",
           "started": "2025-08-12T21:30", "ended": "2025-08-12T21:00"})  # BAD_TIMES
    s.repeat_ids(3)
    s.break_rows([
        {"id": "wh-broken-1", "account": "wh-001", "mode": "metro", "distance": "",
         "started": "2025-08-07T08:00", "ended": "2025-08-07T08:30"},
        {"id": "wh-broken-2", "account": "wh-005", "mode": "ferry", "distance": "3.0",
         "started": "2025-08-09T10:00", "ended": "2025-08-09T10:20"},
    ])
    return s


def wuhan_electricity_saving() -> Sample:
    s = Sample("wuhan-electricity-saving", ["id", "account", "time", "saved[kWh]", "event"])
    r = s.rng
    households = [f"wh-home-{i:03d}" for i in range(1, 41)]
    events = [(dt.date(2025, 8, d), h) for d, h in
              [(5, 19), (7, 20), (11, 19), (14, 20), (18, 19), (21, 20), (25, 19), (28, 20)]]
    for day, hour in events:
        event = f"DR-{day:%Y%m%d}-{hour}"
        for home in households:
            if r.random() < 0.7:
                saved = max(0.0, r.gauss(1.1, 0.7))
                t = at(day, hour + 2 + r.uniform(0, 1))  # reported after the event window
                s.add({"id": s.next_id("dr"), "account": home, "time": stamp(t),
                       "saved": f"{saved:.3f}", "event": event})
                if r.random() < 0.03:  # the same event claimed again: DUPLICATE_EVENT
                    s.add({"id": s.next_id("dr"), "account": home,
                           "time": stamp(t + dt.timedelta(hours=1)),
                           "saved": f"{saved:.3f}", "event": event})
    s.add({"id": "dr-negative", "account": "wh-home-017", "time": "2025-08-18T22:10",
           "saved": "-0.4", "event": "DR-20250818-19"})  # OUT_OF_RANGE (used more, not less)
    s.repeat_ids(2)
    s.break_rows([
        {"id": "dr-broken-1", "account": "wh-home-003", "time": "2025-08-21T22:05",
         "saved": "1.2 kg", "event": "DR-20250821-20"},
        {"id": "dr-broken-2", "account": "wh-home-029", "time": "2025-08-25T22:05",
         "saved": "0.8", "event": ""},
    ])
    return s


def shenzhen_household_electricity() -> Sample:
    """Daily readings of households over four weeks: some below their baseline, some
    above it and saving against their own 7-day mean, some not; a few days missing."""
    s = Sample("shenzhen-household-electricity", ["id", "account", "time", "used[kWh]", "members"])
    r = s.rng
    homes = [(f"sz-home-{i:03d}", r.randint(1, 5), r.uniform(1.5, 4.0)) for i in range(1, 16)]
    for day in days(dt.date(2023, 5, 1), 28):
        for home, members, per_person in homes:
            if r.random() < 0.08:
                continue  # no reading that day
            used = max(0.0, r.gauss(per_person * members, 1.2))
            t = at(day, 23 + r.uniform(0, 0.9))
            s.add({"id": s.next_id("kwh"), "account": home, "time": stamp(t, r.random() < 0.03),
                   "used": f"{used:.2f}", "members": str(members)})
    s.add({"id": "kwh-no-members", "account": "sz-home-004", "time": "2023-05-20T23:10",
           "used": "5.00", "members": "0"})  # OUT_OF_RANGE
    s.repeat_ids(2)
    s.break_rows([
        {"id": "kwh-broken-1", "account": "sz-home-002", "time": "2023-05-12T23:05",
         "used": "5 kg", "members": "2"},
        {"id": "kwh-broken-2", "account": "sz-home-009", "time": "2023-05-13T23:05",
         "used": "4.10", "members": "two"},
    ])
    return s


def chongqing_shared_ebike() -> Sample:
    s = Sample("chongqing-shared-ebike", ["id", "account", "distance[km]", "started", "ended"])
    r = s.rng
    accounts = [f"cq-{i:03d}" for i in range(1, 16)]
    couriers = {"cq-005", "cq-012"}  # ride all day: past the 1 kg cap (23.3 km)
    for day in days(dt.date(2024, 4, 8), 21):
        for account in accounts:
            if account in couriers:
                t = at(day, 9 + r.uniform(0, 1))
                for _ in range(r.randint(3, 7)):
                    end = ride(s, "cq", account, t, r.uniform(2, 6), r.uniform(12, 18), {},
                               "started", "ended")
                    t = end + dt.timedelta(minutes=r.randint(10, 60))
                continue
            for hour in (8.0, 12.5, 18.3):
                if r.random() < 0.45:
                    start = at(day, hour + r.uniform(-0.5, 0.8))
                    end = ride(s, "cq", account, start, r.uniform(0.8, 8), r.uniform(10, 18), {},
                               "started", "ended")
                    if r.random() < 0.04:  # OVERLAP
                        ride(s, "cq", account, start + (end - start) / 2, r.uniform(0.5, 2), 12, {},
                             "started", "ended")
    s.add({"id": "cq-bad-times", "account": "cq-001", "distance": "3.0",
           "started": "2024-04-15T09:20", "ended": "2024-04-15T09:05"})  # BAD_TIMES
    s.add({"id": "cq-too-far", "account": "cq-009", "distance": "140",
           "started": "2024-04-16T06:00", "ended": "2024-04-16T15:00"})  # OUT_OF_RANGE
    s.repeat_ids(3)
    s.break_rows([
        {"id": "cq-broken-1", "account": "cq-004", "distance": "3.5km?",
         "started": "2024-04-10T08:00", "ended": "2024-04-10T08:20"},
        {"id": "cq-broken-2", "account": "cq-010", "distance": "2.0",
         "started": "yesterday", "ended": "2024-04-10T08:20"},
    ])
    return s


def guangzhou_metro_trip() -> Sample:
    s = Sample("guangzhou-metro-trip", ["id", "account", "method", "trips", "started", "ended"])
    r = s.rng
    riders = [f"gz-{i:03d}" for i in range(1, 15)]
    monthly = ["gz-m-01", "gz-m-02", "gz-m-03"]  # employers reporting a month of commuting
    for day in days(dt.date(2024, 5, 6), 21):
        for account in riders:
            for hour in (8.0, 18.0):
                if r.random() < (0.75 if day.weekday() < 5 else 0.2):
                    start = at(day, hour + r.uniform(-0.8, 1.2))
                    end = start + dt.timedelta(minutes=r.randint(12, 65))
                    s.add({"id": s.next_id("gz"), "account": account,
                           "method": "" if r.random() < 0.3 else "mean", "trips": "",
                           "started": stamp(start), "ended": stamp(end)})
    for i, account in enumerate(monthly):
        for month in (4, 5):
            s.add({"id": s.next_id("gz"), "account": account,
                   "method": "substitution" if i == 2 else "mean",
                   "trips": str(r.randint(36, 46)), "started": f"2024-{month:02d}-01T00:00",
                   "ended": f"2024-{month + 1:02d}-01T00:00"})
    # a single trip of an account whose May is already claimed in aggregate: OVERLAP
    s.add({"id": "gz-inside-month", "account": "gz-m-01", "method": "mean", "trips": "",
           "started": "2024-05-20T08:10", "ended": "2024-05-20T08:45"})
    s.add({"id": "gz-zero-trips", "account": "gz-m-02", "method": "mean", "trips": "0",
           "started": "2024-06-01T00:00", "ended": "2024-07-01T00:00"})  # OUT_OF_RANGE
    s.add({"id": "gz-bad-times", "account": "gz-007", "method": "mean", "trips": "",
           "started": "2024-05-22T18:40", "ended": "2024-05-22T18:05"})  # BAD_TIMES
    s.repeat_ids(2)
    s.break_rows([
        {"id": "gz-broken-1", "account": "gz-003", "method": "average", "trips": "1",
         "started": "2024-05-09T08:00", "ended": "2024-05-09T08:30"},
        {"id": "gz-broken-2", "account": "gz-m-03", "method": "mean", "trips": "2.5",
         "started": "2024-06-01T00:00", "ended": "2024-07-01T00:00"},
    ])
    return s


def ev_trip_baseline_project() -> Sample:
    s = Sample("ev-trip-baseline-project",
               ["id", "account", "time", "distance[km]", "baseline_fuel", "baseline_consumption[L/km]",
                "fuel_density[kg/L]", "electricity_per_km[kWh/km]", "gasoline_per_km[L/km]",
                "region", "improvement_years"])
    r = s.rng
    # (account, kind, region): taxis report a day's total; private cars report trips
    vehicles = ([(f"ev-taxi-{i:02d}", "taxi", reg) for i, reg in
                 enumerate(["south", "south", "central", "east", "southwest"], 1)]
                + [(f"ev-car-{i:02d}", "car", reg) for i, reg in
                   enumerate(["national", "central", "north", "east", "south", "northeast",
                              "northwest", "southwest", "central", "east"], 1)]
                + [("ev-phev-01", "phev", "east"), ("ev-phev-02", "phev", "north")]
                + [("ebus-fleet-01", "bus", "south"), ("ebus-fleet-02", "bus", "central")])
    # 2022-12-12 .. 2023-01-15: the grid factor year changes on 1 January (local time)
    for day in days(dt.date(2022, 12, 12), 35):
        for account, kind, region in vehicles:
            row = {"account": account, "region": region, "baseline_fuel": "gasoline"}
            if kind == "taxi":
                row.update(distance=f"{r.uniform(180, 360):.1f}", baseline_consumption="0.08",
                           electricity_per_km=f"{r.uniform(0.14, 0.17):.3f}", improvement_years="1")
                t = at(day, 23.9)
            elif kind == "bus":
                if r.random() < 0.3:
                    continue
                row.update(distance=f"{r.uniform(120, 220):.1f}", baseline_fuel="diesel",
                           baseline_consumption="0.35", electricity_per_km=f"{r.uniform(1.0, 1.3):.2f}",
                           # the operator's measured density; fleet 02 sometimes leaves it out
                           fuel_density="" if account == "ebus-fleet-02" and r.random() < 0.2 else
                           f"{r.choice([0.835, 0.84, 0.845]):.3f}")
                t = at(day, 23.5)
            else:
                if r.random() < 0.55:
                    continue
                row.update(distance=f"{r.uniform(4, 60):.1f}",
                           baseline_consumption=f"{r.choice([0.06, 0.07, 0.08]):.2f}",
                           electricity_per_km=f"{r.uniform(0.12, 0.18):.3f}")
                if kind == "phev":
                    row["gasoline_per_km"] = f"{r.uniform(0.005, 0.03):.3f}"
                t = at(day, r.uniform(7, 21))
            row.update(id=s.next_id(account), time=stamp(t))
            s.add(row)
    # a thirsty EV on the northern grid against an efficient car: NO_REDUCTION
    s.add({"id": "ev-negative", "account": "ev-car-03", "time": "2022-12-20T20:00",
           "distance": "12.0", "baseline_fuel": "gasoline", "baseline_consumption": "0.05",
           "electricity_per_km": "0.26", "region": "north"})
    # before the methodology's start (not applicable), and 2021 region without a factor
    s.add({"id": "ev-2021-early", "account": "ev-car-01", "time": "2021-12-01T09:00",
           "distance": "20.0", "baseline_fuel": "gasoline", "baseline_consumption": "0.07",
           "electricity_per_km": "0.15", "region": "national"})
    s.add({"id": "ev-2021-central", "account": "ev-car-02", "time": "2021-12-28T09:00",
           "distance": "20.0", "baseline_fuel": "gasoline", "baseline_consumption": "0.07",
           "electricity_per_km": "0.15", "region": "central"})  # NO_GRID_FACTOR
    s.repeat_ids(2)
    s.break_rows([
        {"id": "ev-broken-1", "account": "ev-car-04", "time": "2023-01-05T08:00",
         "distance": "25.0", "baseline_fuel": "gasoline", "baseline_consumption": "8 L/100km",
         "electricity_per_km": "0.15", "region": "east"},
        {"id": "ev-broken-2", "account": "ev-taxi-02", "time": "2023-01-06T23:54",
         "distance": "abc", "baseline_fuel": "gasoline", "baseline_consumption": "0.08",
         "electricity_per_km": "0.15", "region": "south", "improvement_years": "1"},
    ])
    return s


def public_bike_rule_of_thumb() -> Sample:
    s = Sample("public-bike-rule-of-thumb", ["id", "account", "time", "rides"])
    r = s.rng
    users = [f"bike-user-{i:03d}" for i in range(1, 31)]
    for day in days(dt.date(2017, 10, 1), 8):
        for user in users:
            for _ in range(r.choice([0, 0, 1, 1, 2])):
                t = at(day, r.uniform(8, 21))
                s.add({"id": s.next_id("ride"), "account": user, "time": stamp(t), "rides": ""})
    # stations reporting a day's total rides (aggregated records)
    for station in ("station-001", "station-002", "station-003"):
        for day in days(dt.date(2017, 10, 1), 8):
            s.add({"id": f"{station}-{day:%m%d}", "account": station,
                   "time": stamp(at(day, 23.9)), "rides": str(r.randint(40, 90))})
    s.add({"id": "ride-before-start", "account": "bike-user-004", "time": "2017-09-30T17:30",
           "rides": ""})  # not applicable: before the (assumed) start
    s.add({"id": "ride-zero", "account": "station-002", "time": "2017-10-05T23:55",
           "rides": "0"})  # OUT_OF_RANGE
    s.repeat_ids(3)
    s.break_rows([
        {"id": "ride-broken-1", "account": "bike-user-012", "time": "2017-10-03T25:00", "rides": ""},
        {"id": "ride-broken-2", "account": "station-001", "time": "2017-10-06T23:50", "rides": "many"},
    ])
    return s


def hello_shared_bike() -> Sample:
    s = Sample("hello-shared-bike", ["id", "account", "time", "vehicle", "distance[km]"])
    r = s.rng
    accounts = [f"hello-{i:03d}" for i in range(1, 16)]
    heavy = {"hello-006", "hello-013"}  # e-bike commuters past the 500 g daily cap
    for day in days(dt.date(2024, 5, 6), 21):
        for account in accounts:
            trips = r.randint(3, 5) if account in heavy else sum(r.random() < 0.35 for _ in range(3))
            hours = sorted(r.uniform(7, 22) for _ in range(trips))
            for hour in hours:
                vehicle = "ebike" if account in heavy or r.random() < 0.35 else "bike"
                km = r.uniform(2, 7) if vehicle == "ebike" else r.uniform(0.5, 4)
                s.add({"id": s.next_id("hello"), "account": account,
                       "time": stamp(at(day, hour), r.random() < 0.03), "vehicle": vehicle,
                       "distance": f"{km:.2f}"})
    s.add({"id": "hello-too-far", "account": "hello-002", "time": "2024-05-11T16:00",
           "vehicle": "ebike", "distance": "64"})  # OUT_OF_RANGE (at most 50 km)
    s.repeat_ids(3)
    s.break_rows([
        {"id": "hello-broken-1", "account": "hello-004", "time": "2024-05-08T08:00",
         "vehicle": "scooter", "distance": "2.0"},
        {"id": "hello-broken-2", "account": "hello-009", "time": "2024-05-09T08:00",
         "vehicle": "bike", "distance": "2.0 kg"},
    ])
    return s


def zhengzhou_tanyixing_bus() -> Sample:
    s = Sample("zhengzhou-tanyixing-bus", ["id", "account", "time", "line", "paid_by"])
    r = s.rng
    accounts = [f"zz-{i:03d}" for i in range(1, 16)]
    heavy = {"zz-004", "zz-011"}  # five or six rides a day: past the 4-ride daily cap
    lines = ["B2", "B11", "K1", "Y801", "S115"]
    for day in days(dt.date(2024, 4, 8), 14):
        for account in accounts:
            rides = r.randint(5, 6) if account in heavy else sum(r.random() < 0.45 for _ in range(3))
            for hour in sorted(r.uniform(6.5, 22) for _ in range(rides)):
                paid = "other" if r.random() < 0.06 else "alipay_qr"
                s.add({"id": s.next_id("zz"), "account": account,
                       "time": stamp(at(day, hour), r.random() < 0.03),
                       "line": r.choice(lines), "paid_by": paid})
    s.repeat_ids(3)
    s.break_rows([
        {"id": "zz-broken-1", "account": "zz-002", "time": "2024-04-09T25:10", "line": "B2",
         "paid_by": "alipay_qr"},
        {"id": "zz-broken-2", "account": "zz-007", "time": "2024-04-10T08:00", "line": "K1",
         "paid_by": "wechat"},
    ])
    return s


def leg_trip(s: "Sample", prefix: str, order: str, speeds: dict, account: str, start: dt.datetime,
             chain: list[tuple[str, float]], trip_id: str = "", minutes: int = 0) -> dict:
    """One trip chain as repeated leg columns (legs[k].mode, legs[k].distance), its end
    from the legs' speeds unless `minutes` is given (the samples with `input legs`)."""
    minutes = minutes or max(5, round(sum(km / speeds[m] * 60 for m, km in chain)))
    row = {"id": s.next_id(prefix), "account": account, "trip_id": trip_id or f"{order}{s.count:05d}",
           "started": stamp(start, s.rng.random() < 0.03),
           "ended": stamp(start + dt.timedelta(minutes=minutes))}
    for k, (mode, km) in enumerate(chain):
        row[f"legs[{k}].mode"], row[f"legs[{k}].distance"] = mode, f"{km:.1f}"
    return s.add(row)


def beijing_maas_green_trip() -> Sample:
    """Trip chains as repeated leg columns (legs[0].mode, legs[0].distance[km], ...)."""
    legs_header = [f"legs[{k}].{f}" for k in range(4) for f in ("mode", "distance[km]")]
    s = Sample("beijing-maas-green-trip", ["id", "account", "trip_id", "started", "ended"] + legs_header)
    r = s.rng
    accounts = [f"bj-{i:03d}" for i in range(1, 13)]

    speeds = {"walk": 4.5, "bike": 12, "bus": 16, "metro": 30}

    def trip(account: str, start: dt.datetime, chain: list[tuple[str, float]]) -> dict:
        return leg_trip(s, "bj", "T", speeds, account, start, chain)

    def chain() -> list[tuple[str, float]]:
        kind = r.choices(["metro", "bus", "bike", "walk"], [0.45, 0.3, 0.15, 0.1])[0]
        if kind == "metro":
            out = [("walk", r.uniform(0.2, 1.2)), ("metro", r.uniform(4, 16))]
            return out + [r.choice([("walk", r.uniform(0.2, 1.0)), ("bike", r.uniform(0.8, 3.0))])]
        if kind == "bus":
            return [("walk", r.uniform(0.2, 0.8)), ("bus", r.uniform(2, 12))]
        return [(kind, r.uniform(0.8, 6.0 if kind == "bike" else 2.5))]

    for day in days(dt.date(2024, 5, 6), 14):
        for account in accounts:
            for hour in (7.8, 18.2):
                if r.random() < (0.7 if day.weekday() < 5 else 0.25):
                    row = trip(account, at(day, hour + r.uniform(-0.6, 1.0)), chain())
                    if r.random() < 0.03:  # the same trip order reported again: DUPLICATE_TRIP
                        again = dict(row, id=s.next_id("bj"))
                        s.add(again)
    # a long commute there and back: past the 5 kg daily cap
    for account, day in (("bj-002", dt.date(2024, 5, 21)), ("bj-005", dt.date(2024, 5, 22))):
        trip(account, at(day, 7.5), [("walk", 0.6), ("metro", 38.0), ("bike", 1.5)])
        trip(account, at(day, 19.0), [("bike", 1.5), ("metro", 38.0), ("walk", 0.6)])
    # a trip inside another of the same account: OVERLAP
    trip("bj-004", at(dt.date(2024, 5, 23), 8.0), [("walk", 0.5), ("metro", 15.0)])
    trip("bj-004", at(dt.date(2024, 5, 23), 8.2), [("bike", 2.0)])
    s.add({"id": "bj-bad-times", "account": "bj-006", "trip_id": "T-bad", "started": "2024-05-14T19:40",
           "ended": "2024-05-14T19:10", "legs[0].mode": "bus", "legs[0].distance": "5.0"})  # BAD_TIMES
    s.add({"id": "bj-no-legs", "account": "bj-007", "trip_id": "T-empty", "started": "2024-05-15T08:00",
           "ended": "2024-05-15T08:30"})  # NO_LEGS
    s.repeat_ids(3)
    s.break_rows([
        {"id": "bj-broken-1", "account": "bj-003", "trip_id": "T-b1", "started": "2024-05-16T08:00",
         "ended": "2024-05-16T08:40", "legs[0].mode": "walk", "legs[0].distance": "0.5",
         "legs[1].mode": "metro", "legs[1].distance": "12,5"},  # legs[1].distance: not a number
        {"id": "bj-broken-2", "account": "bj-009", "trip_id": "T-b2", "started": "2024-05-17T08:00",
         "ended": "2024-05-17T08:20", "legs[0].mode": "taxi", "legs[0].distance": "6.0"},  # not a mode
        {"id": "bj-broken-3", "account": "bj-011", "trip_id": "T-b3", "started": "2024-05-17T08:00",
         "ended": "2024-05-17T08:20", "legs[0].mode": "bus", "legs[0].distance": "160.0"},  # out of range
    ])
    return s


def wuhan_green_commute_loan() -> Sample:
    """Commutes as repeated leg columns: a shared bike or a walk to the metro, the metro,
    sometimes a bus; rides past the 3 kg cap, a trip over three hours, walking-only trips,
    a repeated trip order and an overlap."""
    legs_header = [f"legs[{k}].{f}" for k in range(3) for f in ("mode", "distance[km]")]
    s = Sample("wuhan-green-commute-loan", ["id", "account", "trip_id", "started", "ended"] + legs_header)
    r = s.rng
    accounts = [f"wh-{i:03d}" for i in range(1, 13)]
    speeds = {"walk": 4.5, "shared_bike": 12, "bus": 16, "metro": 30}

    def trip(account: str, start: dt.datetime, chain: list[tuple[str, float]], trip_id: str = "",
             minutes: int = 0) -> dict:
        return leg_trip(s, "wh", "W", speeds, account, start, chain, trip_id, minutes)

    def chain() -> list[tuple[str, float]]:
        kind = r.choices(["bike_metro", "walk_metro", "bike", "bus"], [0.45, 0.3, 0.15, 0.1])[0]
        if kind == "bike_metro":
            return [("shared_bike", r.uniform(0.6, 2.5)), ("metro", r.uniform(4, 16))]
        if kind == "walk_metro":
            return [("walk", r.uniform(0.2, 1.2)), ("metro", r.uniform(4, 16)), ("walk", r.uniform(0.2, 0.8))]
        if kind == "bike":
            return [("shared_bike", r.uniform(0.8, 5.0))]
        return [("walk", r.uniform(0.2, 0.8)), ("bus", r.uniform(2, 12))]  # NOTHING_COVERED

    for day in days(dt.date(2025, 8, 4), 14):
        for account in accounts:
            for hour in (7.8, 18.2):
                if r.random() < (0.7 if day.weekday() < 5 else 0.25):
                    row = trip(account, at(day, hour + r.uniform(-0.6, 1.0)), chain())
                    if r.random() < 0.03:  # the same trip order reported again: DUPLICATE_TRIP
                        s.add(dict(row, id=s.next_id("wh")))
    # a long commute there and back: past the 3 kg daily cap
    for account, day in (("wh-002", dt.date(2025, 8, 19)), ("wh-005", dt.date(2025, 8, 20))):
        trip(account, at(day, 7.5), [("shared_bike", 1.5), ("metro", 24.0)])
        trip(account, at(day, 19.0), [("metro", 24.0), ("shared_bike", 1.5)])
    # a trip inside another of the same account: OVERLAP
    trip("wh-004", at(dt.date(2025, 8, 21), 8.0), [("walk", 0.5), ("metro", 15.0)])
    trip("wh-004", at(dt.date(2025, 8, 21), 8.2), [("shared_bike", 2.0)])
    # a trip of 3 h 40 min: TOO_LONG (platform policy)
    trip("wh-006", at(dt.date(2025, 8, 21), 9.0), [("metro", 20.0)], minutes=220)
    s.add({"id": "wh-bad-times", "account": "wh-007", "trip_id": "W-bad", "started": "2025-08-12T19:40",
           "ended": "2025-08-12T19:10", "legs[0].mode": "metro", "legs[0].distance": "5.0"})  # BAD_TIMES
    s.repeat_ids(3)
    s.break_rows([
        {"id": "wh-broken-1", "account": "wh-003", "trip_id": "W-b1", "started": "2025-08-13T08:00",
         "ended": "2025-08-13T08:40", "legs[0].mode": "shared_bike", "legs[0].distance": "1.5",
         "legs[1].mode": "metro", "legs[1].distance": "12,5"},  # legs[1].distance: not a number
        {"id": "wh-broken-2", "account": "wh-009", "trip_id": "W-b2", "started": "2025-08-14T08:00",
         "ended": "2025-08-14T08:20", "legs[0].mode": "taxi", "legs[0].distance": "6.0"},  # not a mode
    ])
    return s


SAMPLES = {
    "hello-shared-bike": hello_shared_bike,
    "shenzhen-public-transit": shenzhen_public_transit,
    "rooftop-pv-grid": rooftop_pv_grid,
    "wuhan-metro-bike": wuhan_metro_bike,
    "wuhan-electricity-saving": wuhan_electricity_saving,
    "shenzhen-household-electricity": shenzhen_household_electricity,
    "chongqing-shared-ebike": chongqing_shared_ebike,
    "guangzhou-metro-trip": guangzhou_metro_trip,
    "ev-trip-baseline-project": ev_trip_baseline_project,
    "public-bike-rule-of-thumb": public_bike_rule_of_thumb,
    "zhengzhou-tanyixing-bus": zhengzhou_tanyixing_bus,
    "beijing-maas-green-trip": beijing_maas_green_trip,
    "wuhan-green-commute-loan": wuhan_green_commute_loan,
}


def generate(name: str, folder: Path = HERE) -> tuple[Path, int]:
    """Writes one sample into ``folder``; returns its path and number of records."""
    sample = SAMPLES[name]()
    return sample.write(folder), len(sample.rows)


def main(argv: list[str]) -> int:
    folder = HERE
    if "--out" in argv:
        at_ = argv.index("--out")
        if at_ + 1 >= len(argv):
            print("--out needs a folder", file=sys.stderr)
            return 2
        folder = Path(argv[at_ + 1])
        argv = argv[:at_] + argv[at_ + 2:]
    names = argv or list(SAMPLES)
    for name in names:
        if name not in SAMPLES:
            print(f"unknown sample {name!r}; the samples are {', '.join(SAMPLES)}", file=sys.stderr)
            return 2
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path, count = generate(name, folder)
        print(f"{path}: {count} records")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
