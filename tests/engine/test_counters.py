"""Counters and rewards (engine/counters.py) on cases with known answers: the issue's
45 points at 20 a ticket, a counter cap, a negative amount, the explanation, and the
state carried between evaluations as the ledger stores it (JSON)."""

from __future__ import annotations

import pytest

from dsl import compile_source
from engine import Engine
from engine.batch import BatchEngine
from engine.explain import render
from engine.native.build import build
from engine.state import AccountState

HEADER = """methodology test.counters "counters" version 1.0.0 {
  covers trip
  effective from 2024-01-01
  timezone Asia/Shanghai
}
"""
BODY = """
input earned: integer between -100 and 1000
input kind: choice { ride, walk }
points = earned
counter rides [ride] = if kind == ride then 1 else 0
counter bonus_rides [ride] = if kind == ride then earned - earned else 0 - 1 * earned
cap counter rides at 2 ride per account per day
reward ticket every 20 points worth 2 CNY
"""


def _engine():
    compiled = compile_source(HEADER + BODY, "counters.tanpu")
    assert compiled.ok, compiled.render()
    return compiled.methodology, Engine(compiled.methodology)


def _record(i, earned, kind="ride", day="2024-06-01", hour=8, account="a"):
    return {"id": f"r{i}", "account": account, "time": f"{day}T{hour:02d}:00",
            "earned": str(earned), "kind": kind}


def test_45_points_at_20_a_ticket_give_two_tickets_and_keep_5():
    _, engine = _engine()
    first, second = engine.evaluate([_record(1, 45), _record(2, 15, hour=9)])
    assert first.counters == ("rides=1", "bonus_rides=0", "ticket=2")
    # the 5 points kept and 15 more make one ticket, nothing left
    assert second.counters == ("rides=1", "bonus_rides=0", "ticket=1")


def test_the_remainder_is_carried_in_the_state_between_evaluations():
    m, engine = _engine()
    state: dict = {}
    engine.evaluate([_record(1, 45)], state=state)
    stored = {a: s.to_json(engine.rules) for a, s in state.items()}
    state = {a: AccountState.from_json(engine.rules, text) for a, text in stored.items()}
    assert state["a"].balances == [5] and state["a"].counter_totals == [1, 0]
    (second,) = engine.evaluate([_record(2, 15, hour=9)], state=state)
    assert second.counters == ("rides=1", "bonus_rides=0", "ticket=1")
    assert state["a"].balances == [0]


def test_a_counter_cap_cuts_the_counter_not_the_points():
    _, engine = _engine()
    results = engine.evaluate([_record(i, 10, hour=8 + i) for i in range(3)])
    assert [r.status for r in results] == ["credited", "credited", "capped"]
    assert results[2].code == "CAP_REACHED" and results[2].points == 10
    assert results[2].message == "counter rides cap of 2 ride per account per day reached"
    assert [r.counters[0] for r in results] == ["rides=1", "rides=1", "rides=0"]


def test_a_negative_counter_amount_rejects_the_record_on_every_path():
    m, engine = _engine()
    stream = [_record(1, 5, kind="walk")]  # bonus_rides = -5
    scalar = engine.evaluate(stream)
    batch = BatchEngine(m).evaluate(stream)
    for results in (scalar, batch):
        assert results[0].status == "rejected" and results[0].code == "NEGATIVE_COUNTER"
        assert results[0].counters == ()


def test_negative_points_convert_nothing_and_take_nothing_back():
    _, engine = _engine()
    results = engine.evaluate([_record(1, 15), _record(2, -50, hour=9), _record(3, 5, hour=10)])
    assert [r.counters[2] for r in results] == ["ticket=0", "ticket=0", "ticket=1"]


def test_the_explanation_says_what_each_counter_and_reward_moved():
    _, engine = _engine()
    (result,) = engine.evaluate([_record(1, 45)], explain=True)
    lines = render(result.explanation)
    assert "  counted    rides + 1 ride   account total 1" in lines
    assert "  reward     ticket × 2 = 4 CNY   every 20 points; 5 kept" in lines


@pytest.mark.parametrize("caps", ["", "cap points at 25 per account per day\ncap points at 60 per account per week\n"],
                         ids=["counters", "and point caps"])
def test_the_batch_path_carries_counters_and_rewards_in_the_state(caps):
    """The batch engine given the accounts' state (engine/batch/counters.py): a stream of
    three accounts over four days cut at random points, each piece evaluated with the
    state of those before (stored as JSON between them), moves what the scalar engine
    moves on the stream whole, and leaves its state; a stored reward remainder of a
    whole unit or more (what a reversal can leave, registry/reversals.py) is converted
    at the account's next record as the scalar engine converts it. Both batch paths: the
    canonical order by two sorts, and by its C pass (rules.AccountOrder)."""
    compiled = compile_source(HEADER + BODY + caps, "counters.tanpu")
    assert compiled.ok, compiled.render()
    methodology, engine = compiled.methodology, Engine(compiled.methodology)
    for batch in (BatchEngine(methodology), BatchEngine(methodology, kernels=build)):
        _carries(engine, batch, methodology)


def _carries(engine, batch, methodology):
    import json
    import random

    rng = random.Random(7)
    for trial in range(25):
        raws = sorted((_record(i, rng.randint(-5, 30), rng.choice(["ride", "ride", "walk"]),
                               f"2024-06-0{rng.randint(1, 4)}", rng.randint(6, 22), rng.choice("abc"))
                       for i in range(rng.randint(0, 40))), key=lambda r: (r["time"], r["id"]))
        start = {"a": AccountState.empty(engine.rules)}
        start["a"].balances = [rng.randint(0, 45)]  # a remainder left by a reversal
        whole_state = {a: AccountState.from_json(engine.rules, s.to_json(engine.rules)) for a, s in start.items()}
        whole = [(r.id, r.status, r.points, r.counters) for r in engine.evaluate(raws, state=whole_state)]
        cuts = sorted(rng.sample(range(len(raws) + 1), min(3, len(raws) + 1)))
        state = {a: AccountState.from_json(engine.rules, s.to_json(engine.rules)) for a, s in start.items()}
        out = []
        for a, b in zip([0] + cuts, cuts + [len(raws)]):
            out += [(r.id, r.status, r.points, r.counters) for r in batch.evaluate(raws[a:b], state=state)]
            state = {k: AccountState.from_json(engine.rules, s.to_json(engine.rules)) for k, s in state.items()}
        assert sorted(out) == sorted(whole), trial
        empty = json.loads(AccountState.empty(engine.rules).to_json(engine.rules))

        def stored(states):  # an account's empty state is as good as none (from_json(None))
            return {k: v for k, v in ((k, json.loads(s.to_json(engine.rules))) for k, s in states.items())
                    if v != empty}
        assert stored(state) == stored(whole_state), trial


@pytest.mark.parametrize("history", ["", "history usual = mean earned over the previous 2 days\n"
                                         "  otherwise partial\n"],
                         ids=["order sorted beside the rules", "order of the history windows"])
def test_the_counters_reuse_one_canonical_order_and_move_what_the_scalar_path_moves(history):
    """The counters take the canonical order made once for the whole batch (rules.py
    `ordered_positions`, sorted beside the rules from `Rules.ahead_rows` rows, or the
    one the history windows sorted, Part.ordered) and keep the subsequence of their
    records: the same counters, statuses and points as the scalar engine, on both batch
    paths, with records at one time (ties by id), several accounts and days."""
    import random

    compiled = compile_source(HEADER + BODY + history, "counters.tanpu")
    assert compiled.ok, compiled.render()
    methodology = compiled.methodology
    rng = random.Random(11)
    raws = [_record(i, rng.randint(-5, 30), rng.choice(["ride", "ride", "walk"]),
                    f"2024-06-0{rng.randint(1, 4)}", rng.choice([6, 8, 8, 23]), rng.choice("abcd"))
            for i in range(300)]
    raws[7]["earned"] = "many"  # an invalid record among them
    expected = [(r.id, r.status, r.code, r.points, r.counters) for r in Engine(methodology).evaluate(raws)]
    for batch in (BatchEngine(methodology), BatchEngine(methodology, kernels=build)):
        batch.rules.ahead_rows = 0
        got = [(r.id, r.status, r.code, r.points, r.counters) for r in batch.evaluate(raws)]
        assert got == expected
