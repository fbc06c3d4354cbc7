"""`tanpu spark-eval`, and `tanpu.spark.evaluate` for Python programs on Spark.

The library is engine/spark.py (re-exported here under the name users look for): it needs
only the compiler and the engine, and Spark's executors import it by name. This module is
the command around it, usable two ways (docs/spark.md):

    tanpu spark-eval METHODOLOGY RECORDS -o RESULTS [--master local[2]]
    spark-submit [cluster options] "$(python -c 'import tanpu.spark as m; print(m.__file__)')" \\
        METHODOLOGY RECORDS -o RESULTS

RECORDS: Parquet files, a folder or a glob (whatever `spark.read.parquet` reads, on any
file system Spark has: hdfs://, s3a://, ...). RESULTS: a folder of Parquet files with the
results frame's columns and the methodology, version and content hash of the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

__all__ = ["evaluate", "evaluate_with_states", "RESULTS_SCHEMA", "spark_eval", "main"]

_LIBRARY = ("evaluate", "evaluate_with_states", "RESULTS_SCHEMA")


def __getattr__(name: str):
    """engine/spark.py's names, imported when first used: `tanpu --help` (which lists this
    command) does not load Polars and Arrow."""
    if name in _LIBRARY:
        from engine import spark
        return getattr(spark, name)
    raise AttributeError(name)


@click.command(name="spark-eval")
@click.argument("methodology", type=click.Path(exists=True, dir_okay=False))
@click.argument("records", nargs=-1, required=True)
@click.option("-o", "--output", required=True,
              help="the folder of result Parquet files to write (it must not exist)")
@click.option("--row", "row", metavar="COLUMN",
              help="the column holding each record's row number (default: the records are "
                   "numbered in the order Spark reads them, as `tanpu eval` numbers a file)")
@click.option("--states", "states", metavar="PARQUET",
              help="the accounts' prior states (columns account, state: AccountState JSON)")
@click.option("--states-out", "states_out", metavar="FOLDER",
              help="where to write the accounts' states after this run (needs --states)")
@click.option("--master", help="the Spark master (default: spark-submit's, else local[*])")
@click.option("--partitions", type=int,
              help="shuffle partitions (spark.sql.shuffle.partitions): the accounts are "
                   "spread over this many tasks by hash (default on local[N]: N)")
@click.option("--batch-rows", type=int, default=65_536, show_default=True,
              help="rows per Arrow batch handed to the engine "
                   "(spark.sql.execution.arrow.maxRecordsPerBatch)")
def spark_eval(methodology, records, output, row, states, states_out, master, partitions, batch_rows):
    """Evaluate the records in RECORDS (Parquet: files, folders, globs) with METHODOLOGY on
    Spark; the results are those `tanpu eval` gives for the same records."""
    if states_out and not states:
        raise click.UsageError("--states-out needs --states (an empty file for a first run)")
    try:
        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F
    except ImportError:
        raise click.ClickException("PySpark is not installed: pip install 'tanpu[spark]'") from None
    from dsl import compile_source
    from engine.spark import Source, evaluate, evaluate_with_states

    source = Source.of(Path(methodology))

    compiled = compile_source(source.text, source.name)
    if not compiled.ok:
        click.echo(compiled.render(), err=True)
        raise click.ClickException(f"{methodology} does not compile")
    if master is None and "SPARK_ENV_LOADED" not in os.environ:  # not under spark-submit
        master = "local[*]"
    if master and master.startswith("local"):  # the workers are this Python, with tanpu
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(f"tanpu {compiled.methodology.metadata.id}")
    if master:
        builder = builder.master(master)
    builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    if not partitions and master and master.startswith("local"):
        partitions = _local_cores(master)  # Spark's 200 are 200 engine calls on a few cores
    if partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
    spark = builder.getOrCreate()
    df = spark.read.parquet(*records)
    from engine.batch import BatchEngine

    ref = BatchEngine(compiled.methodology).ref
    if states:
        results, after = evaluate_with_states(df, source.text, spark.read.parquet(states), row=row)
    else:
        results, after = evaluate(df, source.text, row=row), None
    results = results.withColumns({"methodology": F.lit(ref.id), "version": F.lit(ref.version),
                                   "content_hash": F.lit(ref.content_hash)})
    results.write.mode("errorifexists").parquet(output)
    if states_out and after is not None:
        after.write.mode("errorifexists").parquet(states_out)
    written = spark.read.parquet(output)
    counts = dict(written.groupBy("status").count().collect())
    click.echo(f"{ref.id} {ref.version} ({ref.content_hash[:19]}): {sum(counts.values())} record(s)",
               err=True)
    for status in sorted(counts):
        click.echo(f"  {status:<15} {counts[status]}", err=True)


def _local_cores(master: str) -> int:
    """The cores of `local`, `local[N]`, `local[*]` or `local[N,F]`."""
    inside = master[master.find("[") + 1:master.find("]")] if "[" in master else "1"
    count = inside.split(",")[0].strip()
    return (os.cpu_count() or 1) if count == "*" else max(1, int(count))


def main() -> None:
    """The entry point spark-submit runs (this file as the application)."""
    spark_eval()


if __name__ == "__main__":
    main()
