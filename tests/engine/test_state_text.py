"""A state's text is written by orjson where that gives json's text (engine/state.py
_dumps): the stored state must stay the same text (equal states are equal text; a state
written before is read and written back), so the text is compared with json's encoder's
for states every kind of rule leaves, for keys of every character and type, and for
values orjson refuses."""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import cross_record
from engine.state import AccountState

from .strategies import record_stream
from .test_rules_differential import ENGINES, METHODOLOGIES
from .test_state_key_text import _keys

NAMES = [name for name, _ in METHODOLOGIES]


def states_left(name: str, data) -> list[AccountState]:
    """The accounts' states the methodology `name`'s rules leave after a drawn stream of
    its records, judged in time order (shared by test_state_codec.py)."""
    engine = ENGINES[name]
    raws = data.draw(record_stream(dict(METHODOLOGIES)[name], max_size=30, broken=False))
    for i, raw in enumerate(raws):
        raw["id"] = f"r{i}"
    results = [r for r in engine.evaluate(raws, per_record_only=True) if r.status != "invalid"]
    results.sort(key=lambda r: (r.time, r.account, r.id))
    state: dict = {}
    cross_record.apply(copy.deepcopy(results), engine.rules, engine.recompute_points, state=state)
    return list(state.values())


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_states_rules_leave_are_written_as_json_writes_them(name, data):
    engine = ENGINES[name]
    for s in states_left(name, data):
        text = s.to_json(engine.rules)
        assert text == s.to_json(engine.rules, by_json=True)
        # read back and written again: the same text
        assert AccountState.from_json(engine.rules, text).to_json(engine.rules) == text


def test_keys_of_every_character_and_type_and_values_orjson_refuses():
    rng = random.Random(11)
    engines = [e for e in ENGINES.values() if e.rules.duplicates]
    keys = _keys(rng)  # quotes, controls, U+2028, lone surrogates, non-BMP, big ints, floats
    for engine in engines:
        rules = engine.rules
        for size in (1, 2, 5, 50):
            state = AccountState.empty(rules)
            state.keys[0] = set(rng.sample(keys, size))
            assert state.to_json(rules) == state.to_json(rules, by_json=True)
        state = AccountState.empty(rules)
        for value in (2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 30):  # orjson: u64 at most
            if rules.caps:
                state.caps[0] = {19_783: value}
            if rules.counters:
                state.counter_totals[0] = value
            assert state.to_json(rules) == state.to_json(rules, by_json=True)
    with_caps = [e for e in ENGINES.values() if e.rules.caps]
    assert with_caps
    rules = with_caps[0].rules
    state = AccountState.empty(rules)
    state.caps[0] = {19_783: 1, -5: 2 ** 70, 0: 0}
    assert state.to_json(rules) == state.to_json(rules, by_json=True)
