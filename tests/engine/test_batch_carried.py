"""A time-ordered file judged chunk by chunk with each account's state carried (engine/batch/carried.py).

Differential: for records in time order (ties across chunk boundaries, several accounts,
caps reached, overlaps, negative amounts, invalid and rejected rows, repeated ids), the
frames of the carried run (`evaluate_file` with `rewind`) are those of the store's path
(without `rewind`), column for column, and their results the scalar engine's. Files out
of time order, ids that sort against the order at a boundary, and a cap's day going back
(a clock set back across midnight) fall back and still agree. The run is seen to be taken
(BatchEngine.carried_runs) and to spill nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Engine
from engine.batch import BatchEngine, to_results
from engine.batch.carried import HOLD_CHUNKS, AccountIndex, _functions
from engine.batch.rules import HashCollision
from engine.native.build import build, compiler
from engine.recordfiles import open_records

from .test_batch_differential import _capped_shenzhen, _compile, _keys, _read_once as _read, _settings, _write, _write_parquet

pytestmark = [pytest.mark.skipif(compiler() is None, reason="the carried run needs a C compiler"),
              # the example counts follow the profile (test_batch_differential._settings)
              pytest.mark.fuzz]

HEADER = '''methodology test.{id} "{id}" version 1.0.0 {{
  covers thing
  effective from 2010-01-01
  timezone {zone}
}}
'''

# two overlap rules, a daily reduction cap and a weekly points cap in another zone, negative
# amounts (the caps' record-by-record path), points recomputed after the reduction cap
BOTH = HEADER.format(id="both", zone="Asia/Shanghai") + '''
input booked: datetime
input started: datetime
input ended: datetime
input distance: quantity [km] between 0 km and 30 km
input adjust: quantity [g] between -400 g and 300 g
reduction = 40 g/km * distance + adjust
points = floor(reduction / 1 g) + 1
forbid overlap between started and ended per account else OVERLAP "overlap"
forbid overlap between booked and started per account else EARLY "booked early"
cap reduction at 1 kg per account per day
cap points at 1500 per account per week in UTC
'''

# St John's set its clocks back from 00:00 to 23:01 the day before at 2010-11-07T02:31Z:
# a daily cap's day goes back
DST = HEADER.format(id="dst", zone="America/St_Johns") + '''
input started: datetime
input ended: datetime
input distance: quantity [km] between 0 km and 30 km
reduction = 40 g/km * distance
points = floor(reduction / 1 g)
forbid overlap between started and ended per account else OVERLAP "overlap"
cap reduction at 700 g per account per day
'''

START = {"shenzhen": dt.datetime(2024, 5, 20, 6), "both": dt.datetime(2024, 5, 19, 20),
         "dst": dt.datetime(2010, 11, 7, 1, 50)}


def _methodology(name: str):
    return _capped_shenzhen() if name == "shenzhen" else _compile(BOTH if name == "both" else DST)


def _record(name: str, i: int, minute: int, account: str, ident: str, length: int, km: int, adjust: int,
            bad: int) -> dict:
    start = START[name] + dt.timedelta(minutes=minute)
    zone = "Z" if name == "dst" else ""
    at = start.isoformat(timespec="minutes") + zone
    end = (start + dt.timedelta(minutes=length)).isoformat(timespec="minutes") + zone
    record = {"id": ident, "account": account}
    if name == "shenzhen":
        record.update(mode=["ebus", "metro", "diesel_bus"][km % 3], boarded=at, alighted=end,
                      distance=f"{km * 7 % 150} km")
    else:
        record.update(started=at, ended=end, distance=f"{km} km")
        if name == "both":
            booked = start - dt.timedelta(minutes=(km * 13) % 50)
            record.update(booked=booked.isoformat(timespec="minutes"), adjust=f"{adjust} g", time=at)
    if bad == 1:
        record["distance"] = "far"  # invalid
    elif bad == 2 and name == "shenzhen":
        record["mode"] = "tram"  # invalid choice
    return record


@st.composite
def _ordered(draw, name: str):
    """Records in time order (ties in any id order), a few accounts, some repeated ids."""
    size = draw(st.integers(min_value=0, max_value=60))
    minutes = sorted(draw(st.lists(st.integers(min_value=0, max_value=150), min_size=size, max_size=size)))
    out = []
    for i, minute in enumerate(minutes):
        repeat = draw(st.integers(min_value=0, max_value=15)) == 0
        ident = f"r{draw(st.integers(min_value=0, max_value=i))}" if repeat else f"u{draw(st.integers(0, 99)):02d}-{i}"
        out.append(_record(name, i, minute, draw(st.sampled_from(["a", "b", "c", "张"])), ident,
                           draw(st.integers(min_value=1, max_value=90)), draw(st.integers(min_value=0, max_value=30)),
                           draw(st.integers(min_value=-400, max_value=300)),
                           draw(st.integers(min_value=0, max_value=12))))
    return out


def _agree(methodology, path: Path, chunk_rows: int, memory_rows: int, folder: Path) -> BatchEngine:
    """The carried run's frames are the store's and their results the scalar engine's;
    the engine (its carried_runs) is given back."""
    source = open_records(path)
    expected = _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))
    engine = BatchEngine(methodology, chunk_rows=chunk_rows, kernels=build)
    engine.carried_runs = []
    carried, _ = _read(engine, path, memory_rows=memory_rows, spill_dir=folder / "spill")
    before = list(BatchEngine(methodology, chunk_rows=chunk_rows, kernels=build).evaluate_file(
        path, memory_rows=memory_rows, spill_dir=folder / "spill-before"))
    assert bool(carried) == bool(before) == bool(expected)  # the frames may be cut elsewhere
    if expected:
        assert pl.concat(carried).equals(pl.concat(before))
        assert _keys(to_results(pl.concat(carried))) == expected
    return engine


def test_the_methodologies_here_are_carried():
    for name in ("shenzhen", "both", "dst"):
        assert BatchEngine(_methodology(name), kernels=build).carries
    rules = _compile(HEADER.format(id="x", zone="UTC") + '''
input a: datetime
input b: datetime
reduction = 1 g
points = 1
forbid duplicate a per account else DUP "dup"
forbid overlap between a and b per account else OVERLAP "overlap"
''')
    assert not BatchEngine(rules, kernels=build).carries  # duplicate keys remember every key
    assert not BatchEngine(_methodology("both")).carries  # no compiler given: the store


@pytest.mark.parametrize("name,suffix", [("shenzhen", ".parquet"), ("both", ".parquet"), ("both", ".csv"),
                                         ("dst", ".parquet")])
def test_time_ordered_records_judged_carried_agree_with_the_store_and_the_scalar_engine(name, suffix,
                                                                                          tmp_path_factory):
    methodology = _methodology(name)

    @_settings(15)
    @given(_ordered(name), st.integers(min_value=1, max_value=7), st.sampled_from([5, 10_000]))
    def check(stream, chunk_rows, memory_rows):
        folder = tmp_path_factory.mktemp("carried")
        path = folder / f"records{suffix}"
        (_write_parquet if suffix == ".parquet" else _write)(path, stream)
        _agree(methodology, path, chunk_rows, memory_rows, folder)
    check()


@pytest.mark.parametrize("name", ["shenzhen", "both"])
def test_records_out_of_time_order_are_judged_as_before(name, tmp_path_factory):
    """Shuffled: the order breaks at some chunk (before any frame was given, the parts go
    on to the store as they are; after, the frames are taken back); the same results."""
    methodology = _methodology(name)

    @_settings(10)
    @given(_ordered(name), st.integers(min_value=1, max_value=7), st.randoms(use_true_random=False))
    def check(stream, chunk_rows, random):
        random.shuffle(stream)
        folder = tmp_path_factory.mktemp("shuffled")
        path = folder / "records.parquet"
        _write_parquet(path, stream)
        _agree(methodology, path, chunk_rows, 10_000, folder)
    check()


def _rides(n: int, accounts: int = 7, step: int = 3) -> list[dict]:
    return [_record("shenzhen", i, i * step, f"a{i % accounts}", f"r{i:04d}", 5 + i % 40, i % 30 + 10, 0, 0)
            for i in range(n)]


def test_a_time_ordered_file_is_judged_carried_and_spills_nothing(tmp_path):
    """With a budget of 10 rows (a file of more would spill to disk): one carried run,
    every chunk judged and given out, no spill folder made; caps reached and overlaps
    rejected in it. Shuffled, the same file breaks the order at its first chunks and goes
    to the store (spilled), nothing rewound."""
    methodology = _capped_shenzhen()
    stream = _rides(300)
    path = tmp_path / "rides.parquet"
    _write_parquet(path, stream)
    engine = _agree(methodology, path, 16, 10, tmp_path)
    [run] = engine.carried_runs
    assert (run.taken, run.yielded, run.broken) == (19, 19, False)
    assert not (tmp_path / "spill").exists()
    codes = {k[4] for k in _keys(Engine(methodology).evaluate(stream))}
    assert {"CAP_REACHED", "OVERLAP", "NOT_COVERED"} <= codes

    shuffled = tmp_path / "shuffled.parquet"
    _write_parquet(shuffled, list(reversed(stream)))
    engine = _agree(methodology, shuffled, 16, 10, tmp_path / "s")
    [run] = engine.carried_runs
    assert run.broken and run.yielded == 0 and run.why.startswith("NotInOrder")
    assert (tmp_path / "s" / "spill").exists()
    frames, rewinds = _read(BatchEngine(methodology, chunk_rows=16, kernels=build), shuffled)
    assert rewinds == 0


def test_an_order_broken_after_frames_were_given_rewinds_them(tmp_path):
    """A ride earlier than all before it, two chunks after the held ones (a chunk's frame
    waits for the next chunk: its records at its latest time are judged with it): the
    frames given out are taken back once (`rewind`) and the store judges; the scalar
    results."""
    methodology = _capped_shenzhen()
    chunk_rows = 8
    stream = _rides(chunk_rows * (HOLD_CHUNKS + 4))
    stream.insert(chunk_rows * (HOLD_CHUNKS + 2), _record("shenzhen", 0, 1, "z", "z0", 5, 10, 0, 0))
    path = tmp_path / "rides.parquet"
    _write_parquet(path, stream)
    engine = BatchEngine(methodology, chunk_rows=chunk_rows, kernels=build)
    engine.carried_runs = []
    frames, rewinds = _read(engine, path)
    [run] = engine.carried_runs
    assert run.broken and run.yielded >= HOLD_CHUNKS and rewinds == 1
    source = open_records(path)
    assert _keys(to_results(pl.concat(frames))) == \
        _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))


@pytest.mark.parametrize("later", ["r1", "r9"])
def test_ids_at_one_time_across_a_chunk_boundary(later, tmp_path):
    """Account a has a ride at one time in two chunks (2 rows each): canonical order puts
    the later chunk's first when its id sorts before. The first chunk's records at its
    latest time are judged with the next chunk, in canonical order: the run stands either
    way, and the second of the two in canonical order overlaps the first and is rejected,
    as the scalar engine has it."""
    methodology = _capped_shenzhen()
    rides = [_record("shenzhen", 0, 0, "b", "r0", 5, 10, 0, 0), _record("shenzhen", 1, 30, "a", "r5", 30, 4, 0, 0),
             _record("shenzhen", 2, 30, "a", later, 20, 1, 0, 0)]
    rides += [_record("shenzhen", i, 60 + i, "abc"[i % 3], f"s{i}", 5, 10, 0, 0) for i in range(3, 9)]
    path = tmp_path / "rides.parquet"
    _write_parquet(path, rides)
    engine = _agree(methodology, path, 2, 10_000, tmp_path)
    [run] = engine.carried_runs
    assert not run.broken and run.taken == 5
    assert run.tied == (1 if later == "r1" else 0)
    codes = [k[4] for k in _keys(Engine(methodology).evaluate(rides))]
    assert codes[1:3] == (["OVERLAP", ""] if later == "r1" else ["", "OVERLAP"])


def test_whole_minutes_with_ids_against_the_order_are_judged_carried(tmp_path):
    """A feed of whole-minute times whose ids do not grow with time (each minute's ids
    drawn at random), few accounts: records of one account at one minute in two, three
    chunks, the later chunk's ids often first. The run stands (no fallback to the store),
    judged such ties across boundaries in canonical order, and its frames are the store's
    and its results the scalar engine's, with overlaps rejected and caps reached."""
    rng = np.random.default_rng(16)
    for name in ("shenzhen", "both"):
        methodology = _methodology(name)
        stream = []
        idents = rng.permutation(10 ** 6)[:400]  # distinct, in no order
        for i in range(400):
            minute = i // 12  # 12 rides a minute, 3 accounts: 4 an account a minute
            ident = f"{idents[i]:06d}"
            stream.append(_record(name, i, minute, "xyz"[int(rng.integers(0, 3))], ident, int(rng.integers(1, 30)),
                                  int(rng.integers(5, 30)), int(rng.integers(-400, 300)), int(rng.integers(0, 15))))
        folder = tmp_path / name
        path = folder / "feed.parquet"
        folder.mkdir()
        _write_parquet(path, stream)
        for chunk_rows in (5, 7, 16):
            engine = _agree(methodology, path, chunk_rows, 10, folder / str(chunk_rows))
            [run] = engine.carried_runs
            assert not run.broken and run.yielded == run.taken == -(-len(stream) // chunk_rows)
            assert run.tied > 10  # held records judged after a later chunk's
            assert not (folder / str(chunk_rows) / "spill").exists()
        codes = {k[4] for k in _keys(Engine(methodology).evaluate(stream))}
        assert {"CAP_REACHED", "OVERLAP"} <= codes


def test_a_daily_caps_day_going_back_is_judged_by_the_store(tmp_path):
    """Local days 6, 7, then 6 again (St John's, 2010-11-07T02:31Z): a carried cap keeps the
    latest day only, so the run breaks (NotInOrder) and the store judges; same results."""
    methodology = _methodology("dst")
    minutes = [0, 10, 40, 41, 50, 60, 70, 80]  # from 01:50Z: 23:20 (6th), 00:00 (7th), 23:01 (6th)
    stream = [_record("dst", i, m, "a", f"r{i}", 5, 30, 0, 0) for i, m in enumerate(minutes)]
    path = tmp_path / "walks.parquet"
    _write_parquet(path, stream)
    engine = _agree(methodology, path, 2, 10_000, tmp_path)
    [run] = engine.carried_runs
    assert run.broken and "period" in run.why
    codes = [k[4] for k in _keys(Engine(methodology).evaluate(stream))]
    assert "CAP_REACHED" in codes


def test_repeated_ids_read_a_parquet_file_again_with_them_known(tmp_path):
    """A duplicate id found at the end: the frames are taken back and the Parquet file is
    judged carried again with the repeated rows known (a CSV file goes to the store)."""
    methodology = _capped_shenzhen()
    stream = _rides(40)
    stream[30]["id"] = stream[3]["id"]
    for suffix, runs in ((".parquet", 2), (".csv", 1)):
        path = tmp_path / f"rides{suffix}"
        (_write_parquet if suffix == ".parquet" else _write)(path, stream)
        engine = _agree(methodology, path, 4, 10_000, tmp_path / suffix[1:])
        assert len(engine.carried_runs) == runs
        assert not engine.carried_runs[-1].broken
        engine.carried_runs = []
        _, rewinds = _read(engine, path)
        assert rewinds == 1


def test_accounts_sharing_a_hash_in_different_chunks_break_the_run(tmp_path, monkeypatch):
    """An account first seen at chunk 13 whose first hash is that of a0, which it takes
    the place of from there (no chunk has both: the chunk's own order cannot tell them
    apart, only the lasting table, looked up in the chunks' threads): the run breaks with
    HashCollision after frames were given, they are taken back, and the store judges (its
    own hashes, not these): the same results."""
    from engine.batch import carried
    from engine.batch.rules import account_hashes

    def colliding(accounts, positions):
        first, second = account_hashes(accounts, positions)
        late = (accounts == "zlate").to_numpy()[positions] if positions.size else np.zeros(0, dtype=bool)
        first = first.copy()
        first[late] = account_hashes(pl.Series(["a0"]), np.zeros(1, dtype=np.int64))[0][0]
        return first, second
    monkeypatch.setattr(carried, "account_hashes", colliding)
    stream = _rides(300)
    for record in stream[13 * 16:]:
        if record["account"] == "a0":
            record["account"] = "zlate"
    path = tmp_path / "rides.parquet"
    _write_parquet(path, stream)
    engine = _agree(_capped_shenzhen(), path, 16, 10_000, tmp_path)
    [run] = engine.carried_runs
    assert run.broken and run.why.startswith("HashCollision") and run.yielded >= HOLD_CHUNKS
    assert 13 <= run.taken <= 14  # the chunk before was judged, and given out or held


def test_the_account_index_keeps_codes_grows_and_tells_colliding_accounts():
    index = AccountIndex(_functions(build), capacity=4)
    rng = np.random.default_rng(7)
    h1 = rng.integers(0, 2 ** 63, 5000, dtype=np.uint64)
    h2 = rng.integers(0, 2 ** 63, 5000, dtype=np.uint64)
    first = index.codes(h1[:3000], h2[:3000])
    assert first.tolist() == list(range(3000))
    again = index.codes(h1[::-1], h2[::-1])  # the known ones keep their codes, the others follow
    assert again[::-1][:3000].tolist() == list(range(3000))
    assert sorted(again[::-1][3000:].tolist()) == list(range(3000, 5000))
    assert index.count == 5000
    with pytest.raises(HashCollision):
        index.codes(h1[5:6], h2[5:6] + np.uint64(1))


# an overlap rule between two dates (int64 days at run time) beside one between two datetimes
# (int64 µs UTC), with a daily cap
DAYS = HEADER.format(id="days", zone="Asia/Shanghai") + '''
input booked: date
input until: date
input started: datetime
input ended: datetime
input distance: quantity [km] between 0 km and 30 km
reduction = 40 g/km * distance
points = floor(reduction / 1 g)
forbid overlap between booked and until per account else DAYS "days booked twice"
forbid overlap between started and ended per account else OVERLAP "overlap"
cap reduction at 1 kg per account per day
'''


def _bookings(n: int, seed: int) -> pl.DataFrame:
    """n rides in time order (whole minutes, ties), three accounts, each booked for a span
    of days that often meets the account's previous one (the DAYS rule rejects)."""
    rng = np.random.default_rng(seed)
    minute = np.sort(rng.integers(0, 6 * 24 * 60, n))
    started = [dt.datetime(2024, 5, 19, 20) + dt.timedelta(minutes=int(m)) for m in minute]
    booked = [s.date() + dt.timedelta(days=int(k)) for s, k in zip(started, rng.integers(-1, 2, n))]
    return pl.DataFrame({
        "id": [f"{i:04d}" for i in rng.permutation(n)], "account": rng.choice(["a", "b", "c"], n).tolist(),
        "time": started, "started": started,
        "ended": [s + dt.timedelta(minutes=int(k)) for s, k in zip(started, rng.integers(1, 90, n))],
        "booked": booked, "until": [b + dt.timedelta(days=int(k)) for b, k in zip(booked, rng.integers(0, 3, n))],
        "distance": [f"{int(k)} km" for k in rng.integers(1, 30, n)]})


@pytest.mark.parametrize("encoding", ["typed", "typed, datetimes in UTC", "text", "text, dates padded"])
def test_overlaps_between_dates_are_judged_carried_as_the_store_and_the_scalar_engine_judge_them(
        encoding, tmp_path):
    """Overlap bounds of every type the language allows (E0604: date or datetime), from
    every kind of column a file gives them in: Parquet Date and Datetime columns (naive,
    read in the methodology's zone, or in UTC), text, and text dates padded with spaces
    (read row by row by engine/records.py, written into the same int64 column). Each reaches the carried run's C pass
    as int64 (days, µs UTC: Rules.judge_carried asserts it, there being no other way in),
    and the run's frames are the store's and its results the scalar engine's, with the
    days' overlaps rejected."""
    methodology = _compile(DAYS)
    frame = _bookings(300, 5)
    if encoding == "typed, datetimes in UTC":
        frame = frame.with_columns(pl.col("time", "started", "ended").dt.replace_time_zone("Asia/Shanghai")
                                   .dt.convert_time_zone("UTC"))
    elif encoding.startswith("text"):
        frame = frame.with_columns(pl.all().cast(pl.String))
        if encoding.endswith("padded"):  # every third date read by engine/records.py
            padded = pl.int_range(pl.len()) % 3 == 0
            frame = frame.with_columns(pl.when(padded).then(" " + pl.col(c) + " ").otherwise(pl.col(c)).alias(c)
                                       for c in ("booked", "until"))
    path = tmp_path / "bookings.parquet"
    frame.write_parquet(path)
    for chunk_rows in (7, 64):
        engine = _agree(methodology, path, chunk_rows, 10, tmp_path / str(chunk_rows))
        [run] = engine.carried_runs
        assert not run.broken and run.taken == -(-frame.height // chunk_rows)
    source = open_records(path)
    codes = {k[4] for k in _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))}
    assert {"DAYS", "OVERLAP", "CAP_REACHED"} <= codes


# ---------------------------------------------------------------- the store's partitions by the C passes
@st.composite
def _any_order(draw, name: str):
    """Records in no order: many ties in time (40 minutes for up to 80 records), 9 accounts
    (spread over the store's partitions), repeated ids, invalid rows and null cells."""
    size = draw(st.integers(min_value=0, max_value=80))
    out = []
    for i in range(size):
        repeat = draw(st.integers(min_value=0, max_value=10)) == 0
        ident = f"r{draw(st.integers(min_value=0, max_value=i))}" if repeat else f"u{draw(st.integers(0, 99)):02d}-{i}"
        # St John's: half the rides near 02:30Z, where the local day goes 6, 7, 6 again
        minute = draw(st.integers(min_value=0, max_value=40) if name != "dst" else
                      st.one_of(st.integers(min_value=36, max_value=46), st.integers(min_value=0, max_value=90)))
        record = _record(name, i, minute,
                         draw(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "张"])), ident,
                         draw(st.integers(min_value=1, max_value=60)), draw(st.integers(min_value=0, max_value=30)),
                         draw(st.integers(min_value=-400, max_value=300)), draw(st.integers(min_value=0, max_value=14)))
        null = draw(st.integers(min_value=0, max_value=20))
        if null < 3:  # a null cell: the account, the end of an interval, or the distance
            record[["account", "ended" if name != "shenzhen" else "alighted", "distance"][null]] = None
        out.append(record)
    return out


def _judged(methodology, path: Path, chunk_rows: int, memory_rows: int, folder: Path, fresh: bool,
            rewind: bool = False) -> pl.DataFrame:
    engine = BatchEngine(methodology, chunk_rows=chunk_rows, kernels=build)
    engine.rules.fresh = fresh
    if rewind:
        frames, _ = _read(engine, path, memory_rows=memory_rows, spill_dir=folder / "spill")
    else:
        frames = list(engine.evaluate_file(path, memory_rows=memory_rows, spill_dir=folder / "spill"))
    return pl.concat(frames) if frames else pl.DataFrame()


@pytest.mark.parametrize("name", ["shenzhen", "both", "dst"])
def test_records_in_any_order_spilled_and_judged_by_the_c_passes_agree_with_every_path(name, tmp_path_factory):
    """The store judges each partition (every record of its accounts) by the time-ordered
    path's C passes from a fresh state (Rules._fresh_passes). A file in random order,
    spilled over several partitions and runs, in memory, and judged by the whole-file
    NumPy steps instead (Rules.fresh False), gives the same frames column for column; the
    same records sorted by time (ties kept in file order, so the canonical order's row
    tie-break is unchanged) judged carried chunk by chunk give each record the same
    result; and the results are the scalar engine's. Caps reached (and, in St John's, a
    daily cap's day going back: that cap by `_cap`), overlaps by two rules, negative
    amounts, ties in time with ids either way, repeated ids, invalid rows and nulls."""
    methodology = _methodology(name)

    @_settings(15)
    @given(_any_order(name), st.integers(min_value=1, max_value=7), st.integers(min_value=6, max_value=30))
    def check(stream, chunk_rows, memory_rows):
        folder = tmp_path_factory.mktemp("fresh")
        path = folder / "records.parquet"
        _write_parquet(path, stream)
        spilled = _judged(methodology, path, chunk_rows, memory_rows, folder / "a", True)
        source = open_records(path)
        expected = _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))
        if not expected:
            assert spilled.height == 0
            return
        assert _keys(to_results(spilled)) == expected
        for other in (_judged(methodology, path, chunk_rows, memory_rows, folder / "b", False),
                      _judged(methodology, path, chunk_rows, 10_000, folder / "c", True),
                      _judged(methodology, path, chunk_rows, 10_000, folder / "d", False)):
            assert spilled.equals(other)
        # in time order (a stable sort: records at one time keep their file order)
        by_time = sorted(range(len(stream)), key=lambda i: _minute(stream[i]))
        ordered = folder / "ordered.parquet"
        _write_parquet(ordered, [stream[i] for i in by_time])
        carried = _judged(methodology, ordered, chunk_rows, memory_rows, folder / "e", True, rewind=True)
        back = pl.Series("row", np.array(by_time, dtype=np.int64)[carried.get_column("row").to_numpy() - 1] + 1)
        assert carried.with_columns(back).sort("row").equals(spilled.sort("row"))
    check()


def _minute(record: dict) -> str:
    return record.get("boarded") or record.get("started") or ""


def test_the_stores_partitions_are_judged_by_the_c_passes(tmp_path, monkeypatch):
    """Shuffled rides spilled over several partitions: the whole-file steps
    (_keys_and_overlaps, _cap) are not called, and the results are theirs (Rules.fresh
    False calls them) and the scalar engine's, with overlaps rejected and caps reached."""
    from engine.batch import rules as rules_module

    methodology = _capped_shenzhen()
    stream = _rides(400, accounts=11, step=1)
    np.random.default_rng(6).shuffle(stream)
    path = tmp_path / "rides.parquet"
    _write_parquet(path, stream)
    calls = []
    for step in ("_keys_and_overlaps", "_cap"):
        original = getattr(rules_module.Rules, step)
        monkeypatch.setattr(rules_module.Rules, step,
                            lambda self, *a, _original=original, _step=step, **k: (calls.append(_step),
                                                                                   _original(self, *a, **k))[1])
    fresh = _judged(methodology, path, 16, 60, tmp_path / "a", True)
    assert calls == []
    whole = _judged(methodology, path, 16, 60, tmp_path / "b", False)
    assert "_keys_and_overlaps" in calls and "_cap" in calls
    assert fresh.equals(whole)
    expected = _keys(Engine(methodology).evaluate(open_records(path).rows))
    assert _keys(to_results(fresh)) == expected
    assert {"CAP_REACHED", "OVERLAP"} <= {k[4] for k in expected}
