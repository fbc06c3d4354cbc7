"""The reference semantics of cross-record rules, on sequences worked out by hand."""

BIKE = '''
input distance: quantity [km]
parameter factor [g/km] = 100 source "test" [ASM]
reduction = factor * distance
points = floor(reduction / 1 g)
'''


def rides(*items, account="a"):
    return [{"id": f"r{i}", "account": account, "time": t, "distance": d}
            for i, (t, d) in enumerate(items)]


def statuses(results):
    return [(r.status, r.code, r.reduction_mg, r.points) for r in results]


def test_daily_cap_credits_what_is_left_then_nothing(engine_for):
    engine = engine_for(BIKE + "cap reduction at 1 kg per account per day\n")
    results = engine.evaluate(rides(("2024-05-20T08:00", "6 km"), ("2024-05-20T09:00", "6 km"),
                                    ("2024-05-20T10:00", "1 km"), ("2024-05-21T08:00", "1 km")))
    assert statuses(results) == [
        ("credited", "", 600_000, 600),
        ("capped", "CAP_REACHED", 400_000, 400),  # points recomputed from the capped reduction
        ("capped", "CAP_REACHED", 0, 0),
        ("credited", "", 100_000, 100),  # a new day in Asia/Shanghai
    ]


def test_cap_days_are_local_days(engine_for):
    engine = engine_for(BIKE + "cap reduction at 1 kg per account per day in Asia/Shanghai\n")
    # 23:30 and 00:30 local are different days although both are 2024-05-20 in UTC
    results = engine.evaluate(rides(("2024-05-20T23:30+08:00", "8 km"), ("2024-05-21T00:30+08:00", "8 km")))
    assert [r.status for r in results] == ["credited", "credited"]


def test_cap_is_per_account_and_in_time_order(engine_for):
    engine = engine_for(BIKE + "cap reduction at 1 kg per account per day\n")
    records = rides(("2024-05-20T10:00", "8 km"), ("2024-05-20T08:00", "8 km"))
    records += rides(("2024-05-20T09:00", "8 km"), account="b")
    records[2]["id"] = "b0"
    results = engine.evaluate(records)
    # the 08:00 ride of account a comes first even though it is the second row
    assert statuses(results) == [("capped", "CAP_REACHED", 200_000, 200),
                                 ("credited", "", 800_000, 800),
                                 ("credited", "", 800_000, 800)]


def test_points_cap_leaves_the_reduction(engine_for):
    engine = engine_for(BIKE + "cap points at 1000 per account per month\n")
    results = engine.evaluate(rides(("2024-05-01T08:00", "8 km"), ("2024-05-20T08:00", "8 km"),
                                    ("2024-06-01T08:00", "8 km")))
    assert statuses(results) == [("credited", "", 800_000, 800),
                                 ("capped", "CAP_REACHED", 800_000, 200),
                                 ("credited", "", 800_000, 800)]


def test_duplicate_ids_and_duplicate_keys(engine_for):
    engine = engine_for(BIKE + "input route: text\nforbid duplicate route per account else SAME_ROUTE \"同一路线 / same route\"\n"
                        "require route != \"\" else NO_ROUTE \"无路线 / no route\"\n")
    records = rides(("2024-05-20T08:00", "1 km"), ("2024-05-20T09:00", "1 km"), ("2024-05-20T10:00", "1 km"))
    for record, route in zip(records, ["x", "x", "y"]):
        record["route"] = route
    records.append(dict(records[2]))  # the same id again
    results = engine.evaluate(records)
    assert [(r.status, r.code) for r in results] == [
        ("credited", ""), ("duplicate", "SAME_ROUTE"), ("credited", ""), ("duplicate", "DUPLICATE_ID")]


TIMED_RIDES = '''
input distance: quantity [km]
input started: datetime
input ended: datetime
parameter factor [g/km] = 100 source "test" [ASM]
reduction = factor * distance
points = floor(reduction / 1 g)
forbid overlap between started and ended per account else OVERLAP "重叠 / overlap"
'''


def test_overlap_is_half_open_and_only_against_accepted_rides(engine_for):
    engine = engine_for(TIMED_RIDES)
    def ride(i, start, end):
        return {"id": f"r{i}", "account": "a", "distance": "1 km",
                "started": f"2024-05-20T{start}", "ended": f"2024-05-20T{end}"}
    results = engine.evaluate([ride(0, "08:00", "08:30"), ride(1, "08:30", "09:00"),
                               ride(2, "08:45", "09:10"), ride(3, "09:00", "09:05")])
    # 08:30 may start when the first ends; 08:45 overlaps the second; 09:00 only overlaps
    # the rejected third ride, which does not count
    assert [(r.status, r.code) for r in results] == [
        ("credited", ""), ("credited", ""), ("rejected", "OVERLAP"), ("credited", "")]


def test_two_overlap_rules_the_first_one_names_the_rejection(engine_for):
    """Overlap rules only (the scalar path's own loop for them): a ride rejected by either
    rule counts for neither, and one both reject gets the first rule's code."""
    engine = engine_for(TIMED_RIDES + "input docked: datetime\ninput undocked: datetime\n"
                        'forbid overlap between docked and undocked per account else DOCK_OVERLAP "停放重叠 / dock"\n')
    def ride(i, start, end, dock, undock):
        day = "2024-05-20T"
        return {"id": f"r{i}", "account": "a", "distance": "1 km", "started": day + start,
                "ended": day + end, "docked": day + dock, "undocked": day + undock}
    records = [ride(0, "08:00", "08:30", "10:00", "10:10"), ride(1, "08:30", "09:00", "10:05", "10:20"),
               ride(2, "08:40", "08:50", "10:10", "10:15"), ride(3, "08:45", "08:55", "10:12", "10:20")]
    results = engine.evaluate(records)
    assert [(r.status, r.code) for r in results] == [
        ("credited", ""), ("rejected", "DOCK_OVERLAP"), ("credited", ""), ("rejected", "OVERLAP")]
    from engine.batch import BatchEngine
    assert [r.key() for r in BatchEngine(engine.methodology).evaluate(records)] == [r.key() for r in results]


def test_flag_and_bonus_windows(engine_for):
    engine = engine_for(BIKE + "flag more than 2 records per account within 1 h as TOO_MANY \"过多 / too many\"\n"
                        "bonus 50 points on the 3rd record per account within 7 days\n")
    results = engine.evaluate(rides(("2024-05-20T08:00", "1 km"), ("2024-05-20T08:20", "1 km"),
                                    ("2024-05-20T08:59", "1 km"), ("2024-05-20T09:00", "1 km"),
                                    ("2024-05-28T09:00", "1 km")))
    assert [r.flags for r in results] == [(), (), ("TOO_MANY",), ("TOO_MANY",), ()]
    # (t - 1 h, t]: at 09:00 the 08:00 ride is out of the window, 08:20 and 08:59 are in
    assert [r.bonus for r in results] == [0, 0, 50, 0, 0]


def test_rejected_records_take_no_part_in_caps(engine_for):
    engine = engine_for(BIKE.replace("points =", "require distance < 5 km else TOO_FAR \"太远 / too far\"\npoints =")
                        + "cap reduction at 1 kg per account per day\n")
    results = engine.evaluate(rides(("2024-05-20T08:00", "9 km"), ("2024-05-20T09:00", "4 km"),
                                    ("2024-05-20T10:00", "4 km"), ("2024-05-20T11:00", "4 km")))
    assert statuses(results) == [("rejected", "TOO_FAR", 0, 0), ("credited", "", 400_000, 400),
                                 ("credited", "", 400_000, 400), ("capped", "CAP_REACHED", 200_000, 200)]


def test_each_account_is_taken_in_the_canonical_order():
    """Accounts are sorted one by one (by time first, the whole key on a tie): the order
    is canonical_order's, ties on time, id and row included."""
    import random

    from engine import cross_record
    from engine.result import INVALID, Result

    rng = random.Random(7)
    for _ in range(200):
        results = [Result(id=f"r{rng.randint(0, 5)}", account=rng.choice("abc"), time=rng.randint(0, 4),
                          status=rng.choice(["credited", "credited", INVALID]),
                          row=rng.choice([None, 1, 2, rng.randint(0, 30)]))
                   for _ in range(rng.randint(0, 30))]
        expected: dict[str, list[int]] = {}
        for i in cross_record.canonical_order(results):
            expected.setdefault(results[i].account, []).append(i)
        assert dict(cross_record._accounts(results)) == expected


DEBITS = '''
input delta: quantity [g] between -1 kg and 1 kg
reduction = delta
points = floor(reduction / 1 g)
cap reduction at 300 g per account per day
'''


def test_a_negative_reduction_makes_no_room_under_a_cap_on_every_path(engine_for):
    """Issue 12: after a -500 g record, +400 g and +100 g records were both credited in
    full under a 300 g daily cap. A negative amount stays what it is and counts as nothing
    towards the cap, on the reference, the batch and the rules paths."""
    from engine.batch import BatchEngine
    from engine.rules import RulesPathEngine

    engine = engine_for(DEBITS)
    records = [{"id": f"r{i}", "account": "a", "time": f"2024-05-20T{8 + i:02d}:00", "delta": d}
               for i, d in enumerate(["-500 g", "400 g", "100 g"])]
    expected = [("credited", "", -500_000, -500), ("capped", "CAP_REACHED", 300_000, 300),
                ("capped", "CAP_REACHED", 0, 0)]
    assert statuses(engine.evaluate(records)) == expected
    assert statuses(BatchEngine(engine.methodology).evaluate(records)) == expected
    assert statuses(RulesPathEngine(engine.methodology).evaluate(records)) == expected


def test_a_duplicate_rule_on_the_builtin_time_is_the_same_on_every_path(engine_for):
    """Issue 12 asked whether `forbid duplicate time per account` is meant: it is (one
    record per instant and account, docs/language.md §9.3), and every path agrees."""
    from engine.batch import BatchEngine
    from engine.rules import RulesPathEngine

    engine = engine_for(BIKE + 'forbid duplicate time per account else SAME_TIME "one a minute"\n')
    records = rides(("2024-05-20T08:00", "1 km"), ("2024-05-20T08:00", "2 km"),
                    ("2024-05-20T09:00", "1 km"))
    expected = [("credited", "", 100_000, 100), ("duplicate", "SAME_TIME", 0, 0),
                ("credited", "", 100_000, 100)]
    assert statuses(engine.evaluate(records)) == expected
    assert statuses(BatchEngine(engine.methodology).evaluate(records)) == expected
    assert statuses(RulesPathEngine(engine.methodology).evaluate(records)) == expected
