"""Examples that say what methodologies print (engine/expectations.py): a `let` by name,
an account's totals after a sequence, a value to a stated number of decimals; a failure
prints the expected and computed values in full and the difference."""

from __future__ import annotations

from engine import Engine
from engine.examples import run_examples

from .conftest import compile_text

BODY = """
input distance: quantity [km]
input mode: choice { bus, metro }
let factor [g/km] = 5.98 kg / 22 km
let metro_ride = mode == metro
reduction = factor * distance
points = floor(reduction / 1 g)
cap points at 6000 per account per day
example "named values" { distance: 12.4 km, mode: bus }
  => factor 271.82 g/km to 2 decimals, reduction 3.37 kg to 2 decimals, reduction 3370.545 g,
     metro_ride false, points 3370
example "totals after a sequence" {
  { distance: 10 km, mode: bus } => total points 2718
  { distance: 10 km, mode: metro } => total points 5436, total reduction 5.44 kg to 2 decimals,
    total reduction 5436.364 g
  { distance: 10 km, mode: bus } => capped, total points 6000
}
example "a wrong one" { distance: 12.4 km, mode: bus }
  => factor 271.8 g/km to 1 decimals, reduction 3.3 kg to 1 decimals, total points 3371,
     factor 271.82 g/km, metro_ride true
"""


def test_named_values_totals_and_decimals():
    outcomes = run_examples(Engine(compile_text(BODY)))
    assert [o.passed for o in outcomes] == [True, True, False]
    failures = outcomes[2].failures
    assert failures[0] == ("expected reduction 3.3 kg to 1 decimals, got 3.370545 kg "
                           "(to 1 decimals 3.4 kg, difference 0.1 kg)")
    assert failures[1] == "expected total points 3371, got 3370 (difference -1)"
    # every digit of the float the engine holds, and the difference
    assert failures[2].startswith("expected factor 271.82 g/km, got 271.8181818181818264028")
    assert failures[2].endswith("g/km)") and "(difference -0.00181818181817359" in failures[2]
    assert failures[3] == "expected metro_ride true, got false"
    assert len(failures) == 4  # `factor 271.8 g/km to 1 decimals` holds


def test_a_definition_of_a_rejected_record_is_reported_as_missing():
    body = BODY.split("example")[0] + (
        'require distance < 100 km else TOO_FAR "too far"\n'
        'example "rejected" { distance: 120 km, mode: bus } => rejected TOO_FAR, factor 271.82 g/km to 2 decimals\n'
        'example "no reduction" { distance: 120 km, mode: bus } => rejected TOO_FAR, reduction 1 kg to 0 decimals\n')
    outcomes = run_examples(Engine(compile_text(body)))
    # the require needs no factor: the record is rejected before it is computed
    assert outcomes[0].failures == ["expected factor 271.82 g/km to 2 decimals, got nothing "
                                    "(rejected TOO_FAR: too far)"]
    assert outcomes[1].failures == ["expected reduction 1 kg to 0 decimals, got nothing (rejected TOO_FAR: too far)"]


def test_totals_of_counters_and_rewards():
    """`total COUNTER N` and `total REWARD N`: what the sequence moved so far (a counter
    after its cap), two accounts apart; a wrong total names both numbers."""
    body = """
input line: text
points = 10
counter rides [ride] = 1
cap counter rides at 2 ride per account per day
reward voucher every 25 points worth 5 CNY
example "rides and vouchers" {
  { line: "K1", account: "a", time: 2024-05-20T07:00 } => total rides 1, total voucher 0
  { line: "K1", account: "a", time: 2024-05-20T08:00 } => total rides 2, total voucher 0
  { line: "K1", account: "b", time: 2024-05-20T08:30 } => total rides 1, total voucher 0
  { line: "K1", account: "a", time: 2024-05-20T09:00 } => capped, total rides 2, total voucher 1
}
example "a wrong total" {
  { line: "K1", time: 2024-05-20T07:00 } => total voucher 1
}
"""
    outcomes = run_examples(Engine(compile_text(body)))
    assert outcomes[0].passed, outcomes[0].failures
    assert outcomes[1].failures == ["expected total voucher 1, got 0 (difference -1)"]
