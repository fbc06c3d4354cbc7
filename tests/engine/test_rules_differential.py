"""The durable_rules path (engine/rules) against the reference (engine/cross_record.py).

Hypothesis record streams of every bundled methodology with cross-record rules and of
synthetic ones (caps of every period on reduction and points, overlaps, duplicate keys,
bonuses, flags) must give results identical to the reference, record by record
(Result.key()), also when accounts are cut into many tiny sessions. Then the prior state
(what was already credited), and the worker's failures: killed mid-batch, timed out,
recycled.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine import Engine, cross_record
from engine.result import CAPPED, CREDITED, Result
from engine.rules import Credited, RulesEngine, RulesEngineError, compile_rules
from engine.rules.ids import IdAllocator, fnv1_32
from engine.rules.ruleset import ACTIONS
from engine.rules.worker import Limits, Worker

from .strategies import record, record_stream

ROOT = Path(__file__).resolve().parents[2]
HEADER = """methodology test.{name} "{name}" version 1.0.0 {{
  covers test_activity
  effective from 2020-01-01
  timezone Asia/Shanghai
}}
"""

SYNTHETIC = {
    # every period, both targets, a zone of its own; a points cap after a reduction cap
    # (the capped reduction's points are recomputed before the points cap sees them)
    "caps": """
input distance: quantity [km] between 0 km and 40 km
input mode: choice { fast "fast", slow "slow" }
reduction = if mode == fast then distance * 30 g/km else distance * 12.5 g/km
points = floor(reduction / 1 g) + (if mode == fast then 7 else 0)
cap reduction at 1.5 kg per account per day
cap points at 2500 per account per week
cap reduction at 4 kg per account per month in UTC
cap points at 6000 per account per year
""",
    "points-cap": """
input distance: quantity [km] between 0 km and 40 km
reduction = distance * 20 g/km
points = floor(reduction / 10 g)
cap points at 150 per account per day
""",
    "overlap-duplicate": """
input route: choice { r1 "r1", r2 "r2" }
input distance: quantity [km] between 0 km and 40 km
input started: datetime
input ended: datetime
input day: date
reduction = distance * 10 g/km
points = floor(reduction / 1 g)
forbid duplicate route, distance per account else SAME_TRIP "the same trip again"
forbid duplicate started per account else SAME_START "two trips cannot start together"
forbid overlap between started and ended per account else OVERLAP "trips overlap"
forbid overlap between day and day per account else SAME_DAY "never, a day ends where it starts"
""",
    "windows": """
input distance: quantity [km] between 0 km and 40 km
reduction = distance * 10 g/km
points = floor(reduction / 1 g)
flag more than 2 records per account within 1 h as BURST "three within the hour"
flag more than 4 records per account within 1 d as BUSY "five within a day"
bonus 10 points on the 1st record per account within 1 d
bonus 5 points on the 3rd record per account within 2 h
""",
    # counters with caps (one in UTC), rewards from points (after a points cap and with
    # bonus points) and from a capped counter, the remainders carried on the account
    "counters": """
input mode: choice { bus "bus", walk "walk" }
input distance: quantity [km] between 0 km and 40 km
reduction = distance * 10 g/km
points = floor(reduction / 1 g)
cap points at 300 per account per day
bonus 10 points on the 2nd record per account within 1 d
counter rides [ride] = if mode == bus then 1 else 0
counter km = floor(distance / 1 km)
counter fares [fen] = if mode == bus then 200 else 0
cap counter rides at 2 ride per account per day
cap counter km at 50 per account per week in UTC
reward voucher every 40 points worth 5 CNY
reward ticket every 3 rides worth 2 CNY
reward refund every 500 fares worth 1 ride
""",
    "everything": """
input route: choice { r1 "r1", r2 "r2", r3 "r3" }
input distance: quantity [km] between 0 km and 40 km
input started: datetime
input ended: datetime
reduction = distance * 25 g/km
points = floor(reduction / 2 g)
forbid duplicate route, started per account else SAME_TRIP "the same trip again"
forbid overlap between started and ended per account else OVERLAP "trips overlap"
flag more than 3 records per account within 2 h as BURST "four within two hours"
bonus 20 points on the 2nd record per account within 6 h
cap reduction at 1 kg per account per day
cap points at 700 per account per day
""",
}


def _compile(text: str, name: str):
    compiled = compile_source(text, name)
    assert compiled.ok, compiled.render()
    return compiled.methodology


def _bundled():
    out = []
    for path in sorted((ROOT / "methodologies").glob("*.tanpu")):
        compiled = compile_source(path.read_text(encoding="utf-8"), str(path))
        if compiled.ok and compiled.methodology.has_cross_record_rules:
            out.append((path.stem, compiled.methodology))
    return out


BUNDLED = _bundled()
METHODOLOGIES = BUNDLED + [(name, _compile(HEADER.format(name=name) + body, name))
                           for name, body in SYNTHETIC.items()]
ENGINES = {name: Engine(m) for name, m in METHODOLOGIES}
# retries=0: a crash of the worker fails the test instead of being retried away
RULES = {name: RulesEngine(m, engine=ENGINES[name], retries=0) for name, m in METHODOLOGIES}
TINY = {name: RulesEngine(m, engine=ENGINES[name], retries=0, chunk_size=3) for name, m in METHODOLOGIES}

# each example: a round trip to the worker; 16 under `make test`, 30 under `make fuzz`
EXAMPLES = min(30, max(15, settings().max_examples // 6))
pytestmark = pytest.mark.fuzz


def _per_record(engine: Engine, raws: list[dict]):
    """Results before the cross-record rules (what Engine.evaluate computes first)."""
    results = []
    original = engine.apply_cross_record
    engine.apply_cross_record = lambda results, explain=False: None
    try:
        results = engine.evaluate(raws, explain=True)
    finally:
        del engine.apply_cross_record
    assert engine.apply_cross_record == original
    return results


def _both(name: str, raws: list[dict], rules: RulesEngine, prior=None):
    engine = ENGINES[name]
    reference = _per_record(engine, raws)
    mine = _per_record(engine, raws)
    cross_record.apply(reference, engine.methodology, engine.recompute_points, explain=True)
    rules.apply(mine, prior_state=prior, explain=True)
    return reference, mine


def _assert_same(reference, mine):
    assert [r.key() for r in mine] == [r.key() for r in reference]
    assert [r.message for r in mine] == [r.message for r in reference]
    assert [r.explanation for r in mine] == [r.explanation for r in reference]


def test_there_are_methodologies_of_every_kind():
    assert BUNDLED, "no bundled methodology has cross-record rules"
    kinds = {kind for _, m in METHODOLOGIES for kind in ("caps", "overlaps", "duplicates", "bonuses", "flags")
             if getattr(m, kind)}
    assert kinds == {"caps", "overlaps", "duplicates", "bonuses", "flags"}
    periods = {(cap.target, cap.period) for _, m in METHODOLOGIES for cap in m.caps}
    assert {p for _, p in periods} == {"day", "week", "month", "year"}


@pytest.mark.parametrize("name", [name for name, _ in METHODOLOGIES])
@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_same_as_reference(name, data):
    m = dict(METHODOLOGIES)[name]
    raws = data.draw(record_stream(m, max_size=40))
    _assert_same(*_both(name, raws, RULES[name]))


@pytest.mark.parametrize("name", [name for name, _ in METHODOLOGIES])
@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_same_as_reference_in_sessions_of_three_records(name, data):
    """Accounts cut into sessions of 3 records: the state carried from one session to the
    next must be all that the rules need."""
    m = dict(METHODOLOGIES)[name]
    raws = data.draw(record_stream(m, max_size=40, broken=False))
    _assert_same(*_both(name, raws, TINY[name]))


@st.composite
def _around_new_year(draw, m):
    """Records around month, year and week boundaries (2024-01-01 is a Monday), in both
    the methodology's zone and UTC (the monthly cap's zone)."""
    raws = []
    for i in range(draw(st.integers(min_value=0, max_value=30))):
        raw = draw(record(m, i, broken=False))
        moment = dt.datetime(2023, 12, 29) + dt.timedelta(hours=draw(st.integers(0, 24 * 9)))
        raw["time"] = moment.isoformat(timespec="minutes")
        raws.append(raw)
    return raws


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_caps_across_period_boundaries(data):
    m = dict(METHODOLOGIES)["caps"]
    raws = data.draw(_around_new_year(m))
    _assert_same(*_both("caps", raws, RULES["caps"]))


# ---------------------------------------------------------------- prior state
DAILY = _compile(HEADER.format(name="daily") + """
input distance: quantity [km] between 0 km and 100 km
reduction = distance * 40 g/km
points = floor(reduction / 1 g)
cap reduction at 1 kg per account per day
""", "daily")
ENGINES["daily"] = Engine(DAILY)


def test_already_credited_today_caps_earlier():
    raws = [{"id": f"r{i}", "account": "a", "distance": "10 km", "time": f"2024-05-20T{8 + i:02d}:00"}
            for i in range(3)]  # 400 g each

    def run(prior):
        results = _per_record(ENGINES["daily"], raws)
        RulesEngine(DAILY).apply(results, prior_state=prior)
        return [(r.status, r.reduction_mg, r.points) for r in results]

    assert run(None) == [(CREDITED, 400_000, 400), (CREDITED, 400_000, 400), (CAPPED, 200_000, 200)]
    today = [Credited("a", "reduction", "day", dt.date(2024, 5, 20), 500_000)]
    assert run(today) == [(CREDITED, 400_000, 400), (CAPPED, 100_000, 100), (CAPPED, 0, 0)]
    over = [Credited("a", "reduction", "day", dt.date(2024, 5, 20), 1_200_000)]
    assert run(over) == [(CAPPED, 0, 0)] * 3
    elsewhere = [Credited("a", "reduction", "day", dt.date(2024, 5, 19), 900_000),
                 Credited("b", "reduction", "day", dt.date(2024, 5, 20), 900_000),
                 Credited("a", "points", "day", dt.date(2024, 5, 20), 900),
                 Credited("a", "reduction", "week", dt.date(2024, 5, 20), 900_000)]
    assert run(elsewhere) == run(None)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), credited=st.dictionaries(st.sampled_from(["a", "b", "c"]),
                                                st.integers(min_value=0, max_value=1_000_000)))
def test_prior_state_is_an_earlier_credited_record(data, credited):
    """Credited X today == a record crediting X at the start of the day came first."""
    raws = data.draw(record_stream(DAILY, max_size=30, broken=False))
    day = dt.date(2024, 5, 20)
    midnight = int(dt.datetime(2024, 5, 19, 16, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    reference = _per_record(ENGINES["daily"], raws)
    earlier = [Result(id=f"ledger-{a}", account=a, time=midnight, status=CREDITED,
                                   reduction_mg=x, points=x // 1000, values={})
               for a, x in credited.items()]
    combined = earlier + reference
    cross_record.apply(combined, DAILY, ENGINES["daily"].recompute_points)
    mine = _per_record(ENGINES["daily"], raws)
    RulesEngine(DAILY, engine=ENGINES["daily"]).apply(
        mine, prior_state=[Credited(a, "reduction", "day", day, x) for a, x in credited.items()])
    assert [r.key() for r in mine] == [r.key() for r in combined[len(earlier):]]


# ---------------------------------------------------------------- the ruleset
@pytest.mark.parametrize("name", [name for name, _ in METHODOLOGIES])
def test_the_ruleset_is_json_with_named_actions_only(name):
    rules = compile_rules(dict(METHODOLOGIES)[name])
    definition = json.loads(rules.json())
    assert list(definition) == [rules.name]
    for rule in definition[rules.name].values():
        assert isinstance(rule["run"], str) and rule["run"].split("#")[0] in ACTIONS
        assert rule["all"]


def _references(condition, labels) -> bool:
    if isinstance(condition, dict):
        return any((key in labels and isinstance(value, str)) or _references(value, labels)
                   for key, value in condition.items())
    if isinstance(condition, list):
        return any(_references(item, labels) for item in condition)
    return False


@pytest.mark.parametrize("name", [name for name, _ in METHODOLOGIES])
def test_every_join_ends_with_a_test_that_holds(name):
    """durable_rules reads past a join's tests when the last one is false (ruleset._join)."""
    for rule in compile_rules(dict(METHODOLOGIES)[name]).definition.values():
        labels = [next(iter(c)).split("$")[0] for c in rule["all"]]
        for condition in rule["all"]:
            (label, test), = condition.items()
            if "$and" in test and _references(test["$and"], set(labels) - {label.split("$")[0]}):
                assert list(test["$and"][-1]) == ["$lte"] and list(test["$and"][-1]["$lte"]) == ["one"]


def test_message_ids_never_share_a_hash():
    assert fnv1_32("f6059") == fnv1_32("f264602")  # durable_rules would take one for the other
    ids = IdAllocator("s")
    ids._next = 6058
    assert ids.new("f") == "f6059"
    ids._next = 264_601
    assert ids.new("f") == "f264603"  # f264602 is skipped


# ---------------------------------------------------------------- the worker
def _busy(records: int):
    """One account with many rides, 10 g each, as the formulas left them: a batch that
    takes the worker a while (and that it can finish, capped, if it is quick)."""
    start = dt.datetime(2024, 1, 1)
    return _per_record(ENGINES["daily"], [
        {"id": f"r{i}", "account": "a", "distance": "0.25 km",
         "time": (start + dt.timedelta(minutes=i)).isoformat()} for i in range(records)])


class _SignalledWithTheRequest(Worker):
    """A real worker process that gets a signal as soon as the next request is sent to it
    (SIGKILL: it dies mid-request; SIGSTOP: it hangs), on any machine, however fast it
    would have got through the request."""

    signal_next = None

    def _receive(self, timeout: float):
        if self.signal_next is not None:
            os.kill(self.pid, self.signal_next)
            self.signal_next = None
        return super()._receive(timeout)


def _small():
    return _per_record(ENGINES["daily"], [{"id": "x", "account": "a", "distance": "1 km",
                                            "time": "2024-01-01T08:00"}])


def test_a_killed_worker_raises_and_the_next_call_works():
    worker = _SignalledWithTheRequest()
    try:
        rules = RulesEngine(DAILY, worker=worker, retries=0)
        rules.apply(_small())  # the worker is up
        pid = worker.pid
        results = _busy(2_000)
        before = [r.key() for r in results]
        worker.signal_next = signal.SIGKILL
        with pytest.raises(RulesEngineError, match="died"):
            rules.apply(results)
        assert [r.key() for r in results] == before  # untouched: the caller can fall back
        again = _small()
        rules.apply(again)
        assert again[0].status == CREDITED
        assert worker.pid != pid
    finally:
        worker.stop()


def test_a_retry_hides_one_crash():
    worker = Worker()
    try:
        rules = RulesEngine(DAILY, worker=worker, retries=1)
        rules.apply(_small())
        os.kill(worker.pid, signal.SIGKILL)  # dies while idle: the next call starts another
        time.sleep(0.1)
        results = _small()
        rules.apply(results)
        assert results[0].status == CREDITED
    finally:
        worker.stop()


def test_a_hung_worker_times_out_and_is_replaced():
    worker = _SignalledWithTheRequest()
    try:
        slow = RulesEngine(DAILY, worker=worker, retries=0, timeout=0.5)
        slow.apply(_small())
        pid = worker.pid
        worker.signal_next = signal.SIGSTOP  # hangs: stopped, not dead
        with pytest.raises(RulesEngineError, match="no answer within"):
            slow.apply(_busy(2_000))
        results = _small()
        RulesEngine(DAILY, worker=worker).apply(results)
        assert results[0].status == CREDITED and worker.pid != pid
    finally:
        worker.stop()


def test_the_worker_is_recycled_after_its_rulesets():
    worker = Worker(Limits(max_rulesets=2))
    try:
        RulesEngine(DAILY, worker=worker).apply(_small())
        pid = worker.pid
        RulesEngine(DAILY, worker=worker).apply(_small())  # the same ruleset: loaded once
        assert worker.pid == pid
        name, m = METHODOLOGIES[-1]
        RulesEngine(m, worker=worker).apply(_per_record(ENGINES[name], []))
        RulesEngine(m, worker=worker).apply(_per_record(ENGINES[name], [
            {"id": "x", "account": "a", "route": "r1", "distance": "1 km",
             "started": "2024-01-01T08:00", "ended": "2024-01-01T08:10"}]))
        assert not worker.alive  # two rulesets served: stopped, to start afresh
        RulesEngine(DAILY, worker=worker).apply(_small())
        assert worker.pid != pid
    finally:
        worker.stop()


def test_without_cross_record_rules_only_ids_are_checked_and_no_worker_starts():
    compiled = compile_source((ROOT / "methodologies" / "rooftop-pv-grid.tanpu").read_text(encoding="utf-8"))
    m = compiled.methodology
    assert not m.has_cross_record_rules
    engine = Engine(m)
    raws = [{"id": i, "account": a, "generated": "100 kWh", "region": "south", "capacity": "0.01 MW",
             "time": "2023-06-30T12:00"} for i, a in (("x", "a"), ("y", "a"), ("x", "b"))]
    reference, mine = _per_record(engine, raws), _per_record(engine, raws)
    cross_record.apply(reference, m, engine.recompute_points)
    worker = Worker()
    RulesEngine(m, worker=worker).apply(mine)
    assert [r.key() for r in mine] == [r.key() for r in reference]
    assert mine[2].code == "DUPLICATE_ID" and worker.pid is None


def test_tanpu_eval_engine_rules(tmp_path):
    from click.testing import CliRunner

    from tanpu.cli import main

    rides = tmp_path / "rides.csv"
    rides.write_text("id,account,distance,started,ended\n"
                     "r1,a,10 km,2024-05-20T08:00,2024-05-20T08:30\n"
                     "r2,a,3 km,2024-05-20T08:20,2024-05-20T08:40\n"
                     "r3,a,20 km,2024-05-20T09:00,2024-05-20T09:50\n"
                     "r4,a,5 km,2024-05-20T10:00,2024-05-20T10:20\n"
                     "r1,b,1 km,2024-05-20T10:00,2024-05-20T10:20\n", encoding="utf-8")
    source = str(ROOT / "methodologies" / "chongqing-shared-ebike.tanpu")
    outputs = {}
    for engine in ("scalar", "rules"):
        done = CliRunner().invoke(main, ["eval", source, str(rides), "--engine", engine])
        assert done.exit_code == 0, done.output
        outputs[engine] = done.output
    assert outputs["rules"] == outputs["scalar"]
    assert "OVERLAP" in outputs["rules"] and "CAP_REACHED" in outputs["rules"]
