"""engine/state.py reads and writes a state by functions made once per rules object
(_Codec: one expression per rule, nothing for a kind the rules lack) where it looped over
every kind of rule for every account of a credit. The stored text must not change (the
states already in databases are read by it, `tanpu ledger verify` compares texts, equal
states are equal text), so the codec is held to the general code: the same state from
the same text, the same text from the same state, for states every kind of rule leaves
(duplicate keys, overlap ends and intervals, flag and bonus windows, caps, counter caps,
counters' totals, rewards' balances), states made at random with values orjson refuses,
another version's parts, and a text written by the code before the codec."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.state import AccountState

from .test_rules_differential import ENGINES, METHODOLOGIES
from .test_state_text import states_left

NAMES = [name for name, _ in METHODOLOGIES]


def _same_both_ways(rules, state: AccountState) -> None:
    """The state's texts (with and without keys, and json's own, as the code before wrote
    them) read by from_json as the general way reads them; written by to_json(keys=False)
    as the general way writes them; read back and written again, the same text."""
    texts = [state.general_text(rules), state.general_text(rules, keys=False),
             state.general_text(rules, by_json=True), None, ""]
    for text in texts:
        read = AccountState.from_json(rules, text)
        assert read == AccountState.general_read(rules, text)
        written = read.to_json(rules, keys=False)
        assert written == read.general_text(rules, keys=False)
        assert AccountState.from_json(rules, written).to_json(rules, keys=False) == written
        assert read.to_json(rules) == read.general_text(rules)
    assert AccountState.empty(rules) == AccountState.general_read(rules, None)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_states_rules_leave_are_read_and_written_as_the_general_way_does(name, data):
    for s in states_left(name, data):
        _same_both_ways(ENGINES[name].rules, s)


def _random_state(rules, rng: random.Random, big: bool) -> AccountState:
    """Every part the rules have filled at random; `big`: integers beyond 64 bits and
    negative ones (orjson refuses the former: the general way's json writes them)."""
    def number():
        if big and rng.random() < 0.3:
            return rng.choice([2 ** 63, 2 ** 64 + 1, -(2 ** 63) - 1, 10 ** 30, -5])
        return rng.randrange(0, 10 ** 12)
    state = AccountState.empty(rules)
    for j in range(len(state.keys)):
        state.keys[j] = {(f"k{rng.randrange(50)}", rng.randrange(9)) for _ in range(rng.randrange(4))}
    for j in range(len(state.ends)):
        times = sorted(rng.randrange(10 ** 15) for _ in range(rng.randrange(4)))
        state.intervals[j] = [(t, t + 1, t + rng.randrange(2, 10 ** 9)) for t in times]
        state.ends[j] = max((iv[2] for iv in state.intervals[j]), default=None)
    for times in (state.flag_times, state.bonus_times):
        for j in range(len(times)):
            times[j] = [rng.randrange(10 ** 15) for _ in range(rng.randrange(5))]
    for periods in (state.caps, state.counter_caps):
        for j in range(len(periods)):
            periods[j] = {rng.randrange(-3, 30_000): number() for _ in range(rng.randrange(5))}
    for totals in (state.counter_totals, state.balances):
        for j in range(len(totals)):
            totals[j] = number()
    return state


@pytest.mark.parametrize("name", NAMES)
def test_states_made_at_random_with_every_part_are_read_and_written_alike(name):
    rules = ENGINES[name].rules
    rng = random.Random(name)
    for i in range(60):
        _same_both_ways(rules, _random_state(rules, rng, big=i % 3 == 0))


def test_every_kind_of_part_is_covered():
    """The random states above fill every kind of part the codec writes."""
    for kind in ("duplicates", "overlaps", "flags", "bonuses", "caps", "counter_caps",
                 "counters", "rewards"):
        assert any(getattr(ENGINES[n].rules, kind) for n in NAMES), kind


def test_another_versions_parts_are_kept_as_the_general_way_keeps_them():
    """A text holding parts of rules these rules do not have (another version's, keys
    and near-duplicate events among them) is read with them in `others` and written back
    with them (the general way, as before)."""
    rules, other = ENGINES["caps"].rules, ENGINES["everything"].rules
    rng = random.Random(3)
    for i in range(30):
        theirs = _random_state(other, rng, big=False)
        mine = _random_state(rules, rng, big=i % 2 == 0)
        text = mine.general_text(rules)[:-1] + "," + theirs.general_text(other)[1:]
        for t in (text, theirs.general_text(other), theirs.general_text(other, keys=False)):
            read = AccountState.from_json(rules, t)
            assert read == AccountState.general_read(rules, t) and read.others
            assert read.to_json(rules, keys=False) == read.general_text(rules, keys=False)
            assert read.to_json(rules) == read.general_text(rules)


# Written by the code before the codec (2f17480: AccountState.to_json(rules) of the
# "everything" rules, every part filled): read and written back by this code alike.
BEFORE_EVERYTHING = (
    '{"bonus:{\\"ordinal\\": 2, \\"points\\": 20, \\"window_seconds\\": 21600}":[5,9],'
    '"cap:{\\"limit\\": 1000000, \\"period\\": \\"day\\", \\"target\\": \\"reduction\\", '
    '\\"timezone\\": \\"Asia/Shanghai\\"}":{"19783":400000,"19784":1000000},'
    '"cap:{\\"limit\\": 700, \\"period\\": \\"day\\", \\"target\\": \\"points\\", '
    '\\"timezone\\": \\"Asia/Shanghai\\"}":{"-1":3,"7":700},'
    '"duplicate:{\\"keys\\": [\\"route\\", \\"started\\"]}":["[\\"r1\\", 1716163200000000]"],'
    '"flag:{\\"count\\": 3, \\"window_seconds\\": 7200}":[1,2,3],'
    '"overlap:{\\"end\\": \\"ended\\", \\"start\\": \\"started\\"}":'
    '{"end":30,"intervals":[[10,11,20],[12,13,30]]}}')


def test_a_state_written_by_the_code_before_is_read_and_written_back_the_same():
    rules = ENGINES["everything"].rules
    state = AccountState.from_json(rules, BEFORE_EVERYTHING)
    assert state.keys == [{("r1", 1716163200000000)}] and state.ends == [30]
    assert state.intervals == [[(10, 11, 20), (12, 13, 30)]]
    assert state.flag_times == [[1, 2, 3]] and state.bonus_times == [[5, 9]]
    assert state.caps == [{19783: 400_000, 19784: 1_000_000}, {-1: 3, 7: 700}]
    assert state.to_json(rules) == BEFORE_EVERYTHING
    without = state.to_json(rules, keys=False)
    assert without == BEFORE_EVERYTHING.replace(
        '"duplicate:{\\"keys\\": [\\"route\\", \\"started\\"]}":["[\\"r1\\", 1716163200000000]"],', "")
    assert without == state.general_text(rules, keys=False)


@pytest.mark.parametrize("name", NAMES)
def test_a_credits_states_read_and_written_together_are_each_ones(name):
    """read_states and state_texts (the ledger's, for every account of a credit at once)
    give what from_json and to_json(keys=False) give each account, another version's
    parts and an account seen for the first time included."""
    from engine.state import read_states, state_texts
    rules, other = ENGINES[name].rules, ENGINES["everything"].rules
    rng = random.Random(name + "together")
    stored = {f"a{i}": _random_state(rules, rng, big=i % 4 == 0).general_text(rules) for i in range(40)}
    stored["theirs"] = _random_state(other, rng, big=False).general_text(other)
    accounts = sorted(stored) + ["new"]
    states = read_states(rules, accounts, stored)
    assert states == {a: AccountState.general_read(rules, stored.get(a)) for a in accounts}
    assert list(states) == accounts
    assert state_texts(rules, states) == {a: s.general_text(rules, keys=False) for a, s in states.items()}
