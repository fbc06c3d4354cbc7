"""The batch engine on Spark: a DataFrame of activity records in, a DataFrame of results out.

    >>> from engine.spark import evaluate          # also tanpu.spark.evaluate
    >>> results = evaluate(records_df, Path("methodologies/shenzhen-public-transit.tanpu"))

For a city or province whose records live in a data lake. The results are those of
`tanpu eval` on the same records, row for row (tests/engine/test_spark.py runs both):

1. Record ids repeated anywhere in the DataFrame (a record whose id an earlier one,
   in canonical order account, time, row, has is a duplicate, as in `tanpu eval`):
   found as `tanpu eval` finds them in a file (BatchEngine.duplicate_rows). The ids are
   hashed (without whitespace: ids the engine reads alike hash alike) and grouped, a
   shuffle of 8 bytes a record; only the records whose hash is repeated (none, usually)
   are evaluated, and find_duplicate_ids judges them on the driver (`_later_rows`). Their
   row numbers go to the tasks with the function. Beyond MAX_REPEATED repeated hashes a
   window over the results by id decides instead (`_mark_duplicate_ids`: one shuffle and
   sort of every result, about half of the jobs' time per record at 1 M records).
2. Per record (PySpark's `mapInArrow`), when no rule reads an account's other records:
   each Arrow batch goes through `BatchEngine.per_record` and `chunk_results` (which
   marks the repeated ids) as it is, in whatever task holds it; nothing is shuffled.
3. Anything that judges a record by its account's other records (duplicates, overlaps,
   flag and bonus windows, caps, near duplicates, counters and rewards, history windows:
   CrossRecord.has_account_state): the records themselves are repartitioned by account
   (the hash of the account without whitespace), so every record of an account meets in
   one task, and `mapInArrow` runs the whole batch engine once on each partition, as
   `tanpu eval` runs it on a file, the repeated ids of step 1 told to it (not
   `groupBy(account).applyInArrow`, which calls it once per account: see
   partition_results). With prior states (engine/state.py's AccountState JSON, one per
   account, as the ledger keeps them), the records are evaluated per record first, the
   repeated ids marked by the window, and each account's records and its state are
   cogrouped and judged after it by the scalar engine (the reference); the posterior
   states come back beside the results (`evaluate_with_states`).

Why this lives in engine/ (and tanpu/spark.py only re-exports it): it needs nothing but
the compiler and the engine, and executors import it by name, so it must not pull in the
registry, the web UI or the CLI. PySpark is imported only when a function is called.

The methodology travels to executors as its source text; each Python worker compiles it
once and keeps the engine (and its C kernel, engine/native/build.py) by the text's
SHA-256 (`_engine`), so tasks after the first start at once.

Row numbers: `tanpu eval` numbers a file's rows from 1, and a record without an id gets
`row-N`. Here `row=` names a column holding those numbers; without it the rows are
numbered in the DataFrame's own order (partition by partition: a Parquet file read by
Spark gets the numbers `tanpu eval` gives it). Ids are filled in (`row-N`) before the
records are split up, so they never depend on which task reads a record.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import polars as pl
import pyarrow as pa

from .result import COLUMNS, DUPLICATE, DUPLICATE_ID, INVALID

ROW = "__tanpu_row"        # the row number column carried with the records
LATER = "__later"          # true on a record whose id an earlier record (anywhere) has
ACCOUNT = "__tanpu_account"  # the account as the engine read it (results' `account`)
STATE = "state"            # an account's AccountState JSON (input and output)



@dataclass(frozen=True)
class Source:
    """A methodology as executors get it: its text and the name errors are reported under."""

    text: str
    name: str

    @classmethod
    def of(cls, methodology: Union[str, Path]) -> "Source":
        """A path (a .tanpu file) or the source text itself."""
        if isinstance(methodology, Path) or (isinstance(methodology, str) and "\n" not in methodology
                                             and methodology.endswith(".tanpu")):
            path = Path(methodology)
            return cls(path.read_text(encoding="utf-8"), str(path))
        return cls(methodology, "<methodology>")

    @property
    def key(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the executors' side
_ENGINES: dict = {}
_LOCK = threading.Lock()


def _engine(source: Source):
    """The batch engine of this methodology, compiled once per Python worker."""
    key = source.key
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            from dsl import compile_source

            from .batch import BatchEngine
            from .native.build import build

            compiled = compile_source(source.text, source.name)
            if not compiled.ok:
                raise ValueError(compiled.render())
            engine = BatchEngine(compiled.methodology, kernels=build)
            engine.threads = 1  # Spark runs tasks side by side: one core each
            _ENGINES[key] = engine
        return engine


def _results_schema() -> pa.Schema:
    """The batch engine's results frame (engine.batch.engine.RESULT_SCHEMA, from
    engine.result's fields) in the Arrow types Spark declares: plain strings and lists."""
    from .batch.engine import RESULT_SCHEMA

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return pa.string()
        if pa.types.is_large_list(t) or pa.types.is_list(t) or pa.types.is_list_view(t):
            return pa.list_(plain(t.value_type))
        return t
    schema = pl.DataFrame(schema=RESULT_SCHEMA).to_arrow().schema
    return pa.schema([pa.field(f.name, plain(f.type)) for f in schema])


RESULTS_SCHEMA = _results_schema()


def _sorted_by_row(table: pa.Table) -> tuple[pl.DataFrame, np.ndarray]:
    """The records in row order (the engine's canonical order breaks ties by row) and
    their row numbers; the frame without the row column."""
    frame = pl.from_arrow(table)
    if isinstance(frame, pl.Series):  # pragma: no cover
        frame = frame.to_frame()
    frame = frame.sort(ROW)
    rows = frame.get_column(ROW).to_numpy()
    return frame.drop(ROW), rows


def _as_table(results: pl.DataFrame, rows: np.ndarray, extra: Optional[dict] = None) -> pa.Table:
    results = results.with_columns(pl.Series("row", rows, dtype=pl.Int64))
    table = results.select(COLUMNS).to_arrow().cast(RESULTS_SCHEMA)
    for name, column in (extra or {}).items():
        table = table.append_column(name, column)
    return table


def per_record_batches(source: Source, units: dict, keep: tuple[str, ...] = (),
                       later: Optional[np.ndarray] = None):
    """The function `mapInArrow` runs: record batches -> per-record results (no
    cross-record rules), with the input columns `keep` passed through. `later`: the sorted
    row numbers of the records whose id an earlier record has (_later_rows), marked
    DUPLICATE_ID here by the engine's own chunk_results; None: none marked (the window of
    _mark_duplicate_ids does it after)."""
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        engine = _engine(source)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            frame, rows = _sorted_by_row(pa.Table.from_batches([batch]))
            part = engine.per_record(frame, units)
            if later is not None:
                # part.rows are 1..n (first_row 1): the positions of the later rows, + 1
                results = engine.chunk_results(part, _positions(rows, later) + 1)
            else:
                results = engine.results(part, engine.batch_of(part, copy=False))
            extra = {name: frame.get_column(name).to_arrow() for name in keep}
            extra[ROW] = pa.array(rows, pa.int64())
            yield from _as_table(results, rows, extra).to_batches()
    return run


def _positions(rows: np.ndarray, later: np.ndarray) -> np.ndarray:
    """The positions in `rows` (sorted) of the row numbers in `later` (sorted)."""
    if later.size == 0 or rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = np.searchsorted(later, (rows[0], rows[-1] + 1))
    return np.flatnonzero(np.isin(rows, later[lo:hi], assume_unique=True)).astype(np.int64)


def partition_results(source: Source, units: dict, later: Optional[np.ndarray] = None):
    """The function `mapInArrow` runs on records partitioned by account: the whole
    partition (all the records of its accounts) -> their results, the whole batch engine
    (duplicate keys, overlaps, windows, caps) run once on it as `tanpu eval` runs it on a
    file.

    The records repeating an id are told to the engine: with `later` (row numbers:
    _later_rows), the records themselves come partitioned (unreadable ones too, judged in
    their partition as in a file; no per-record step before); without it, they come from
    the per-record step and its id window, marked in their LATER column.

    Once per partition, not once per account as `groupBy(account).applyInArrow` would:
    the engine has a fixed cost per call, which at ~40 records an account was most of
    the time (bench/bench_spark.py --rules; docs/spark.md); the engine applies the
    rules to each account of a frame on its own anyway."""
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        engine = _engine(source)
        table = pa.Table.from_batches(batches)
        if ACCOUNT in table.column_names:  # the window's way carries the account it shuffled by
            table = table.drop_columns([ACCOUNT])
        frame, rows = _sorted_by_row(table)
        if later is None:
            frame, repeated = _later(frame)
        else:
            repeated = _positions(rows, later)
        yield from _as_table(engine.evaluate_frame(frame, units, duplicate_ids=repeated),
                             rows).to_batches()
    return run


def _later(frame: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The records without the LATER column, and the positions where it is true."""
    later = np.flatnonzero(frame.get_column(LATER).fill_null(False).to_numpy())
    return frame.drop(LATER), later


def account_results_with_state(source: Source, units: dict):
    """Cogrouped (records, prior state) of one account -> results and its posterior state
    (as a column: the state on the last row, null on the others). The scalar engine,
    which carries state (engine/state.py), judges the records after the prior state."""
    def run(records: pa.Table, states: pa.Table) -> pa.Table:
        if records.num_rows == 0:
            return pa.Table.from_pylist([], schema=RESULTS_SCHEMA.append(pa.field(STATE, pa.string())))
        from . import Engine
        from .batch import results_frame
        from .state import AccountState

        from .cross_record import decide
        from .result import DUPLICATE, DUPLICATE_ID

        batch_engine = _engine(source)
        engine = Engine(batch_engine.methodology)
        frame, rows = _sorted_by_row(records.drop_columns([ACCOUNT]))
        frame, later = _later(frame)
        account = records.column(ACCOUNT)[0].as_py()
        prior = states.column(STATE)[0].as_py() if states.num_rows else None
        state = {account: AccountState.from_json(engine.rules, prior)}
        # the windows hold every record read, a repeated id too; the rules none of those
        judged = engine.evaluate(frame.to_dicts(), column_units=units, state=state, per_record_only=True)
        message = batch_engine.reasons.column(2)[batch_engine.rules.duplicate_id]
        for i in later:
            decide(judged[i], DUPLICATE, DUPLICATE_ID, message, False)
            judged[i].reduction_mg, judged[i].points = 0, 0
        engine.apply_cross_record(judged, state=state)
        results = results_frame(judged)
        after = [None] * (len(rows) - 1) + [state[account].to_json(engine.rules)]
        return _as_table(results, rows, {STATE: pa.array(after, pa.string())})
    return run


# ---------------------------------------------------------------- the driver's side
def _duplicate_message(source: Source) -> str:
    engine = _engine(source)
    return engine.reasons.column(2)[engine.rules.duplicate_id]


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema
    return from_arrow_schema(schema)


def _prepared(df, row: Optional[str]):
    """The records with units split off the column names (`distance[km]`), a row number
    column and every record's id (`row-N` where it has none)."""
    from pyspark.sql import functions as F

    from .recordfiles import header_units

    names, units = header_units(df.columns, "the DataFrame")
    df = df.toDF(*names)
    if row is None:
        df = _numbered(df)
    else:
        df = df.withColumn(ROW, F.col(row).cast("long"))
    default = F.concat(F.lit("row-"), F.col(ROW).cast("string"))
    if "id" in df.columns:
        if dict(df.dtypes)["id"] == "string":  # blank as the engine strips: no id
            df = df.withColumn("id", F.when(F.col("id").isNull() | (_text_key("id") == ""), default)
                               .otherwise(F.col("id")))
    else:
        df = df.withColumn("id", default)
    return df, units


# Every character str.strip() removes (str.isspace: ASCII whitespace, the separators of
# class Z, U+001C..U+001F, U+0085), in Java's regular expressions.
_SPACE = r"[\s\p{Z}\x{1c}-\x{1f}\x{85}]+"


def _text_key(column: str):
    """A text column with every whitespace character removed: two cells the engine reads
    as the same text (stripped, ingest._stripped) have the same key."""
    from pyspark.sql import functions as F
    return F.regexp_replace(F.col(column).cast("string"), _SPACE, "")


def _numbered(df):
    """Row numbers 1.. in the DataFrame's order: each partition's count, then the
    position in the partition (monotonically_increasing_id's low 33 bits)."""
    from pyspark.sql import functions as F

    df = df.withColumn("__tanpu_part", F.spark_partition_id()) \
           .withColumn("__tanpu_pos", F.monotonically_increasing_id().bitwiseAND((1 << 33) - 1))
    counts = dict(df.groupBy("__tanpu_part").count().collect())
    offsets, total = {}, 0
    for part in sorted(counts):
        offsets[part] = total
        total += counts[part]
    offset = F.lit(0)
    for part, start in offsets.items():
        offset = F.when(F.col("__tanpu_part") == part, F.lit(start)).otherwise(offset)
    return df.withColumn(ROW, offset + F.col("__tanpu_pos") + 1).drop("__tanpu_part", "__tanpu_pos")


def _mark_duplicate_ids(results, message: str):
    """Every valid record whose id a record before it (account, time, row) has -> a
    duplicate, as the engine marks them; `__later` says which.

    A window over the id rather than an aggregation joined back: the results are then
    computed once (the engine runs in one pass over the records) at the cost of one
    shuffle of the results by id, where a join would read them twice, evaluating twice."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    valid = F.col("status") != INVALID
    by_id = Window.partitionBy("id", valid).orderBy("account", "time", "row")
    later = valid & (F.row_number().over(by_id) > 1)
    changed = {"status": DUPLICATE, "code": DUPLICATE_ID, "message": message,
               "reduction_mg": 0, "points": 0}
    marked = results.withColumn("__later", later)
    return marked.select(
        *[F.when(F.col("__later"), F.lit(changed[name])).otherwise(F.col(name)).alias(name)
          if name in changed else F.col(name) for name in results.columns],
        F.col("__later"))


MAX_REPEATED = 500_000  # repeated id hashes beyond which the id window decides instead


def _later_rows(df, source: Source, units: dict) -> Optional[np.ndarray]:
    """The sorted row numbers of the records the duplicate-id check rejects, found as
    `tanpu eval` finds them in a file (BatchEngine.duplicate_rows): the ids hashed (a
    shuffle of 8 bytes a record: the hash of the id without its whitespace, so ids the
    engine reads alike hash alike), and only the records whose hash is repeated (none,
    usually) evaluated and judged by find_duplicate_ids on the driver. None when more
    than MAX_REPEATED hashes are repeated: the window over the results decides then.

    This replaced a window over every result by id (_mark_duplicate_ids): a shuffle and
    sort of the whole results, about half of the jobs' time per record at 1 M records,
    where the hashes are 8 bytes a record, partly aggregated before the shuffle; with
    cross-record rules it also spares evaluating every record twice (docs/spark.md)."""
    from pyspark.sql import functions as F

    from .batch.rules import find_duplicate_ids

    key = F.xxhash64(_text_key("id")) if "id" in df.columns else F.lit(0)
    repeated = df.select(key.alias("__h")).groupBy("__h").count() \
                 .filter(F.col("count") > 1).select("__h")
    hashes = repeated.limit(MAX_REPEATED + 1).toArrow()
    if hashes.num_rows > MAX_REPEATED:
        return None
    if hashes.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    spark = df.sparkSession
    wanted = F.broadcast(spark.createDataFrame(hashes))
    candidates = df.join(wanted, key == wanted["__h"], "left_semi")
    schema = RESULTS_SCHEMA.append(pa.field(ROW, pa.int64()))
    judged = candidates.mapInArrow(_renamed(per_record_batches(source, units), schema),
                                   _spark_schema(schema)) \
                       .select("id", "account", "time", "status", "row").toArrow()
    found = pl.from_arrow(judged)
    rows = found.get_column("row").to_numpy()
    later = find_duplicate_ids(found.get_column("id"), found.get_column("account"),
                               found.get_column("time").fill_null(0).to_numpy(), rows,
                               (found.get_column("status") != INVALID).to_numpy())
    return np.sort(rows[later]).astype(np.int64)


def _has_rules(source: Source) -> bool:
    """Whether records must meet their account's other records (history windows too:
    computed per Arrow batch they would see only the batch's days)."""
    return _engine(source).plan.rules.has_account_state


def evaluate(df, methodology: Union[str, Path], *, row: Optional[str] = None):
    """Records (a Spark DataFrame, columns as in a record file) -> results (a Spark
    DataFrame with the columns of `tanpu eval`'s results frame: row, id, account, time
    (µs UTC), status, code, message, reduction_mg, points, bonus, masses, flags, ...:
    RESULTS_SCHEMA, from engine.batch.engine.RESULT_SCHEMA)."""
    return _evaluate(df, Source.of(methodology), row, None)[0]


def evaluate_with_states(df, methodology: Union[str, Path], states, *, row: Optional[str] = None):
    """Like evaluate, each account judged after its prior state: `states` a DataFrame of
    (account, state) with AccountState JSON (engine/state.py; the ledger's rule_states).
    -> (results, states after): the posterior state of every account with a record here."""
    return _evaluate(df, Source.of(methodology), row, states)


def _evaluate(df, source: Source, row: Optional[str], states):
    from pyspark.sql import functions as F

    message = _duplicate_message(source)  # compiles on the driver: errors before any task
    df, units = _prepared(df, row)
    rules = _has_rules(source)
    later = _later_rows(df, source, units) if states is None else None
    if later is not None and not rules:
        schema = RESULTS_SCHEMA.append(pa.field(ROW, pa.int64()))
        return df.mapInArrow(_renamed(per_record_batches(source, units, (), later), schema),
                             _spark_schema(schema)).select(*COLUMNS), None
    if later is not None:
        # every record of an account in one partition (the hash of its account as the
        # engine reads it: stripped), each partition evaluated whole
        # (by the expression itself: a column of it would be shuffled and handed to Python)
        by_account = _text_key("account") if "account" in df.columns else F.lit("")
        return df.repartition(by_account).mapInArrow(
            partition_results(source, units, later), _spark_schema(RESULTS_SCHEMA)), None
    keep = tuple(c for c in df.columns if c != ROW) if rules else ()
    out_schema = RESULTS_SCHEMA
    for name in keep:
        out_schema = out_schema.append(pa.field(f"__in_{name}", _arrow_type(df, name)))
    out_schema = out_schema.append(pa.field(ROW, pa.int64()))
    first = df.mapInArrow(_renamed(per_record_batches(source, units, keep), out_schema),
                        _spark_schema(out_schema))
    marked = _mark_duplicate_ids(first, message)
    if not rules:
        return marked.select(*COLUMNS), None
    # a record with a repeated id goes with its account's records too: no rule counts it,
    # but a history window holds it (every record read is history: engine/history.py)
    settled = marked.filter(F.col("status") == INVALID).select(*COLUMNS)
    judged = marked.filter(F.col("status") != INVALID).select(
        *[F.col(f"__in_{name}").alias(name) for name in keep], F.col(ROW),
        F.col("account").alias(ACCOUNT), F.col("__later").alias(LATER))
    if states is None:
        # every record of an account in one partition (by the account's hash), each
        # partition evaluated whole
        results = judged.repartition(ACCOUNT).mapInArrow(
            partition_results(source, units), _spark_schema(RESULTS_SCHEMA))
        return settled.unionByName(results), None
    prior = states.select(F.col("account").alias(ACCOUNT), F.col(STATE))
    with_state = RESULTS_SCHEMA.append(pa.field(STATE, pa.string()))
    both = judged.groupBy(ACCOUNT).cogroup(prior.groupBy(ACCOUNT)).applyInArrow(
        account_results_with_state(source, units), _spark_schema(with_state))
    both = both.persist()
    results = settled.unionByName(both.drop(STATE))
    after = both.filter(F.col(STATE).isNotNull()).select("account", STATE)
    unchanged = states.select("account", STATE).join(after.select("account"), "account", "left_anti")
    return results, unchanged.unionByName(after)


def _arrow_type(df, name: str) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type
    return to_arrow_type(df.schema[name].dataType)


def _renamed(run, schema: pa.Schema):
    """Names the passed-through input columns `__in_<name>` (the results have an `id`)
    and gives every column the type declared to Spark (Polars hands back large or view
    strings, say, where Spark's schema says string)."""
    def wrapped(batches):
        for batch in run(batches):
            names = [n if i < len(COLUMNS) or n == ROW else f"__in_{n}"
                     for i, n in enumerate(batch.schema.names)]
            table = pa.Table.from_batches([pa.RecordBatch.from_arrays(batch.columns, names=names)])
            yield from table.cast(schema).to_batches()
    return wrapped
