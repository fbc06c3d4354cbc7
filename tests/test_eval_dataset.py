"""`tanpu eval` of a dataset (a folder, a glob, hive partitions) into a folder of results,
and `--resume` after the run was killed with SIGKILL, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parents[1]
SHENZHEN = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"
CHONGQING = ROOT / "methodologies" / "chongqing-shared-ebike.tanpu"
SAMPLE = ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv"


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def tanpu(*args):
    """The command in this process (click's runner): what a subprocess would print and exit
    with, without a Python start each time; the kill below needs a real process."""
    from click.testing import CliRunner

    from tanpu.cli import main

    done = CliRunner().invoke(main, [str(a) for a in args])
    if done.exception and not isinstance(done.exception, SystemExit):
        raise done.exception
    return Done(done.exit_code, done.stdout, done.stderr)


def sample() -> pl.DataFrame:
    return pl.read_csv(SAMPLE, infer_schema=False)


def written(folder: Path) -> dict[str, pl.DataFrame]:
    return {p.relative_to(folder).as_posix(): pl.read_parquet(p)
            for p in sorted(folder.rglob("*.parquet"))}


def test_a_hive_dataset_gives_each_file_the_results_it_gives_alone(tmp_path):
    records = sample()
    data = tmp_path / "rides"
    alone = tmp_path / "alone"
    alone.mkdir()
    # partitioned by mode: the files have no `mode` column, the folder names give it
    for mode, group in records.group_by("mode", maintain_order=True):
        for part, piece in enumerate((group.slice(0, 40), group.slice(40))):
            folder = data / f"mode={mode[0]}"
            folder.mkdir(parents=True, exist_ok=True)
            piece.drop("mode").write_parquet(folder / f"part-{part}.parquet")
            piece.write_csv(alone / f"{mode[0]}-part-{part}.csv")  # the same rows, mode as a column
    (data / "_SUCCESS").write_text("")  # a marker, not records
    done = tanpu("eval", SHENZHEN, data, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    results = written(tmp_path / "out")
    assert sorted(results) == sorted(p.relative_to(data).as_posix()
                                     for p in data.rglob("*.parquet"))
    assert json.loads((tmp_path / "out" / "_tanpu_eval.json").read_text())["format"] == "parquet"
    for name, frame in results.items():
        mode, part = name.split("/")
        one = tmp_path / f"{name.replace('/', '-')}.parquet"
        single = tanpu("eval", SHENZHEN, alone / f"{mode[5:]}-{part[:-8]}.csv", "-o", one)
        assert single.returncode == 0, single.stderr
        assert_frame_equal(frame, pl.read_parquet(one))
    statuses = pl.concat(results.values()).get_column("status").value_counts()
    assert set(statuses.get_column("status")) >= {"credited", "rejected"}  # diesel buses
    total = sum(f.height for f in results.values())
    assert total == records.height
    assert f"{total} record(s)" in done.stderr


def test_a_glob_picks_its_files_and_bad_rows_are_named_by_file_and_row(tmp_path):
    records = sample()
    data = tmp_path / "in"
    data.mkdir()
    records.slice(0, 10).write_csv(data / "a.csv")
    bad = records.slice(10, 10).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("far")).otherwise(pl.col("distance[km]"))
        .alias("distance[km]"))
    bad.write_csv(data / "b.csv")
    records.slice(20, 5).write_csv(data / "c.txt")  # not a record file
    records.slice(20, 5).write_parquet(data / "d.parquet")  # not matched by the glob
    done = tanpu("eval", SHENZHEN, f"{data}/*.csv", "-o", tmp_path / "out", "--output-format", "csv")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".csv") == ["a.csv", "b.csv"]
    assert "b.csv row 4: distance:" in done.stderr
    b = pl.read_csv(tmp_path / "out" / "b.csv", infer_schema=False)
    assert b.filter(pl.col("row") == "4").get_column("status").to_list() == ["invalid"]
    assert b.height == 10


def test_an_output_folder_with_results_is_not_overwritten_without_resume(tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    sample().slice(0, 10).write_csv(data / "a.csv")
    assert tanpu("eval", SHENZHEN, data, "-o", tmp_path / "out").returncode == 0
    again = tanpu("eval", SHENZHEN, data, "-o", tmp_path / "out")
    assert again.returncode == 2 and "--resume" in again.stderr
    other = tanpu("eval", CHONGQING, data, "-o", tmp_path / "out", "--resume")
    assert other.returncode == 2 and "another run" in other.stderr
    assert tanpu("eval", SHENZHEN, data, "-o", tmp_path / "one.parquet").returncode == 2
    assert tanpu("eval", SHENZHEN, data).returncode == 2  # no -o
    # two files that would give one result file; results inside the records' folder
    sample().slice(0, 5).write_parquet(data / "a.parquet")
    clash = tanpu("eval", SHENZHEN, data, "-o", tmp_path / "clash")
    assert clash.returncode == 2 and "would both be written" in clash.stderr
    (data / "a.parquet").unlink()
    inside = tanpu("eval", SHENZHEN, data, "-o", data / "results")
    assert inside.returncode == 0, inside.stderr
    again = tanpu("eval", SHENZHEN, data, "-o", data / "results", "--resume")
    assert again.returncode == 0 and "1 of 1 file(s) already written" in again.stderr


def _dataset(folder: Path, files: int, rows: int) -> None:
    """Chongqing e-bike rides (a daily cap and an overlap rule), `files` days."""
    folder.mkdir()
    for day in range(files):
        n = pl.int_range(0, rows, eager=True)
        start = pl.datetime(2024, 6, 1 + day) + pl.duration(seconds=n * 37 % 86_000)
        frame = pl.DataFrame({"n": n}).select(
            id=pl.format("d{}-{}", pl.lit(day), pl.col("n")),
            account=pl.format("acct-{}", pl.col("n") % 997),
            started=start.dt.strftime("%Y-%m-%dT%H:%M:%S"),
            ended=(start + pl.duration(minutes=12)).dt.strftime("%Y-%m-%dT%H:%M:%S"),
            distance=(pl.col("n") % 50 / 10 + 0.5).cast(pl.String) + " km")
        target = folder / f"day=2024-06-{day + 1:02d}"
        target.mkdir()
        frame.write_parquet(target / "rides.parquet")


def test_resume_after_a_kill_writes_what_an_uninterrupted_run_writes(tmp_path):
    head = CHONGQING.read_text(encoding="utf-8")
    assert "cap reduction" in head and "forbid overlap" in head
    data = tmp_path / "rides"
    _dataset(data, files=6, rows=40_000)
    full = tmp_path / "full"
    done = tanpu("eval", CHONGQING, data, "-o", full)
    assert done.returncode == 0, done.stderr
    assert "judge the records of one file together" in done.stderr
    expected = written(full)
    assert len(expected) == 6
    out = tmp_path / "out"
    for attempt in range(3):  # the kill must land after some file was written, before all
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        run = subprocess.Popen([sys.executable, "-m", "tanpu.cli", "eval", str(CHONGQING), str(data),
                                "-o", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            if len(list(out.rglob("*.parquet"))) >= 2:
                break
            time.sleep(0.002)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        if run.returncode == -signal.SIGKILL and len(list(out.rglob("*.parquet"))) < 6:
            break
    else:
        pytest.fail("the run was never killed halfway")
    before = {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
              for p in out.rglob("*.parquet")}
    assert 2 <= len(before) < 6
    resumed = tanpu("eval", CHONGQING, data, "-o", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} of 6 file(s) already written" in resumed.stderr
    after = written(out)
    assert sorted(after) == sorted(expected)
    for name, frame in expected.items():
        assert_frame_equal(after[name], frame)
    for name, (inode, modified) in before.items():  # the finished files were not redone
        path = out / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, modified)
    leftovers = [p for p in out.rglob("*") if ".partial-" in p.name]
    assert leftovers == []
    # every record once: ids are unique across the dataset
    ids = pl.concat(after.values()).get_column("id")
    assert ids.n_unique() == ids.len() == 6 * 40_000


def test_a_datasets_file_with_a_late_duplicate_is_rewound_alone(tmp_path):
    """A per-record methodology's Parquet files are read once each; a file whose last
    record repeats its first id is taken back and written again (its results the scalar
    engine's), the files before it kept, and the summary counts each record once."""
    text = SHENZHEN.read_text(encoding="utf-8")
    per_record = tmp_path / "m.tanpu"
    per_record.write_text(text[:text.index("forbid overlap")], encoding="utf-8")
    records = sample()
    data = tmp_path / "rides"
    for day, piece in enumerate((records.slice(0, 50), records.slice(50))):
        (data / f"day={day}").mkdir(parents=True)
        if day == 1:
            piece = pl.concat([piece, piece.head(1)])
        piece.write_parquet(data / f"day={day}" / "rides.parquet")
    outputs = {}
    for engine in ("batch", "scalar"):
        done = tanpu("eval", per_record, data, "-o", tmp_path / engine, "--engine", engine)
        assert done.returncode == 0, done.stderr
        outputs[engine] = (written(tmp_path / engine), done.stderr)
    (batch, said), (scalar, told) = outputs["batch"], outputs["scalar"]
    assert sorted(batch) == sorted(scalar)
    for name in batch:
        assert_frame_equal(batch[name], scalar[name])
    assert batch["day=1/rides.parquet"].get_column("status")[-1] == "duplicate"  # the one added
    assert said == told and f"{records.height + 1} record(s)" in said
    assert not list((tmp_path / "batch").rglob(".*partial*"))
