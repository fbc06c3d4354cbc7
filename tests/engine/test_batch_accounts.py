"""How the batch cross-record rules tell accounts apart, and the fast paths that read text cells.

Accounts are grouped by a 64-bit hash of their text; a second, independently seeded
hash must agree wherever the first does. These tests give `canonical` and the rules
hashes that collide on purpose (the real hash never does on such small inputs), so the
fallback to the text itself is exercised.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine import Engine
from engine.batch import BatchEngine
from engine.batch import text as tx
from engine.batch.rules import AccountOrder, HashCollision, account_hashes, canonical, pack_sort, time_order
from engine.native.build import build, compiler

CAPPED = '''methodology test.collide "collide" version 1.0.0 {
  covers ride
  effective from 2024-01-01
  timezone Asia/Shanghai
}
input distance: quantity [km]
parameter factor [g/km] from 2024-01-01 source "test" [ASM] = 100
reduction = factor * distance
points = floor(reduction / 1 g)
cap reduction at 1 kg per account per day
'''


def _engine() -> BatchEngine:
    compiled = compile_source(CAPPED, "collide.tanpu")
    assert compiled.ok, compiled.render()
    return BatchEngine(compiled.methodology)


def _records() -> list[dict]:
    # two accounts, 6 km each on one day: each reaches its 1 kg cap on its own
    out = []
    for i in range(6):
        for account in ("alice", "bob"):
            out.append({"id": f"{account}-{i}", "account": account, "activity": "ride",
                        "time": f"2024-05-20T08:{i:02d}:00", "distance": "2 km"})
    return out


def _batch(engine: BatchEngine, raw: list[dict]):
    frame = pl.DataFrame(raw)
    part = engine.per_record(frame)
    return engine.batch_of(part)


def test_colliding_hashes_with_different_checks_raise():
    engine = _engine()
    batch = _batch(engine, _records())
    positions = np.arange(batch.n)
    same = np.zeros(batch.n, dtype=np.uint64)  # every account collides
    _, check = account_hashes(batch.accounts, positions)
    with pytest.raises(HashCollision):
        canonical(batch, positions, same, check)


@settings(max_examples=200)
@given(st.lists(st.integers(0, 2 ** 64 - 1) | st.integers(0, 40), max_size=300))
def test_numpys_and_polars_sorts_give_pack_sort_the_same_bits(values):
    """pack_sort takes NumPy's sort or Polars' by the CPU (rules.NUMPY_SORTS_FAST): a
    machine's choice must never change an order or a sorted value."""
    from engine.batch import rules
    keys = np.array(values, dtype=np.uint64)
    chosen = rules.NUMPY_SORTS_FAST
    try:
        got = []
        for numpy_sorts in (True, False):
            rules.NUMPY_SORTS_FAST = numpy_sorts
            order, sorted_keys, lossy = pack_sort(keys)
            got.append((order.tolist(), sorted_keys.tolist(), lossy, rules.sort_values(keys).tolist()))
    finally:
        rules.NUMPY_SORTS_FAST = chosen
    assert got[0] == got[1]
    assert got[0][3] == sorted(values)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 2 ** 64 - 1) | st.integers(0, 40), max_size=300))
def test_pack_sort_orders_like_a_stable_argsort(values):
    keys = np.array(values, dtype=np.uint64)
    order, sorted_keys, lossy = pack_sort(keys)
    assert sorted(order.tolist()) == list(range(keys.size))
    if not lossy:  # exact: the stable argsort itself, and the keys along it
        assert order.tolist() == np.argsort(keys, kind="stable").tolist()
        assert sorted_keys.tolist() == keys[order].tolist()
    else:  # the high bits are sorted, and every run of equal high bits is in position order
        bits = max(1, (keys.size - 1).bit_length())
        shift = int(keys.max()).bit_length() + bits - 64
        assert shift > 0
        high = (keys >> np.uint64(shift)).tolist()
        assert sorted_keys.tolist() == [high[i] for i in order.tolist()] == sorted(high)
        for a, b in zip(order[:-1].tolist(), order[1:].tolist()):
            if high[a] == high[b]:
                assert a < b


def test_wide_keys_that_differ_only_in_their_low_bits_are_caught():
    """Two accounts whose hashes agree in the bits pack_sort keeps must not be merged."""
    engine = _engine()
    batch = _batch(engine, _records())
    positions = np.arange(batch.n)
    first, check = account_hashes(batch.accounts, positions)
    alice = batch.accounts.to_numpy() == "alice"
    near = np.where(alice, np.uint64(2 ** 63), np.uint64(2 ** 63 + 1))  # differ in bit 0 only
    with pytest.raises(HashCollision):
        canonical(batch, positions, near, near)


def _native() -> AccountOrder:
    if compiler() is None:
        pytest.skip("no C compiler")
    native = AccountOrder.of(build)
    assert native is not None, "the canonical order's C pass did not build"
    return native


def _per_account(accounts: list, order: np.ndarray) -> dict:
    runs: dict = {}
    for i in order.tolist():
        runs.setdefault(accounts[i], []).append(i)
    return runs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(0, 9)), min_size=1, max_size=120),
       st.booleans(), st.integers(-2 ** 62, 2 ** 62), st.sampled_from([60_000_000, 2 ** 57]), st.booleans())
def test_the_c_pass_orders_each_account_as_the_two_sorts_do(rows, in_time_order, base, step, odd):
    """canonical with its C pass (one sort of the times, accounts grouped by a hash
    table) and without (two sorts): the same records of each account in the same
    order, ties on time by id and row, whichever accounts come first; the account code
    rises along the order, one code a run, and the time along it is the records' own;
    also for times already in order (no sort), negative times, and times too wide to
    pack beside the positions (as multiples of their step 2**57, or, one of them odd,
    by an argsort)."""
    if in_time_order:
        rows = sorted(rows, key=lambda r: r[1])
    accounts = [f"acc{a}" for a, _, _ in rows]
    time = base + np.array([t for _, t, _ in rows], dtype=np.int64) * step
    if odd and not in_time_order:
        time[0] += 1
    ids = pl.Series([f"r{i}" for _, _, i in rows])
    batch = SimpleNamespace(time=time, ids=ids, rows=np.arange(len(rows), dtype=np.int64) + 1)
    positions = np.arange(len(rows))
    hashes = account_hashes(pl.Series(accounts), positions)
    sorts, sorts_code, sorts_time = canonical(batch, positions, *hashes)
    c_pass, code, t = canonical(batch, positions, *hashes, native=_native())
    assert _per_account(accounts, c_pass) == _per_account(accounts, sorts)
    ordered = [accounts[i] for i in c_pass.tolist()]
    assert code.tolist() == sorted(code.tolist())
    assert [a != b for a, b in zip(ordered[1:], ordered[:-1])] == np.diff(code).astype(bool).tolist()
    assert t.tolist() == time[c_pass].tolist()
    assert (time_order(time) is None) == bool((np.diff(time) >= 0).all())


@pytest.mark.parametrize("late", [None, 1, 2 ** 20])
def test_wide_times_are_divided_by_a_step_that_divides_them_all(late):
    """Times too wide to pack beside the positions are divided by the step of the first
    4096 only when it divides every time: a later time off that step (by 1, or a
    multiple of a smaller step) still sorts by its own value, the same order as a
    stable argsort, and the C pass gives the times along its order unchanged."""
    rng = np.random.default_rng(1)
    n = 6000
    time = -2 ** 61 + rng.integers(0, 40, n) * 2 ** 56
    if late is not None:
        time[5000] += late
        time[5001] = time[5000]  # a tie, broken by the position
    assert time_order(time).tolist() == np.argsort(time, kind="stable").tolist()
    accounts = pl.Series([f"a{k}" for k in rng.integers(0, 30, n)])
    batch = SimpleNamespace(time=time, ids=pl.Series([f"r{i}" for i in range(n)]),
                            rows=np.arange(n, dtype=np.int64))
    positions = np.arange(n)
    hashes = account_hashes(accounts, positions)
    sorts, sorts_code, _ = canonical(batch, positions, *hashes)
    c_pass, code, t = canonical(batch, positions, *hashes, native=_native())
    assert _per_account(accounts.to_list(), c_pass) == _per_account(accounts.to_list(), sorts)
    assert t.tolist() == time[c_pass].tolist()


def test_the_c_pass_catches_colliding_hashes_and_tells_near_ones_apart():
    engine = _engine()
    batch = _batch(engine, _records())
    positions = np.arange(batch.n)
    _, check = account_hashes(batch.accounts, positions)
    native = _native()
    with pytest.raises(HashCollision):
        canonical(batch, positions, np.zeros(batch.n, dtype=np.uint64), check, native=native)
    alice = batch.accounts.to_numpy() == "alice"
    near = np.where(alice, np.uint64(2 ** 63), np.uint64(2 ** 63 + 1))  # differ in bit 0 only
    order, code, _ = canonical(batch, positions, near, near, native=native)  # all 64 bits compared
    assert _per_account(batch.accounts.to_list(), order) == {
        "alice": np.flatnonzero(alice).tolist(), "bob": np.flatnonzero(~alice).tolist()}


def test_a_collision_falls_back_to_the_text_and_gives_the_same_results():
    engine = _engine()
    raw = _records()
    honest = _batch(engine, raw)
    engine.rules.apply(honest)

    colliding = _batch(engine, raw)
    positions = np.arange(colliding.n)
    _, check = account_hashes(colliding.accounts, positions)
    engine.rules._accounts(colliding, positions, (np.zeros(colliding.n, dtype=np.uint64), check))

    assert colliding.reduction_mg.tolist() == honest.reduction_mg.tolist()
    assert colliding.reason.tolist() == honest.reason.tolist()
    # each account is capped on its own: 1 kg each, not 1 kg shared
    assert int(honest.reduction_mg.sum()) == 2 * 1_000_000
    scalar = Engine(engine.methodology).evaluate(raw)
    assert [r.reduction_mg for r in scalar] == honest.reduction_mg.tolist()


_CELL = st.text(alphabet=st.sampled_from(list("ab1é中 \t\u3000\u00a0\x1c\u2028")), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), _CELL), max_size=40))
def test_edge_bytes_are_the_first_and_last_bytes_of_each_cell(cells):
    series = pl.Series(cells, dtype=pl.String)
    edges = tx.Edges(series)
    for i, cell in enumerate(cells):
        data = (cell or "").encode()
        assert edges.length[i] == len(data)
        assert edges.first[i] == (data[0] if data else 0)
        for k in (1, 2, 3):
            assert edges.from_end(k)[i] == (data[-k] if len(data) >= k else 0)
    padded = tx.maybe_padded(series)
    for i, cell in enumerate(cells):
        if cell and cell != cell.strip():
            assert padded[i], repr(cell)


# ---------------------------------------------------------------- text fast paths
_NUMBERISH = st.text(alphabet=st.sampled_from(list("0123456789.+-eE km g\u00a0")), max_size=24)


@settings(max_examples=300, deadline=None)
@given(st.lists(_NUMBERISH, min_size=1, max_size=50))
def test_decimals_are_pythons_floats_wherever_the_fast_path_answers(cells):
    from engine import records

    b = tx.Bytes.of(pl.Series(cells, dtype=pl.String))
    d = tx.decimals(b)
    for i, cell in enumerate(cells):
        if not d.ok[i]:
            continue
        match = records._NUMBER_UNIT.match(cell)
        assert match is not None, cell
        assert float(match.group(1)) == d.value[i], cell
        unit = cell.encode()[d.unit_start[i] - b.start[i]:].decode()
        if unit == unit.strip():  # else ingest's unit check sends the row to records.py
            assert unit == match.group(2), cell


def test_decimals_answer_for_the_common_shapes():
    cells = ["19.79 km", "8 km", "-0.5 g", "+12.250km", "3.", "42"]
    d = tx.decimals(tx.Bytes.of(pl.Series(cells)))
    assert d.ok.tolist() == [True] * len(cells)
    assert d.value.tolist() == [19.79, 8.0, -0.5, 12.25, 3.0, 42.0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dates(), min_size=1, max_size=200))
def test_days_from_civil_by_formula(dates):
    import datetime as dt

    from engine.batch.timezones import days_from_civil

    got = days_from_civil(np.array([d.year for d in dates]), np.array([d.month for d in dates]),
                          np.array([d.day for d in dates]))
    assert got.tolist() == [(d - dt.date(1970, 1, 1)).days for d in dates]


@pytest.mark.parametrize("first_year, years", [(2023, 3), (1900, 399), (9600, 399)])
def test_days_from_civil_by_the_month_table(first_year, years):
    """More than 4096 dates within 400 years: read from a table of month starts."""
    import calendar
    import datetime as dt

    from engine.batch.timezones import days_from_civil

    start = dt.date(first_year, 1, 1)
    span = (dt.date(first_year + years, 1, 1) - start).days
    dates = [start + dt.timedelta(days=(i * 7919) % span) for i in range(5000)]
    ends_of_february = [dt.date(y, 2, 29 if calendar.isleap(y) else 28)
                        for y in range(first_year, first_year + years)]
    dates += ends_of_february + [d + dt.timedelta(days=1) for d in ends_of_february]
    got = days_from_civil(np.array([d.year for d in dates]), np.array([d.month for d in dates]),
                          np.array([d.day for d in dates]))
    assert got.tolist() == [(d - dt.date(1970, 1, 1)).days for d in dates]


@pytest.mark.parametrize("table_bits", [4, 10])
def test_the_c_pass_grows_its_table_as_accounts_come(table_bits, monkeypatch):
    """The C pass's account table is made for all the records' accounts up to
    rules.TABLE_BITS and grown beyond (a whole file of millions of records): with a
    table made too small for the accounts it grows, several times, and orders each
    account as the two sorts do."""
    from engine.batch import rules

    monkeypatch.setattr(rules, "TABLE_BITS", table_bits)
    rng = np.random.default_rng(5)
    n = 5000
    accounts = pl.Series([f"a{k}" for k in rng.integers(0, 3000, n)])
    time = np.sort(rng.integers(0, 10 ** 9, n)) * 1_000_000
    batch = SimpleNamespace(time=time, ids=pl.Series([f"r{i}" for i in range(n)]),
                            rows=np.arange(n, dtype=np.int64))
    positions = np.arange(n)
    hashes = account_hashes(accounts, positions)
    assert rules.table_bits(n) == table_bits < (2 * accounts.n_unique()).bit_length()
    sorts, _, _ = canonical(batch, positions, *hashes)
    c_pass, code, t = canonical(batch, positions, *hashes, native=_native())
    assert _per_account(accounts.to_list(), c_pass) == _per_account(accounts.to_list(), sorts)
    assert code.tolist() == sorted(code.tolist()) and int(code[-1]) + 1 == accounts.n_unique()
    assert t.tolist() == time[c_pass].tolist()
