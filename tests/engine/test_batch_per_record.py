"""The batch engine's per-record results for the ledger (engine/batch/per_record.py)
against the scalar Engine's (`evaluate(per_record_only=True)`), which the ledger took
before: the same outcome (`Result.key()` and the message), the same values of every input
the cross-record rules read (type included: a duplicate key's text is stored, `3` and
`3.0` are two texts), the same counter amounts, the same points recomputed after a cap;
and, judged by the reference (engine/cross_record.py) after a state carried from one
piece of the stream to the next as the ledger carries it, the same results and the same
states written. For every bundled methodology without history windows (the ledger
evaluates those with the scalar Engine), the synthetic ones of test_batch_differential.py
and one whose duplicate rules key on inputs of every kind, with records as JSON sends
them (numbers, booleans, padded texts, nulls) beside CSV's texts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from dsl.types import Kind
from engine import Engine, cross_record
from engine.batch import BatchEngine
from engine.batch.ingest import raw_frame
from engine.native.build import build
from engine.result import CREDITED, INVALID
from engine.state import AccountState

from .strategies import record_stream
from .test_batch_differential import HEADER, SYNTHETIC

ROOT = Path(__file__).resolve().parents[2]

KEYS = '''
input order: text
input seats: integer between 0 and 50
input vip: boolean
input day: date
input at: datetime
input until: datetime
input mode: choice { bus, metro }
input distance: quantity [km] between 0 km and 30 km
input note: text optional
reduction = 20 g/km * distance + (if vip then 5 g else 0 g)
points = floor(reduction / 1 g) + seats
forbid duplicate order per account else SAME_ORDER "same order"
forbid duplicate seats, vip, day, note per account else SAME_SEAT "same seat"
forbid duplicate mode, distance per account else SAME_RIDE "same ride"
forbid duplicate mode, at within 5 min per account where mode != bus keep first by until else NEAR "near"
forbid overlap between at and until per account else OVERLAP "overlap"
flag more than 2 records per account within 3 h as BUSY "busy"
bonus 9 points on the 2nd record per account within 1 d
cap reduction at 1 kg per account per day
'''


def _methodologies() -> dict:
    found = {}
    for path in sorted((ROOT / "methodologies").glob("*.tanpu")):
        compiled = compile_source(path.read_text(encoding="utf-8"), str(path))
        assert compiled.ok, compiled.render()
        if not compiled.methodology.histories:
            found[path.stem] = compiled.methodology
    for name, (zone, until, body) in {**SYNTHETIC, "keys": ("Asia/Shanghai", "", KEYS)}.items():
        compiled = compile_source(HEADER.format(id=name, until=until, zone=zone) + body, "t.tanpu")
        assert compiled.ok, compiled.render()
        found[name] = compiled.methodology
    return found


METHODOLOGIES = _methodologies()


@st.composite
def _as_json(draw, methodology, stream: list[dict]) -> list[dict]:
    """The stream with some cells as a JSON body may send them: numbers for integers and
    texts, booleans, padded texts, nulls for optional inputs."""
    kinds = {spec.name: spec.type.kind for spec in methodology.inputs}
    out = []
    for raw in stream:
        raw = dict(raw)
        for name, kind in kinds.items():
            if name not in raw or not draw(st.integers(0, 3)) == 0:
                continue
            value = raw[name]
            if kind == Kind.INTEGER and value.isdigit():
                raw[name] = draw(st.sampled_from([int(value), float(value), f" {value} "]))
            elif kind == Kind.BOOLEAN:
                raw[name] = draw(st.sampled_from([value == "true", "TRUE" if value == "true" else "False", 1]))
            elif kind == Kind.TEXT:
                raw[name] = draw(st.sampled_from([7, 7.5, 3.0, True, f" {value} ", None, "碳", "a\\b\"c"]))
            elif kind == Kind.CHOICE:
                raw[name] = f" {value} "
        out.append(raw)
    return out


def _per_record(methodology, stream):
    """(the scalar Engine's per-record results, the batch engine's, its recompute_points)."""
    scalar = Engine(methodology).evaluate(stream, per_record_only=True)
    engine = BatchEngine(methodology, kernels=build)
    part = engine.per_record(raw_frame(stream))
    batch = engine.batch_of(part, copy=False)
    judged = engine.per_record_results(part, batch, engine.results(part, batch), stream)
    return scalar, judged.results, judged.recompute_points, engine.rules.needed_inputs()


def _judged(results, methodology, recompute, pieces: list[int]):
    """The reference's rules on the results in pieces (the state carried between them, as
    the ledger stores it: JSON), on copies; (their outcomes, the state's texts)."""
    rules = Engine(methodology).rules
    results = [copy.copy(r) for r in results if r.status != INVALID]
    state: dict = {}
    at = 0
    for size in pieces + [len(results)]:
        piece = results[at:at + size]
        at += size
        if not piece:
            continue
        state = {a: AccountState.from_json(rules, s.to_json(rules)) for a, s in state.items()}
        cross_record.apply(piece, rules, recompute, state=state)
    return ([r.key() + (r.message,) for r in results],
            {a: s.to_json(rules) for a, s in sorted(state.items())})


@pytest.mark.parametrize("name", sorted(METHODOLOGIES))
def test_the_batch_engines_results_carry_what_the_ledgers_rules_read(name):
    methodology = METHODOLOGIES[name]
    scalar_engine = Engine(methodology)
    recomputes = any(cap.target == "reduction" for cap in methodology.caps)

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        stream = data.draw(record_stream(methodology, max_size=40))
        stream = data.draw(_as_json(methodology, stream))
        scalar, batch, recompute, needed = _per_record(methodology, stream)
        assert [r.key() + (r.message,) for r in batch] == [r.key() + (r.message,) for r in scalar]
        for s, b in zip(scalar, batch):
            if s.status == INVALID:
                continue
            for name in sorted(needed | {"id", "account", "time"}):
                assert repr(b.values[name]) == repr(s.values[name]), (name, s.values, b.values)
                assert type(b.values[name]) is type(s.values[name])
            if s.status == CREDITED:
                assert b.amounts == tuple(s.amounts)
                for mg in ({0, s.reduction_mg // 2, max(0, s.reduction_mg - 1), s.reduction_mg}
                           if recomputes else ()):  # only a reduction cap recomputes points
                    assert recompute(b, mg) == scalar_engine.recompute_points(s, mg)
        pieces = data.draw(st.lists(st.integers(0, 15), max_size=4))
        assert _judged(batch, methodology, recompute, pieces) == \
            _judged(scalar, methodology, scalar_engine.recompute_points, pieces)
    check()
