"""The `tanpu` command line. Each command is a thin edge over dsl/ and engine/."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # dsl is imported by the commands that compile: `--help` stays quick
    from dsl import Compiled


def _compile_all(paths) -> list[Compiled]:
    from . import sources

    try:
        return sources.compile_paths(paths)
    except sources.SourceError as error:
        raise click.UsageError(str(error)) from None


def _compile_one(path) -> Compiled:
    compiled = _compile_all([path])
    if len(compiled) != 1:
        raise click.UsageError(f"{path}: give one methodology file")
    c = compiled[0]
    if not c.ok:
        click.echo(c.render(), err=True)
        raise click.ClickException(f"{path} does not compile")
    return c


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tanpu")
def main():
    """Tanpu: executable, reviewable carbon-inclusion (碳普惠) methodologies."""


# ---------------------------------------------------------------- check
@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text for people, json for tools (the web editor uses it).")
def check(paths, fmt):
    """Check methodology files (or folders of *.tanpu files) and report every problem.

    Exits 0 only when there are no errors; warnings do not fail the check.
    """
    from dsl import render_text
    from dsl.check.library import check_library

    compiled = _compile_all(paths)
    for diagnostic in check_library(compiled):
        next(c for c in compiled if c.file == diagnostic.file).diagnostics.append(diagnostic)
    errors = sum(len(c.errors) for c in compiled)
    warnings = sum(len(c.warnings) for c in compiled)
    if fmt == "json":
        click.echo(json.dumps([
            {"file": c.file, "ok": c.ok, "content_hash": c.content_hash,
             "id": c.methodology.metadata.id if c.methodology else None,
             "version": c.methodology.metadata.version if c.methodology else None,
             "diagnostics": [d.to_json() for d in c.diagnostics]}
            for c in compiled], ensure_ascii=False, indent=2))
    else:
        for c in compiled:
            for d in c.diagnostics:
                click.echo(render_text(d, c.source))
                click.echo()
        click.echo(f"checked {len(compiled)} file(s): {errors} error(s), {warnings} warning(s)")
    sys.exit(1 if errors else 0)


# ---------------------------------------------------------------- test
@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def test(paths):
    """Run the examples embedded in methodology files.

    Ends with a line `N passed, M failed`; a file that does not compile counts as one
    failure.
    """
    from engine import Engine
    from engine.examples import run_examples

    passed = failed = 0
    for c in _compile_all(paths):
        if not c.ok:
            click.echo(f"{c.file}: does not compile")
            click.echo(c.render())
            failed += 1
            continue
        outcomes = run_examples(Engine(c.methodology))
        if not outcomes:
            click.echo(f"{c.file}: no examples")
        for outcome in outcomes:
            if outcome.passed:
                passed += 1
                click.echo(f"ok      {c.file}:{outcome.line} {outcome.title}")
            else:
                failed += 1
                click.echo(f"FAILED  {c.file}:{outcome.line} {outcome.title}")
                for failure in outcome.failures:
                    click.echo(f"          {failure}")
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------- eval
def _progress(total: int):
    """A progress bar on a terminal; nothing when output is piped or in CI."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import (BarColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    progress = Progress(TextColumn("evaluating"), BarColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), transient=True)
    progress.start()
    task = progress.add_task("records", total=total)
    return progress, task


@main.command(name="eval")
@click.argument("methodology", type=click.Path(exists=True, dir_okay=False))
@click.argument("records")
@click.option("-o", "--output", type=click.Path(),
              help="write results here (.csv, .jsonl or .parquet); default: CSV on stdout. "
                   "For a dataset: a folder, one result file per record file")
@click.option("--explain", is_flag=True,
              help="include where each number came from (always the scalar path)")
@click.option("--engine", "engine_name", type=click.Choice(["batch", "scalar", "rules"]),
              default="batch", show_default=True,
              help="batch: columnar, streams files of millions of records; scalar: record by "
                   "record; rules: scalar formulas, cross-record rules by durable_rules in a "
                   "worker process. All give the same results.")
@click.option("--resume", is_flag=True,
              help="a dataset: finish an interrupted run into the same -o folder, "
                   "skipping the files already written")
@click.option("--output-format", type=click.Choice(["parquet", "csv", "jsonl"]), default="parquet",
              show_default=True, help="a dataset: the format of the result files")
@click.option("--compact", is_flag=True,
              help="Parquet results of id, account, status, code, reduction_mg and points only; "
                   "the methodology, version and content hash once, in the file's metadata")
def eval_command(methodology, records, output, explain, engine_name, resume, output_format, compact):
    """Evaluate the activity records in RECORDS with METHODOLOGY.

    RECORDS is a file (.csv, .jsonl, .parquet), or a dataset: a folder of them (hive
    partitions `day=2026-01-01/` become columns) or a quoted glob. Each file of a dataset
    is evaluated as if given alone, into its own result file under the -o folder at the
    same relative path; `--resume` skips those already written.

    A row that cannot be read is reported with its file, row number and reason, and the
    others are still evaluated. A summary by status ends the run (on stderr).
    """
    from .memory import keep_freed_memory

    keep_freed_memory()  # before Polars loads: its allocator reads the setting then
    from engine.recordfiles import FileFormatError, format_of, is_dataset

    if not Path(records).is_file() and not is_dataset(records):
        raise click.UsageError(f"RECORDS {records}: no such file, folder or glob")
    if compact and (explain or (output_format != "parquet" if is_dataset(records) else
                                 not output or format_of(Path(output)) != "parquet")):
        raise click.UsageError("--compact writes Parquet results (-o FILE.parquet, or a dataset's "
                               "--output-format parquet) without --explain")
    c = _compile_one(methodology)
    if is_dataset(records):
        if explain:
            raise click.UsageError("--explain takes one file, not a dataset")
        if not output:
            raise click.UsageError("a dataset needs -o FOLDER: its results are written one file per record file")
        try:
            _eval_dataset(c, records, Path(output), engine_name, resume, output_format, compact)
        except FileFormatError as error:
            raise click.ClickException(str(error)) from None
        return
    if resume:
        raise click.UsageError("--resume is for a dataset (a folder or a glob) written to a folder")
    try:
        if output:
            format_of(Path(output))
        format_of(Path(records))
    except FileFormatError as error:
        raise click.UsageError(str(error)) from None
    if output:  # before any record is read, not after the whole file was evaluated
        folder = Path(output).resolve().parent
        if not folder.is_dir():
            raise click.UsageError(f"-o {output}: the folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise click.UsageError(f"-o {output}: the folder {folder} cannot be written")
    if explain:
        _eval_explained(c.methodology, Path(records), output)
        return
    try:
        _eval_to(c, Path(records), output, engine_name, compact)
    except FileFormatError as error:  # the file cannot be read on: said, no output left
        raise click.ClickException(str(error)) from None


def _engine_and_frames(c, engine_name: str, compact: bool = False):
    """(the engine, a function: (path, hive partitions) -> frames of results). `compact`:
    the frames are written as a compact file (recordfiles.ResultWriter) and summed up
    (_Summary), so the batch engine makes only those columns (a spilled file's outcomes
    then keep no time, flags or masses)."""
    if engine_name == "batch":
        from engine.batch import BatchEngine
        from engine.result import COMPACT_COLUMNS

        from engine.native.build import build

        engine = BatchEngine(c.methodology, kernels=build)  # the formulas in C where it can
        columns = (*COMPACT_COLUMNS, *_Summary.COLUMNS) if compact else None

        def frames(path: Path, partitions=(), rewind=None):
            return _evaluate_batch(engine, path, partitions, rewind, columns)
        return engine, frames
    from engine.batch import results_frame

    if engine_name == "scalar":
        from engine import Engine

        engine = Engine(c.methodology)
    else:
        from engine.rules import RulesPathEngine

        engine = RulesPathEngine(c.methodology)

    def frames(path: Path, partitions=(), rewind=None):  # noqa: ARG001 - read whole, never rewound
        from engine.rules import RulesEngineError

        try:
            return iter([results_frame(_evaluate_scalar(engine, path, partitions))])
        except RulesEngineError as error:
            raise click.ClickException(str(error)) from None
    return engine, frames


MANIFEST = "_tanpu_eval.json"  # in a dataset's output folder: what the run was (for --resume)


def _eval_dataset(c, spec: str, out: Path, engine_name: str, resume: bool, fmt: str,
                  compact: bool = False) -> None:
    """Each file of the dataset -> its result file, written whole under a temporary name
    and renamed (recordfiles.ResultWriter), so a result file that exists is complete: a
    run killed at any point and resumed writes each missing one once, and none twice."""
    from engine.recordfiles import FORMATS, ResultWriter, open_dataset

    if out.suffix.lower() in FORMATS:
        raise click.UsageError(f"-o {out}: a dataset's results are a folder (one file per record file), "
                               f"not one {out.suffix} file")
    inside = out.resolve()
    files = [f for f in open_dataset(spec) if inside not in f.path.resolve().parents]  # not our own results
    if not files:
        raise click.UsageError(f"{spec}: no record files outside -o {out}")
    targets: dict[Path, Path] = {}
    for f in files:
        target = f.relative.with_suffix("." + fmt)
        if target in targets:
            raise click.UsageError(f"{targets[target]} and {f.relative} would both be written to {out / target}")
        targets[target] = f.relative
    engine, frames_of = _engine_and_frames(c, engine_name, compact)
    identity = {"methodology": engine.ref.content_hash, "format": fmt + (" compact" if compact else ""),
                "inputs": [{"file": f.relative.as_posix(), "bytes": f.path.stat().st_size,
                            "modified_ns": f.path.stat().st_mtime_ns} for f in files]}
    manifest = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"-o {out}: not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not resume:
            raise click.UsageError(f"-o {out} is not empty: --resume finishes the run that wrote it; "
                                   f"else give an empty or new folder")
        try:
            before = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before != identity:
            raise click.UsageError(f"-o {out} holds the results of another run (another methodology, "
                                   f"format or input files): it cannot be resumed")
    out.mkdir(parents=True, exist_ok=True)
    if not manifest.exists():
        partial = out / f".{MANIFEST}.partial-{os.getpid()}"
        partial.write_text(json.dumps(identity, indent=1), encoding="utf-8")
        os.replace(partial, manifest)
    _remove_stale_partials(out)
    if len(files) > 1 and _has_cross_record_rules(c.methodology):
        click.echo("note: each file is evaluated as if given alone: the cross-record rules "
                   "(caps, overlaps, duplicates, windows) judge the records of one file together, "
                   "not across files", err=True)
    summary = _Summary()
    done = 0
    for f in files:
        target = out / f.relative.with_suffix("." + fmt)
        if target.exists():  # only when resuming: an empty folder was required otherwise
            done += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        writer = ResultWriter(target, engine.ref, compact=compact)
        before = summary.copy()
        try:
            for frame in frames_of(f.path, f.partitions, _rewinder(writer, summary, before)):
                writer.write(frame)
                summary.add(frame, f.relative.as_posix())
            writer.close()
        except OSError as error:
            writer.abort()
            raise click.ClickException(f"writing {target} failed: {error}") from None
        except BaseException:
            writer.abort()
            raise
    if done:
        click.echo(f"{done} of {len(files)} file(s) already written by the interrupted run: skipped",
                   err=True)
    summary.echo(engine.ref)


def _has_cross_record_rules(methodology) -> bool:
    from engine.plan import from_ir

    return from_ir(methodology).rules.has_account_state


def _remove_stale_partials(folder: Path) -> None:
    """Result files a killed run left half-written (`.NAME.partial-PID`, PID not running)."""
    for path in folder.rglob(".*.partial-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # that run is still going
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        path.unlink(missing_ok=True)


SMALL_FILE = 256 << 10  # bytes: below this a CSV or JSON Lines file takes the small path


def _small_path(records: Path, output, engine_name: str) -> bool:
    """Whether the run is small enough that starting NumPy and Polars would cost more than
    evaluating record by record: a CSV or JSON Lines file of at most SMALL_FILE bytes
    (a few thousand records), whatever the results are written to. The scalar engine gives
    the same results as the batch engine (tests/engine/test_batch_differential.py);
    recordfiles.result_lines writes the same bytes as ResultWriter, and
    recordfiles.result_table (PyArrow alone) the same Parquet table (tests/test_eval_small.py)."""
    from engine.recordfiles import format_of

    if engine_name not in ("batch", "scalar") or format_of(records) not in ("csv", "jsonl"):
        return False
    return records.stat().st_size <= SMALL_FILE


def _eval_small(c, records: Path, output, compact: bool = False) -> None:
    from engine import Engine
    from engine.recordfiles import format_of, write_result_lines, write_result_table

    engine = Engine(c.methodology)
    results = _evaluate_scalar(engine, records)
    try:
        if output and format_of(Path(output)) == "parquet":
            write_result_table(results, engine.ref, Path(output), compact=compact)
        else:
            write_result_lines(results, engine.ref, Path(output) if output else None, stream=sys.stdout)
    except OSError as error:
        raise click.ClickException(f"writing the results failed: {error}") from None
    summary = _Summary()
    summary.add_results(results)
    summary.echo(engine.ref)


def _eval_to(c, records: Path, output, engine_name: str, compact: bool = False) -> None:
    from engine.recordfiles import ResultWriter

    if _small_path(records, output, engine_name):
        _eval_small(c, records, output, compact)
        return
    engine, frames_of = _engine_and_frames(c, engine_name, compact)
    writer = ResultWriter(Path(output) if output else None, engine.ref, stream=sys.stdout, compact=compact)
    summary = _Summary()
    # to a file the frames can be taken back: a per-record methodology's file is read once
    frames = frames_of(records, rewind=_rewinder(writer, summary, summary.copy()) if output else None)
    try:
        for frame in frames:
            writer.write(frame)
            summary.add(frame)
        writer.close()
    except OSError as error:  # a full disk, a closed pipe: said, and no partial file left
        writer.abort()
        raise click.ClickException(f"writing the results failed: {error}") from None
    except BaseException:
        writer.abort()
        raise
    summary.echo(engine.ref)


def _rewinder(writer, summary, before):
    """The engine's `rewind` (BatchEngine.evaluate_file): the file begun anew and the
    summary back to `before`, as the frames come again from the first."""
    def rewind():
        writer.restart()
        summary.__dict__.update(before.copy().__dict__)
    return rewind


def _evaluate_scalar(engine, path: Path, partitions=()):
    from engine.recordfiles import open_records

    source = open_records(path)
    bar = _progress(source.size)

    def rows():
        for n, row in enumerate(source.rows, start=1):
            if bar and n % 2048 == 0:
                bar[0].update(bar[1], completed=source.position())
            for name, value in partitions:  # as recordfiles.with_partitions: the row's own wins
                row.setdefault(name, value)
            yield row
    try:
        return engine.evaluate(rows(), column_units=source.column_units)
    finally:
        if bar:
            bar[0].stop()


def _evaluate_batch(engine, path: Path, partitions=(), rewind=None, columns=None):
    bar = _progress(path.stat().st_size or 1)

    def progress(done, total):
        if bar:
            bar[0].update(bar[1], completed=done, total=total)
    try:
        yield from engine.evaluate_file(path, progress=progress, partitions=partitions, rewind=rewind,
                                        columns=columns)
    finally:
        if bar:
            bar[0].stop()


def _eval_explained(methodology, path: Path, output) -> None:
    """--explain: the scalar path, with each record's explanation."""
    from engine import Engine
    from engine.explain import humanize, render

    from engine.recordfiles import open_records, write_results

    engine = Engine(methodology)
    source = open_records(path)
    results = engine.evaluate(source.rows, explain=True, column_units=source.column_units)
    dicts = []
    for r in results:
        if r.explanation is not None:
            humanize(r.explanation, engine.methodology.metadata.timezone)
        dicts.append(r.to_dict(engine.ref))
    if output:
        write_results(Path(output), dicts)
    else:
        for r in results:
            click.echo(f"row {r.row} {r.id}: {r.status}{' ' + r.code if r.code else ''}"
                       f"{' (' + r.message + ')' if r.message else ''}; "
                       f"reduction {r.reduction_mg / 1000:g} g, {r.points} points")
            for line in render(r.explanation or [], engine.methodology.metadata.timezone):
                click.echo(line)
    summary = _Summary()
    from engine.batch import results_frame
    summary.add(results_frame(results))
    summary.echo(engine.ref)


class _Summary:
    """Counts by status, totals and the first invalid rows, over frames of results."""

    STATUSES = ("credited", "capped", "rejected", "duplicate", "not_applicable", "invalid")
    COLUMNS = ("row", "status", "reduction_mg", "points", "bonus", "message")  # what `add` reads

    def __init__(self):
        self.total = 0
        self.counts: Counter = Counter()
        self.mg = 0
        self.points = 0
        self.invalid: list[tuple[str, int, str]] = []

    def add(self, frame, file: str = "") -> None:
        """`file`: the record file the frame's rows are from (a dataset's; "" for one file)."""
        import polars as pl

        self.total += frame.height
        # one query: each status counted by comparing the text with it, the credited and
        # capped records' sums (no grouping: hashing every row's status took 0.11 s of CPU
        # for 5M results against 0.08 s; a grouping, if a status is not one of STATUSES)
        status = pl.col("status")
        paid = (status == "credited") | (status == "capped")
        *counts, mg, points = frame.select(
            *[(status == name).sum().alias(name) for name in self.STATUSES],
            pl.col("reduction_mg").filter(paid).sum().alias("mg"),
            (pl.col("points") + pl.col("bonus")).filter(paid).sum().alias("points")).row(0)
        if sum(counts) == frame.height:
            self.counts.update({name: count for name, count in zip(self.STATUSES, counts) if count})
            self.mg += int(mg or 0)
            self.points += int(points or 0)
        else:  # a status not among STATUSES (none of the engines gives one)
            for name, count, mg, points in frame.group_by("status").agg(
                    pl.len(), pl.col("reduction_mg").sum(), (pl.col("points") + pl.col("bonus")).sum()).iter_rows():
                self.counts[name] += count
                if name in ("credited", "capped"):
                    self.mg += int(mg or 0)
                    self.points += int(points or 0)
        if len(self.invalid) < 21 and self.counts.get("invalid"):
            bad = (frame.lazy().filter(pl.col("status") == "invalid").select("row", "message")
                   .head(21 - len(self.invalid)).collect())
            self.invalid += [(file, row, message) for row, message in bad.iter_rows()]

    def copy(self) -> "_Summary":
        other = _Summary()
        other.total, other.counts, other.mg, other.points = self.total, Counter(self.counts), self.mg, self.points
        other.invalid = list(self.invalid)
        return other

    def add_results(self, results, file: str = "") -> None:
        """As add, for engine.Result objects (the small path, without Polars)."""
        for r in results:
            self.total += 1
            self.counts[r.status] += 1
            if r.status in ("credited", "capped"):
                self.mg += r.reduction_mg
                self.points += r.points + r.bonus
            elif r.status == "invalid" and len(self.invalid) < 21:
                self.invalid.append((file, r.row, r.message))

    def echo(self, ref) -> None:
        echo = lambda text="": click.echo(text, err=True)  # noqa: E731
        echo(f"{ref.id} {ref.version} ({ref.content_hash[:19]}): {self.total} record(s)")
        for status in self.STATUSES:
            if self.counts.get(status):
                echo(f"  {status:<15} {self.counts[status]}")
        echo(f"  total reduction {self.mg / 1_000_000:.6f} kgCO2e, {self.points} points")
        for file, row, message in self.invalid[:20]:
            echo(f"  {file + ' ' if file else ''}row {row}: {message}")
        invalid = self.counts.get("invalid", 0)
        if invalid > 20:
            echo(f"  ... and {invalid - 20} more invalid rows")


# ---------------------------------------------------------------- inspect
@main.command()
@click.argument("methodology", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable (metadata, parameters, input JSON Schema)")
@click.option("--plan", "as_plan", is_flag=True,
              help="the evaluation plan both formula backends are written from, one step a line")
@click.option("--c", "as_c", is_flag=True, help="the C source of the batch kernel")
def inspect(methodology, as_json, as_plan, as_c):
    """Metadata, parameters with sources and dates, and the input schema of a methodology."""
    from engine.schema import describe

    c = _compile_one(methodology)
    if as_plan or as_c:
        from engine.plan import from_ir, plan_text
        from engine.to_c import generate

        plan = from_ir(c.methodology)
        click.echo(plan_text(plan) if as_plan else generate(plan).text, nl=False)
        return
    info = describe(c.methodology, c.content_hash)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    meta = info["metadata"]
    click.echo(f"{meta['id']} {meta['version']}  {meta['title']}")
    click.echo(f"content hash {info['content_hash']}")
    if meta.get("issuer"):
        click.echo(f"issuer       {meta['issuer']}")
    click.echo(f"covers       {', '.join(meta['covers'])}")
    click.echo(f"effective    from {meta['effective_from']}" + (f" until {meta['effective_until']}" if meta.get('effective_until') else ""))
    click.echo("inputs")
    for name, prop in info["input_schema"]["properties"].items():
        required = "required" if name in info["input_schema"].get("required", []) else "optional"
        click.echo(f"  {name:<16} {prop.get('x-tanpu-type', prop.get('type'))} {prop.get('x-unit', '')} ({required})")
    click.echo("parameters")
    for p in info["parameters"]:
        for period in p["periods"]:
            values = period["values"] if isinstance(period["values"], str) else ", ".join(
                f"{k}: {v}" for k, v in period["values"].items())
            click.echo(f"  {p['name']} [{p['unit']}] from {period['from']}: {values}")
            click.echo(f"      source: {period['source']}{' [' + period['tag'] + ']' if period['tag'] else ''}")



# ---------------------------------------------------------------- doc
@main.command()
@click.argument("methodology", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="write the document here (.html); default: HTML on stdout")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="the language of the document")
def doc(methodology, output, lang):
    """Render METHODOLOGY as the document a committee reads (one self-contained HTML file).

    Scope, applicability conditions in words, parameter tables with sources and dates,
    numbered formulas (MathML), cross-record rules, the examples as run by the engine,
    and the content hash. For PDF, print the HTML from a browser.
    """
    from docgen import render_html

    if output and Path(output).suffix.lower() not in (".html", ".htm"):
        raise click.UsageError(f"{output}: tanpu doc writes HTML (.html); for PDF, print the HTML from a browser")
    c = _compile_one(methodology)
    html = render_html(c.methodology, lang=lang, content_hash=c.content_hash)
    if output:
        Path(output).write_text(html, encoding="utf-8")
    else:
        click.echo(html, nl=False)



# ---------------------------------------------------------------- registry: db, admin, audit
_DATABASE_URL = click.option(
    "--database-url", envvar="DATABASE_URL", metavar="URL",
    help="SQLAlchemy URL (env DATABASE_URL); default: the SQLite file of registry.settings")


def _database(url):
    from registry import migrate
    from registry.db import Database

    db = Database(url)
    if not migrate.is_up_to_date(db):
        db.dispose()
        raise click.ClickException("the database schema is not up to date: run `tanpu db upgrade`")
    return db


@main.group()
def db():
    """The registry database."""


@db.command("upgrade")
@_DATABASE_URL
def db_upgrade(database_url):
    """Create or migrate the registry database to the newest schema."""
    from registry import migrate
    from registry.db import Database

    database = Database(database_url)
    try:
        before = migrate.current(database)
        after = migrate.upgrade(database)
    finally:
        database.dispose()
    click.echo(f"{database!r}: schema {before or 'empty'} -> {after}"
               if before != after else f"{database!r}: schema {after} is up to date")


@main.group()
def admin():
    """Registry administration."""


@admin.command("create-user")
@_DATABASE_URL
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["expert", "committee_member", "administrator", "integrator"]),
              help="repeat for several roles")
@click.option("--password", envvar="TANPU_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="prompted for when not given (env TANPU_PASSWORD)")
def admin_create_user(database_url, email, name, roles, password):
    """Create a user (recorded in the audit log as done by the system)."""
    from registry import users
    from registry.errors import RegistryError

    database = _database(database_url)
    try:
        with database.unit_of_work() as session:
            user = users.create_user(session, None, email=email, name=name, roles=roles,
                                     password=password)
            click.echo(f"created user {user.id} {user.email} ({', '.join(sorted(user.roles))})")
    except RegistryError as error:
        raise click.ClickException(str(error)) from None
    finally:
        database.dispose()


@main.group(name="audit")
def audit_group():
    """The audit log."""


@audit_group.command("verify")
@_DATABASE_URL
@click.option("--head", "head", metavar="HASH",
              help="a head published earlier (tanpu audit head): the chain must still pass "
                   "through it, or it was rewritten or cut since")
def audit_verify(database_url, head):
    """Check the audit chain and that it covers every ledger row; exit 1 at the first
    broken entry, a ledger row it does not cover, or a HEAD it no longer passes through."""
    from registry import audit

    database = _database(database_url)
    try:
        with database.read() as session:
            result = audit.verify(session, head=head)
    finally:
        database.dispose()
    click.echo(str(result))
    sys.exit(0 if result.ok else 1)


@audit_group.command("head")
@_DATABASE_URL
def audit_head(database_url):
    """Print the chain's newest entry (seq, time, hash) as JSON: publish it where the
    database cannot reach, and check later with `tanpu audit verify --head HASH`."""
    from registry import audit

    database = _database(database_url)
    try:
        with database.read() as session:
            click.echo(json.dumps(audit.head_entry(session), ensure_ascii=False))
    finally:
        database.dispose()


@admin.command("set-password")
@_DATABASE_URL
@click.option("--email", required=True)
@click.option("--password", envvar="TANPU_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="prompted for when not given (env TANPU_PASSWORD)")
def admin_set_password(database_url, email, password):
    """Set a user's password (e.g. a lost first administrator's)."""
    from registry import users
    from registry.errors import RegistryError

    database = _database(database_url)
    try:
        with database.unit_of_work() as session:
            user = users.by_email(session, email)
            if user is None:
                raise click.ClickException(f"no user {email}")
            users.set_password(session, None, user, password)
            click.echo(f"password set for {user.email}")
    except RegistryError as error:
        raise click.ClickException(str(error)) from None
    finally:
        database.dispose()


# ---------------------------------------------------------------- carbon accounts
_JSON = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _table(headers, rows) -> None:
    """Columns padded to their widest cell."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _account_row(a) -> dict:
    return {"id": a.id, "kind": a.kind, "parent": a.parent_id, "name": a.name,
            "domains": list(a.domains), "status": a.status,
            "created_at": a.created_at.isoformat().replace("+00:00", "Z")}


def _accounts_command(work):
    """Runs work(session) in a unit of work on the database, run again whole after a
    deadlock or serialization failure (Database.retried: the failed attempt committed
    nothing); registry errors end the command with their message (as the system: the
    command line may do everything)."""
    from registry.errors import RegistryError

    def run(database_url):
        database = _database(database_url)
        try:
            return database.retried(work)
        except RegistryError as error:
            raise click.ClickException(str(error)) from None
        finally:
            database.dispose()
    return run


def _echo_account(account, as_json) -> None:
    if as_json:
        click.echo(json.dumps(_account_row(account), ensure_ascii=False))
    else:
        _table(["id", "kind", "parent", "name", "domains", "status"],
               [[account.id, account.kind, account.parent_id or "-", account.name or "-",
                 ",".join(account.domains) or "-", account.status]])


@main.group(name="accounts")
def accounts_group():
    """Carbon accounts: regions, units, projects, individuals (docs/ledger.md)."""


@accounts_group.command("create")
@_DATABASE_URL
@click.argument("kind", type=click.Choice(["individual", "unit", "project", "region"]))
@click.option("--parent", type=int, help="the id of the parent account")
@click.option("--name", default="", help="a display name (for an individual: a pseudonym at most)")
@click.option("--domain", "domains", multiple=True, help="repeat for several domains")
@_JSON
def accounts_create(database_url, kind, parent, name, domains, as_json):
    """Create an account (audited as done by the system)."""
    from registry import accounts

    account = _accounts_command(lambda s: accounts.create(
        s, None, kind, parent_id=parent, name=name, domains=domains))(database_url)
    _echo_account(account, as_json)


@accounts_group.command("show")
@_DATABASE_URL
@click.argument("account_id", type=int)
@_JSON
def accounts_show(database_url, account_id, as_json):
    """An account: its parents, children, every integrator's ids, and its balance."""
    from registry import accounts
    from registry.models import User

    def work(s):
        account = accounts.get(s, account_id)
        identities = [{"integrator": s.get(User, i.integrator_id).email,
                       "external_id": i.external_id} for i in accounts.identities(s, account_id)]
        return {**_account_row(account),
                "parents": [a.id for a in accounts.ancestors(s, account_id)],
                "children": accounts.children_count(s, account_id), "identities": identities,
                "balance": accounts.balances(s, account_id).to_dict()}
    info = _accounts_command(work)(database_url)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    chain = " > ".join(str(i) for i in [*info["parents"], info["id"]])
    click.echo(f"account {info['id']}  {info['kind']}  {info['status']}  {info['name'] or '-'}")
    click.echo(f"hierarchy  {chain}  ({info['children']} below it directly)")
    click.echo(f"domains    {', '.join(info['domains']) or '-'}")
    if info["identities"]:
        click.echo("identities")
        _table(["integrator", "external id"],
               [[i["integrator"], i["external_id"]] for i in info["identities"]])
    balance = info["balance"]
    click.echo("balance")
    _table(["", "reduction kg", "points", "entries"],
           [[part, f"{balance[part]['reduction_kg']:.6f}", balance[part]["points"],
             balance[part]["entries"]] for part in ("own", "subtree")])


@accounts_group.command("list")
@_DATABASE_URL
@click.option("--kind", type=click.Choice(["individual", "unit", "project", "region"]))
@click.option("--status", type=click.Choice(["active", "frozen", "closed"]))
@click.option("--parent", type=int, help="the accounts directly under this one (0: at the top)")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--per-page", type=click.IntRange(1, 1000), default=50, show_default=True)
@_JSON
def accounts_list(database_url, kind, status, parent, page, per_page, as_json):
    """Accounts by id, a page at a time."""
    from registry import accounts

    items, total = _accounts_command(lambda s: accounts.list_accounts(
        s, None, kind=kind, status=status, parent_id=parent, page=page,
        per_page=per_page))(database_url)
    if as_json:
        click.echo(json.dumps({"items": [_account_row(a) for a in items], "page": page,
                               "per_page": per_page, "total": total}, ensure_ascii=False))
        return
    _table(["id", "kind", "parent", "name", "domains", "status"],
           [[a.id, a.kind, a.parent_id or "-", a.name or "-", ",".join(a.domains) or "-",
             a.status] for a in items])
    click.echo(f"page {page} of {max(1, -(-total // per_page))}: {total} account(s)")


def _status_command(name: str, status: str):
    @accounts_group.command(name, help=f"Set an account's status to {status}"
                            + (" (final)." if status == "closed" else "."))
    @_DATABASE_URL
    @click.argument("account_id", type=int)
    @_JSON
    def command(database_url, account_id, as_json):
        from registry import accounts

        account = _accounts_command(lambda s: accounts.update_status(
            s, None, account_id, status))(database_url)
        _echo_account(account, as_json)
    return command


accounts_freeze = _status_command("freeze", "frozen")
accounts_unfreeze = _status_command("unfreeze", "active")
accounts_close = _status_command("close", "closed")


@accounts_group.command("link")
@_DATABASE_URL
@click.argument("account_id", type=int)
@click.option("--integrator", required=True, help="the integrator's email")
@click.option("--external-id", required=True, help="the integrator's id for the account")
@_JSON
def accounts_link(database_url, account_id, integrator, external_id, as_json):
    """Map an integrator's account id to a platform account."""
    from registry import accounts, users

    def work(s):
        user = users.by_email(s, integrator)
        if user is None:
            raise click.ClickException(f"no user {integrator}")
        identity = accounts.link(s, None, user.id, external_id, account_id)
        return {"account": identity.account_id, "integrator": user.email,
                "external_id": identity.external_id}
    info = _accounts_command(work)(database_url)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
    else:
        click.echo(f"{info['integrator']} {info['external_id']} -> account {info['account']}")


# ---------------------------------------------------------------- the ledger
def _entry_rows(items) -> None:
    _table(["id", "record", "time", "methodology", "version", "status", "reduction g", "points",
            "bonus", "rule"],
           [[e["id"], e["record_id"], e["time"] or "-", e["methodology"], e["version"],
             e["status"], f"{e['reduction_mg'] / 1000:g}", e["points"], e["bonus"],
             e["code"] or "-"] for e in items])


def _span(command):
    """--from, --to and --subtree: what a statement and balances read of an account."""
    for option in reversed((
            click.option("--from", "start", help="activity time from (ISO date or datetime, "
                                                 "in the time zone; Asia/Shanghai by default)"),
            click.option("--to", "end", help="activity time before (ISO date or datetime)"),
            click.option("--subtree", is_flag=True, help="with the accounts below it"))):
        command = option(command)
    return command


@main.group(name="ledger")
def ledger_group():
    """Read the ledger back and verify it (docs/ledger.md)."""


@ledger_group.command("statement")
@_DATABASE_URL
@click.argument("account_id", type=int)
@click.option("--after", type=int, help="the last entry id of the previous page")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@_span
@_JSON
def ledger_statement(database_url, account_id, after, limit, start, end, subtree, as_json):
    """An account's entries in the order they were written, a page at a time."""
    from registry import statements

    page = _accounts_command(lambda s: statements.statement(
        s, None, account_id, after=after, limit=limit, start=statements.parse_time(start),
        end=statements.parse_time(end), subtree=subtree).to_dict())(database_url)
    if as_json:
        click.echo(json.dumps({"account": account_id, **page}, ensure_ascii=False, indent=2))
        return
    _entry_rows(page["items"])
    if page["next"] is not None:
        click.echo(f"more: --after {page['next']}")


@ledger_group.command("balances")
@_DATABASE_URL
@click.argument("account_id", type=int)
@click.option("--period", type=click.Choice(["day", "week", "month", "year"]), default="month",
              show_default=True)
@click.option("--timezone", default="Asia/Shanghai", show_default=True)
@_span
@_JSON
def ledger_balances(database_url, account_id, period, timezone, start, end, subtree, as_json):
    """Reduction, points and bonus per period and methodology."""
    from registry import statements

    info = _accounts_command(lambda s: statements.period_balances(
        s, None, account_id, period, timezone=timezone,
        start=statements.parse_time(start, timezone), end=statements.parse_time(end, timezone),
        subtree=subtree).to_dict())(database_url)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    _table(["period", "methodology", "reduction kg", "points", "bonus", "entries"],
           [[r["period"] or "-", r["methodology"], f"{r['reduction_kg']:.6f}", r["points"],
             r["bonus"], r["entries"]] for r in info["items"]])


@ledger_group.command("entries")
@_DATABASE_URL
@click.option("--record", "record_id", required=True, help="a record id as an integrator sent it")
@click.option("--methodology", help="only under this methodology")
@_JSON
def ledger_entries(database_url, record_id, methodology, as_json):
    """The credits of a record id (every integrator's: ids are each integrator's own)."""
    from registry import statements

    items = _accounts_command(lambda s: [statements.entry_dict(e) for e in statements.by_record(
        s, None, record_id, methodology=methodology)])(database_url)
    if as_json:
        click.echo(json.dumps({"record_id": record_id, "items": items}, ensure_ascii=False,
                              indent=2))
        return
    _entry_rows(items)


@ledger_group.command("verify")
@_DATABASE_URL
@click.option("--sample", type=click.IntRange(min=1), help="this many accounts at random (seeded)")
@click.option("--seed", type=int, default=13, show_default=True)
@_JSON
def ledger_verify(database_url, sample, seed, as_json):
    """Recompute every balance and credit; exit 1 when anything differs."""
    from registry import verify

    report = _accounts_command(lambda s: verify.verify(s, sample, seed=seed))(database_url)
    click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2, default=str)
               if as_json else str(report))
    sys.exit(0 if report.ok else 1)


# ---------------------------------------------------------------- rewards and retirement
def _reward_row(session, r) -> dict:
    from registry import rewards

    return {"id": r.id, "name": r.name, "name_en": r.name_en, "price_points": r.price_points,
            "stock_per_period": r.stock_per_period, "stock_left": rewards.stock_left(session, r),
            "period": r.period, "limit_per_account_per_period": r.limit_per_account_per_period,
            "active": r.active}


def _echo_rewards(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"items": rows}, ensure_ascii=False))
        return
    _table(["id", "name", "name_en", "price", "stock", "left", "period", "per account", "active"],
           [[r["id"], r["name"], r["name_en"] or "-", r["price_points"],
             "-" if r["stock_per_period"] is None else r["stock_per_period"],
             "-" if r["stock_left"] is None else r["stock_left"], r["period"],
             "-" if r["limit_per_account_per_period"] is None else r["limit_per_account_per_period"],
             "yes" if r["active"] else "no"] for r in rows])


@main.group(name="rewards")
def rewards_group():
    """The rewards catalogue and redemptions (docs/ledger.md, "Spending")."""


@rewards_group.command("list")
@_DATABASE_URL
@click.option("--all", "everything", is_flag=True, help="deactivated rewards too")
@_JSON
def rewards_list(database_url, everything, as_json):
    """The catalogue, with what is left of each stock this period."""
    from registry import rewards

    rows = _accounts_command(lambda s: [_reward_row(s, r) for r in rewards.list_rewards(
        s, include_inactive=everything)])(database_url)
    _echo_rewards(rows, as_json)


@rewards_group.command("create")
@_DATABASE_URL
@click.option("--name", required=True, help="the name (Chinese)")
@click.option("--name-en", default="", help="the English name")
@click.option("--price", "price_points", type=int, required=True, help="the price in points")
@click.option("--stock", "stock_per_period", type=int, help="items per period (none: unlimited)")
@click.option("--period", type=click.Choice(["day", "week", "month", "year"]), default="month",
              show_default=True)
@click.option("--limit-per-account", "limit", type=int, help="per account per period (none: no limit)")
@_JSON
def rewards_create(database_url, name, name_en, price_points, stock_per_period, period, limit,
                   as_json):
    """Add a reward to the catalogue (audited as done by the system)."""
    from registry import rewards

    rows = _accounts_command(lambda s: [_reward_row(s, rewards.create_reward(
        s, None, name=name, name_en=name_en, price_points=price_points,
        stock_per_period=stock_per_period, period=period,
        limit_per_account_per_period=limit))])(database_url)
    _echo_rewards(rows, as_json)


@rewards_group.command("redeem")
@_DATABASE_URL
@click.argument("account_id", type=int)
@click.argument("reward_id", type=int)
@click.option("--key", "idempotency_key", required=True,
              help="an idempotency key: the same key again redeems nothing more")
@_JSON
def rewards_redeem(database_url, account_id, reward_id, idempotency_key, as_json):
    """Spend an account's points on a reward, once per key."""
    from registry import rewards

    def work(s):
        out = rewards.redeem(s, None, account_id, reward_id, idempotency_key)
        return {"redemption": out.redemption.id, "account": account_id, "reward": reward_id,
                "points": out.redemption.points, "replayed": out.replayed,
                "balance": out.points.balance}
    info = _accounts_command(work)(database_url)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
    else:
        click.echo(f"redemption {info['redemption']}{' (replayed)' if info['replayed'] else ''}: "
                   f"{info['points']} points; balance {info['balance']}")


@main.command(name="retire")
@_DATABASE_URL
@click.argument("account_id", type=int)
@click.option("--mg", type=int, help="the amount in milligrams")
@click.option("--kg", help="the amount in kilograms (e.g. 1.5)")
@click.option("-t", "--tonnes", "t", help="the amount in tonnes")
@click.option("--purpose", required=True, help="what the grams are retired for")
@click.option("--beneficiary", default="", help="on whose behalf")
@_JSON
def retire_command(database_url, account_id, mg, kg, t, purpose, beneficiary, as_json):
    """Retire an account's reductions (oldest credits first) and print the certificate."""
    from registry import retirements
    from registry.errors import RegistryError

    try:
        amount = retirements.to_mg(mg=mg, kg=kg, t=t)
    except RegistryError as error:
        raise click.ClickException(str(error)) from None
    cert = _accounts_command(lambda s: retirements.certificate(s, retirements.retire(
        s, None, account_id, amount, purpose, beneficiary).id).to_dict())(database_url)
    if as_json:
        click.echo(json.dumps(cert, ensure_ascii=False))
        return
    click.echo(f"certificate {cert['certificate']}: {cert['reduction_t']} t "
               f"({cert['reduction_mg']} mg) from account {cert['account']}")
    _table(["record", "methodology", "version", "mg"],
           [[c["record_id"], c["methodology"], c["version"], c["reduction_mg"]]
            for c in cert["credits"]])
    click.echo(f"digest {cert['digest']} (verify: /certificates/{cert['certificate']})")


# ---------------------------------------------------------------- jobs
@main.group(name="jobs")
def jobs_group():
    """The integrators' jobs (large submissions done by `tanpu worker`; docs/api.md)."""


@jobs_group.command("list")
@_DATABASE_URL
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed"]))
@click.option("--integrator", metavar="EMAIL", help="one integrator's jobs")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@_JSON
def jobs_list(database_url, status, integrator, limit, as_json):
    """Jobs, newest first, with their progress."""
    from registry import jobs
    from registry.models import User
    from sqlalchemy import select

    database = _database(database_url)
    try:
        with database.read() as s:
            integrator_id = None
            if integrator:
                integrator_id = s.scalar(select(User.id).where(User.email == integrator))
                if integrator_id is None:
                    raise click.ClickException(f"no user {integrator}")
            found = [jobs.to_dict(j) | {"integrator": j.integrator_id}
                     for j in jobs.listing(s, status=status, integrator_id=integrator_id,
                                           limit=limit)]
    finally:
        database.dispose()
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False))
        return
    _table(["id", "integrator", "status", "mode", "methodology", "rows", "errors", "credited",
            "created"],
           [[j["id"], j["integrator"], j["status"], j["mode"], j["methodology"],
             f"{j['progress']['rows_done']}/{j['progress']['rows_total'] if j['progress']['rows_total'] is not None else '?'}",
             j["summary"]["errors"], j["summary"]["credited"], j["created_at"]] for j in found])


@jobs_group.command("show")
@_DATABASE_URL
@click.argument("job_id")
def jobs_show(database_url, job_id):
    """One job, as the API shows it to its integrator (JSON), with where its files are."""
    from registry import jobs
    from registry.models import Job

    database = _database(database_url)
    try:
        with database.read() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise click.ClickException(f"no job {job_id}")
            out = jobs.to_dict(job) | {"integrator": job.integrator_id,
                                       "lease_owner": job.lease_owner,
                                       "lease_until": job.lease_until.isoformat() if job.lease_until else None,
                                       "folder": str(jobs.folder(job.id))}
    finally:
        database.dispose()
    click.echo(json.dumps(out, ensure_ascii=False, indent=2))


# ---------------------------------------------------------------- seed and serve
def _migrated(url):
    from registry import migrate
    from registry.db import Database

    database = Database(url)
    migrate.upgrade(database)
    return database


_DEMO_PASSWORD = click.option(
    "--demo-password", envvar="TANPU_DEMO_PASSWORD", default=None, metavar="PASSWORD",
    help="also let the demo reviewers and the curator sign in with this password "
         "(env TANPU_DEMO_PASSWORD; never on a real deployment)")


@main.command()
@_DATABASE_URL
@_DEMO_PASSWORD
def seed(database_url, demo_password):
    """Migrate the database and publish the bundled methodologies (idempotent).

    Creates the system and curator accounts, a demo committee per domain with demo
    reviewers, and publishes every methodologies/*.tanpu not yet registered, through the
    review workflow (so the audit log records it)."""
    from .seed import seed as run_seed

    database = _migrated(database_url)
    try:
        report = run_seed(database, demo_password=demo_password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    finally:
        database.dispose()
    for line in report.lines():
        click.echo(line)


def _server_logging() -> None:
    """The log of `tanpu serve` and `tanpu worker`: INFO lines with time and logger name;
    alembic's own chatter (a line per plugin at every check of the schema) left out."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@_DATABASE_URL
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (0.0.0.0: every interface)")
@click.option("--port", type=int, envvar="PORT", default=5000, show_default=True,
              help="port to listen on (env PORT)")
@click.option("--threads", type=int, default=8, show_default=True,
              help="request threads in each server process")
@click.option("--workers", type=click.IntRange(1), envvar="TANPU_WORKERS", default=None,
              help="server processes sharing the port (env TANPU_WORKERS); default: one per "
                   "CPU, at most 8; one on SQLite (tanpu/server.py, docs/deploy.md)")
@click.option("--connection-limit", type=click.IntRange(1), envvar="TANPU_CONNECTION_LIMIT",
              default=1000, show_default=True,
              help="open connections accepted at once; more wait in the listen queue "
                   "(env TANPU_CONNECTION_LIMIT)")
@click.option("--channel-timeout", type=click.IntRange(1), envvar="TANPU_CHANNEL_TIMEOUT",
              default=60, show_default=True,
              help="seconds an idle connection is kept before it is closed "
                   "(env TANPU_CHANNEL_TIMEOUT)")
@click.option("--no-seed", is_flag=True, help="do not publish the bundled methodologies")
@click.option("--no-worker", is_flag=True,
              help="do not start a worker for jobs and webhooks (run `tanpu worker` elsewhere)")
@_DEMO_PASSWORD
def serve(database_url, host, port, threads, workers, connection_limit, channel_timeout,
          no_seed, no_worker, demo_password):
    """Run the web UI with waitress: migrates the database, seeds it, and creates (and
    prints, once) a first administrator when none can sign in. Serves from `--workers`
    processes sharing the port (one Python process runs one request's Python at a time),
    each with `--threads` threads. Starts a worker process (`tanpu worker`) for the API's
    jobs and webhooks, and starts it again if it dies."""
    import logging

    from .memory import keep_freed_memory

    keep_freed_memory()  # API batches reuse the memory earlier ones freed; before Polars loads
    from waitress import serve as waitress_serve

    from registry.settings import Settings, load
    from webui import create_app

    from .seed import ensure_first_admin, seed as run_seed

    _server_logging()
    settings = load()
    if database_url:
        settings = Settings(database_url=database_url, secret_key=settings.secret_key,
                            secret_key_is_ephemeral=settings.secret_key_is_ephemeral,
                            port=port)
    database = _migrated(settings.database_url)
    click.echo(f"database: {database!r} (migrated)")
    if not no_seed:
        try:
            for line in run_seed(database, demo_password=demo_password).lines():
                click.echo(line)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
    created = ensure_first_admin(database)
    if created:
        email, password = created
        click.echo("")
        click.echo("=" * 64)
        click.echo("  First administrator (shown once; change the password after signing in")
        click.echo("  or set one with `tanpu admin set-password`):")
        click.echo(f"    email:    {email}")
        click.echo(f"    password: {password}")
        click.echo("=" * 64)
        click.echo("")
    if settings.secret_key_is_ephemeral:
        click.echo("note: SECRET_KEY is not set: sessions end when the server restarts")
    from registry import audit
    with database.read() as session:  # a copy of the head outside the database, in the log
        logging.getLogger("tanpu.audit").info("audit chain head at start: %s",
                                              json.dumps(audit.head_entry(session)))
    from registry.jobs import MAX_BYTES

    from .server import Prefork, default_workers, listening_socket
    workers = workers or default_workers(settings.database_url)
    # Idle connections are closed after channel_timeout, checked every cleanup_interval:
    # with waitress' defaults (100 connections, 120 s, checked every 30 s) 110 idle
    # sockets locked every other client out for minutes (issue 17; docs/deploy.md).
    # A job's file may be larger than waitress's default limit of 1 GB.
    options = dict(threads=threads, ident="tanpu", connection_limit=connection_limit,
                   channel_timeout=channel_timeout,
                   cleanup_interval=max(1, min(30, channel_timeout // 4)),
                   max_request_body_size=MAX_BYTES, **IO_SETTINGS)
    # What the server holds once started (modules, the app, compiled methodologies) is
    # never walked by the garbage collector again: a request makes many short-lived
    # objects, and each collection of the oldest generation walked them all, 15-20 % of
    # a 1,000-record credit's time (bench/bench_ledger.py prints the collector's share).
    # Before a fork it also keeps the shared pages shared (the collector writes to them).
    import gc
    app = create_app(settings, database=database)  # before a fork: its pages shared by all
    gc.freeze()
    shown = f"[{host}]" if ":" in host else host
    sock = listening_socket(host, port) if workers > 1 else None
    # the jobs worker's process; watched from a thread only when nothing forks after it
    # (one process), else from Prefork's loop: no thread may run at a fork (tanpu/server.py)
    supervisor = None if no_worker else _WorkerSupervisor(settings.database_url)
    click.echo(f"Tanpu web UI on http://{shown}:{port}/ ({workers} process"
               f"{'es' if workers > 1 else ''} of {threads} threads; Ctrl+C to stop)", nl=True)
    sys.stdout.flush()
    try:
        if sock is None:
            if supervisor is not None:
                supervisor.watch_in_thread()
            waitress_serve(app, host=host, port=port, **options)
        else:
            database.dispose()  # no pooled connection crosses the fork

            def serve_one(listening):
                # SQLAlchemy's recipe for an engine inherited by a fork: a fresh pool, the
                # parent's connections (none, disposed above) left alone
                database.engine.dispose(close=False)
                waitress_serve(app, sockets=[listening], **options)

            Prefork(sock, workers, serve_one,
                    tick=supervisor.poll if supervisor is not None else None).run()
    finally:
        if supervisor is not None:
            supervisor.stop()


# waitress' buffers, for API batches: a 10,000-record /evaluate is a 1-3 MB body and a
# 2.8-4.7 MB answer. With waitress' defaults (8 KiB a read, 18,000 bytes a send, a body
# over 512 KiB and an answer over 1 MiB spooled through a temporary file) moving them took
# 7.0-8.4 ms of server CPU a request; with these 4.0-4.4 ms (wall 16-31 ms against 8.5-12
# ms, three alternating rounds of 50 on the shared machine; docs/deploy.md). An answer is
# already whole in memory when waitress gets it, so it is never spooled; a body is held in
# memory up to 2 MiB a connection (larger ones, jobs' files, still go to a temporary file).
IO_SETTINGS = {"recv_bytes": 256 * 1024, "send_bytes": 256 * 1024,
               "inbuf_overflow": 2 * 1024 * 1024, "outbuf_overflow": 64 * 1024 * 1024}


class _WorkerSupervisor:
    """`tanpu worker` as a child of `tanpu serve`, started again when it dies (a crash,
    a kill -9: its job is resumed from the database, registry/jobs.py). The worker
    stops by itself when this process is gone.

    Watched by poll(), without a thread of its own where this process forks server
    workers (tanpu/server.py's loop calls it: a fork with a thread running copies the
    locks it holds into the child), from a thread (watch_in_thread) where it does not."""

    def __init__(self, database_url: str):
        import subprocess
        import threading

        self._command = [sys.executable, "-m", "tanpu.cli", "worker", "--database-url",
                         database_url, "--parent", str(os.getpid())]
        self._popen = subprocess.Popen
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # poll() in a thread against stop()
        self._restart_at: float | None = None  # when an ended worker is started again
        self.process = self._start()

    def _start(self):
        process = self._popen(self._command)
        click.echo(f"worker: process {process.pid}")
        return process

    def poll(self) -> None:
        """Notices an ended worker and starts another a second later (one failing at
        start is not restarted in a busy loop). Never waits."""
        import time

        with self._lock:
            if self._stopping.is_set():
                return
            if self._restart_at is None:
                code = self.process.poll()
                if code is None:
                    return
                click.echo(f"worker: process {self.process.pid} ended ({code}); starting another")
                self._restart_at = time.monotonic() + 1.0
            if time.monotonic() >= self._restart_at:
                self._restart_at = None
                self.process = self._start()

    def watch_in_thread(self) -> None:
        import threading

        def watch():
            while not self._stopping.wait(0.2):
                self.poll()

        threading.Thread(target=watch, name="worker-supervisor", daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        self.process.terminate()
        try:
            self.process.wait(30)
        except Exception:  # noqa: BLE001 - it did not stop: it is killed
            self.process.kill()


@main.command()
@_DATABASE_URL
@click.option("--once", is_flag=True, help="do what is due, then stop")
@click.option("--parent", type=int, default=None, hidden=True,
              help="stop when this process (tanpu serve) is gone")
def worker(database_url, once, parent):
    """Run the integrators' jobs, send their webhooks and e-mail pending notifications
    (with TANPU_SMTP_HOST set) (`tanpu serve` starts one; more
    may run, on other machines sharing the database and TANPU_JOBS_DIR)."""
    import signal

    from webui.worker import Worker

    _server_logging()
    database = _database(database_url)
    from registry.settings import Settings
    settings = Settings.from_env()
    running = Worker(database, parent_pid=parent, smtp=settings.smtp, base_url=settings.base_url)
    signal.signal(signal.SIGTERM, lambda *_: running.stop())
    import gc
    gc.freeze()  # as tanpu serve: what the worker holds once started is not walked again
    try:
        if once:
            running.run_once()
        else:
            running.run()
    except KeyboardInterrupt:
        running.stop()
    finally:
        database.dispose()


from .spark import spark_eval  # noqa: E402  (the command; Spark is imported when it runs)

main.add_command(spark_eval)


if __name__ == "__main__":  # pragma: no cover
    main()
