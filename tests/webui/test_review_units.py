"""The pure helpers behind the editor and the review page, on their own (no Flask, no
database): the side-by-side diff and the changes in meaning, the impact preview, reading
pasted and uploaded records, checking a source and the try-it panel."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from webui import evaluation, records
from webui.review import diff, impact

ROOT = Path(__file__).resolve().parents[2]
SHENZHEN = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
SAMPLE = ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv"


def faster(text: str = SHENZHEN) -> str:
    return (text.replace("version 1.0.0 {", "version 1.1.0 {", 1)
            .replace("metro: 46.7", "metro: 50.1", 1)
            .replace("=> reduction 583.75 g, points 583", "=> reduction 626.25 g, points 626", 1)
            .replace("=> reduction 467 g", "=> reduction 501 g", 1))


# ---------------------------------------------------------------- diff
def test_rows_align_both_sides_and_mark_the_changed_characters():
    old = "a\nb = 1\nc\nd"
    new = "a\nb = 2\nc\nx\nd"
    rows = diff.full_rows(old, new)
    assert [(r.kind, r.old_no, r.new_no) for r in rows] == [
        ("equal", 1, 1), ("replace", 2, 2), ("equal", 3, 3), ("insert", None, 4),
        ("equal", 4, 5)]
    changed = rows[1]
    assert [(s.text, s.changed) for s in changed.old_segments] == [("b = ", False), ("1", True)]
    assert [(s.text, s.changed) for s in changed.new_segments] == [("b = ", False), ("2", True)]
    assert diff.stats(rows).to_dict() == {"added": 1, "removed": 0, "changed": 1}
    deleted = diff.full_rows("a\nb\nc", "a\nc")
    assert [(r.kind, r.old_no, r.new_no) for r in deleted] == [
        ("equal", 1, 1), ("delete", 2, None), ("equal", 3, 2)]


def test_lines_are_counted_as_the_parser_counts_them():
    # a form feed or U+2028 is not a line break for the parser, nor for the diff
    rows = diff.full_rows("a\fb\nc", "a\fb\nc\u2028d")
    assert [r.new_no for r in rows] == [1, 2]
    assert diff.full_rows("a\r\nb", "a\nb")[0].kind == "equal"


def test_a_first_version_is_all_insertions():
    rows = diff.full_rows(None, "a\nb")
    assert [(r.kind, r.new_no) for r in rows] == [("insert", 1), ("insert", 2)]


def test_unchanged_runs_fold_away_from_changes_but_commented_lines_stay():
    old = "\n".join(f"line {i}" for i in range(1, 41))
    new = old.replace("line 20", "line twenty")
    rows = diff.side_by_side(old, new, context=2)
    kinds = [r.kind for r in rows]
    assert kinds == ["skip", "equal", "equal", "replace", "equal", "equal", "skip"]
    assert rows[0].skipped == 17 and rows[-1].skipped == 18
    kept = diff.side_by_side(old, new, context=2, keep_lines=frozenset({35}))
    assert 35 in [r.new_no for r in kept if r.kind == "equal"]
    assert diff.side_by_side(old, new) == diff.full_rows(old, new)  # no folding by default


def test_changes_in_meaning_name_the_factor_and_ignore_comments():
    old = evaluation.compiled(SHENZHEN).methodology
    new = evaluation.compiled(faster()).methodology
    changes = [c.to_dict() for c in diff.semantic_changes(old, new)]
    assert changes == [{"what": "parameter", "name": "reduction_factor[metro] from 2021-12-16",
                        "old": "46.7 g/km", "new": "50.1 g/km", "kind": "changed"}]
    commented = evaluation.compiled("# a note\n" + SHENZHEN).methodology
    assert diff.semantic_changes(old, commented) == []
    narrower = evaluation.compiled(SHENZHEN.replace("between 0 km and 200 km",
                                                    "between 0 km and 100 km")).methodology
    [change] = diff.semantic_changes(old, narrower)
    assert change.what == "input" and change.name == "distance" and "100 km" in change.new
    assert diff.semantic_changes(None, new) == []


# ---------------------------------------------------------------- impact
def test_impact_of_a_changed_factor_on_the_sample():
    sample = impact.sample_records(evaluation.compiled(SHENZHEN).methodology)
    assert sample.name == "methodologies/samples/shenzhen-public-transit.csv" and len(sample) == 338
    result = impact.impact(SHENZHEN, faster(), sample)
    assert result.error == "" and result.records == 338
    old, new = result.old.totals, result.new.totals
    assert old.by_status == new.by_status == {"credited": 292, "rejected": 40, "duplicate": 3,
                                              "invalid": 3}
    assert result.delta_reduction_mg == new.reduction_mg - old.reduction_mg > 0
    assert result.changed_count == len(result.changed)  # fewer than the limit here
    assert sum(c.delta_reduction_mg for c in result.changed) == result.delta_reduction_mg
    assert sum(c.delta_points for c in result.changed) == result.delta_points
    # only metro rides change, each by 50.1/46.7
    for c in result.changed:
        assert c.old["reduction_mg"] * 501 == c.new["reduction_mg"] * 467 or \
            abs(c.old["reduction_mg"] * 501 - c.new["reduction_mg"] * 467) < 467 * 501
    body = json.loads(json.dumps(result.to_dict()))
    assert body["delta_reduction_kg"] == pytest.approx(result.delta_reduction_mg / 1e6)
    assert 5.9 < body["delta_percent"] < 5.92
    limited = impact.impact(SHENZHEN, faster(), sample, limit=3)
    assert len(limited.changed) == 3 and limited.changed_count == result.changed_count


def test_impact_of_a_status_change_and_of_no_change():
    sample = records.from_text("id,account,mode,distance[km],boarded,alighted\n"
                               "a,x,ebus,1,2024-05-20T08:00,2024-05-20T08:30\n"
                               "b,x,metro,1,2024-05-20T09:00,2024-05-20T09:30\n")
    only_metro = SHENZHEN.replace("require mode in { ebus, metro }", "require mode in { metro }")
    result = impact.impact(SHENZHEN, only_metro, sample)
    [changed] = result.changed
    assert (changed.id, changed.old["status"], changed.new["status"]) == ("a", "credited", "rejected")
    assert changed.delta_reduction_mg == -26_900 == result.delta_reduction_mg
    same = impact.impact(SHENZHEN, "# only a comment\n" + SHENZHEN, sample)
    assert same.changed == [] and same.delta_reduction_mg == 0
    first = impact.impact(None, SHENZHEN, sample)
    assert first.old.totals is None and first.delta_reduction_mg is None
    broken = impact.impact(SHENZHEN, SHENZHEN + "\nnot a statement\n", sample)
    assert broken.error.startswith("the new version cannot be evaluated")


def test_a_copy_of_a_bundled_methodology_under_another_id_finds_its_sample():
    copy = SHENZHEN.replace("methodology cn.shenzhen.public-transit ", "methodology test.copy ", 1)
    assert impact.sample_for(evaluation.compiled(copy).methodology).name == \
        "shenzhen-public-transit.csv"
    wuhan = (ROOT / "methodologies" / "wuhan-metro-bike.tanpu").read_text(encoding="utf-8")
    assert impact.sample_for(evaluation.compiled(wuhan).methodology).name == "wuhan-metro-bike.csv"


# ---------------------------------------------------------------- records
def test_pasted_records_in_three_formats():
    csv = records.from_text("id,account,distance[km]\nr1,a,8.2\n")
    assert csv.rows == [{"id": "r1", "account": "a", "distance": "8.2"}]
    assert csv.column_units == {"distance": "km"}
    jsonl = records.from_text('{"id": "r1"}\n\n{"id": "r2"}\n[1]\n')
    assert [r.get("id") for r in jsonl.rows] == ["r1", "r2", None]
    assert jsonl.rows[2] == {"__invalid__": "not a JSON object"}
    array = records.from_text('  [{"id": "r1"}, 5]')
    assert array.rows == [{"id": "r1"}, {"__invalid__": "not a JSON object"}]
    assert records.from_text('{"records": [{"id": "r1"}]}').rows == [{"id": "r1"}]
    for bad in ("", "   ", "[1, 2", '"text"'):
        with pytest.raises(records.RecordsError):
            records.from_text(bad)


def test_uploaded_files_by_extension_or_content():
    data = SAMPLE.read_bytes()
    assert len(records.from_bytes(data, "rides.csv")) == 338
    assert len(records.from_bytes(data, "no-extension")) == 338
    assert records.from_bytes(b'[{"id": "x"}]', "r.json").rows == [{"id": "x"}]
    import pyarrow as pa
    import pyarrow.parquet as pq
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["p1"], "distance[km]": [3.5]}), buffer)
    parquet = records.from_bytes(buffer.getvalue(), "r.parquet")
    assert parquet.rows == [{"id": "p1", "distance": 3.5}] and parquet.column_units == {"distance": "km"}
    with pytest.raises(records.RecordsError):
        records.from_bytes(b"\xff\xfe\x00garbage", "r.parquet")
    with pytest.raises(records.RecordsError):
        records.from_bytes(b"\xff\xfe\x00", "r.csv")


# ---------------------------------------------------------------- checking and trying
def test_check_gives_what_tanpu_check_json_gives():
    out = evaluation.check(SHENZHEN)
    assert out["ok"] and out["errors"] == 0 and out["examples_passed"]
    assert out["content_hash"] == evaluation.engine_for(SHENZHEN).ref.content_hash
    broken = evaluation.check(SHENZHEN.replace("points = floor(reduction / 1 g)",
                                               "points = floor(reduction / 1 km)"))
    assert not broken["ok"] and {"code", "severity", "message", "line", "column", "end_line",
                                 "end_column"} <= set(broken["diagnostics"][0])


def test_caret_blocks_line_up_under_wide_characters_and_long_lines():
    source = 'let x = "碳普惠" + 1\n'
    block = evaluation.caret_block(source, {"line": 1, "column": 15, "end_line": 1,
                                            "end_column": 16, "label": "here"})
    line, carets = block.split("\n")
    assert line == '1 | let x = "碳普惠" + 1'
    assert carets == "  | " + " " * 17 + "^ here"  # three wide characters take six cells
    long = "x" * 80 + " + y"
    block = evaluation.caret_block(long, {"line": 1, "column": 82, "end_line": 1, "end_column": 83})
    line, carets = block.split("\n")
    assert line.startswith("1 | …") and carets.index("^") == line.index("+")
    assert evaluation.caret_block("a", {"line": 5, "column": 1}) == ""


def test_try_it_results_totals_and_explanations():
    rows = records.from_text("id,account,mode,distance[km],boarded,alighted\n"
                             "r1,a,ebus,8.2,2024-05-20T08:00,2024-05-20T08:30\n")
    out = evaluation.try_it(SHENZHEN, rows)
    assert out["ok"] and out["totals"]["reduction_mg"] == 220_580
    assert "  output     reduction = 220.58 g   line 43" in out["results"][0]["explanation_text"]
    limited = evaluation.try_it(SHENZHEN, records.from_path(SAMPLE), explain=False, limit=10)
    assert len(limited["results"]) == 10 and limited["truncated"]
    assert limited["totals"]["records"] == 338
    assert evaluation.try_it("nonsense", rows)["ok"] is False


# ---------------------------------------------------------------- which records (issue 15, item 1)
HELLO = (ROOT / "methodologies" / "hello-shared-bike.tanpu").read_text(encoding="utf-8")


def _ebike(ebike_factor: str) -> str:
    """A new e-bike methodology whose columns are those of the Hello sample, but which
    applies to nothing in it (in force from 2025; the sample is of 2024)."""
    text = HELLO.replace("methodology cn.hello.shared-bike ", "methodology test.new-ebike ", 1)
    text = text.replace("effective from 2022-07-21", "effective from 2025-01-01", 1)
    return text.replace("    ebike: 35.01\n", f"    ebike: {ebike_factor}\n", 1)


def test_a_sample_the_methodology_does_not_apply_to_is_not_its_preview():
    old, new = _ebike("35.01"), _ebike("38.02")  # +8.6 %
    assert "ebike: 38.02" in new
    methodology = evaluation.compiled(new).methodology
    records, kind = impact.preview_records(methodology, new, None)
    assert kind == "generated" and records.name == "generated from the input schema"
    assert {r["vehicle"] for r in records.rows} == {"bike", "ebike"}  # every choice
    distances = [r["distance"] for r in records.rows]
    assert 0 < min(distances) < 5 and 45 < max(distances) <= 50  # across the bounds, in km
    result = impact.impact(old, new, records, kind=kind)
    assert result.applied == result.records == len(records)
    assert result.changed_count > 0 and result.delta_reduction_mg > 0
    assert result.delta_percent > 0  # the e-bike rows moved
    # the Hello sample itself: 2024 records, none in force for this methodology
    sample = impact.sample_records(methodology)
    on_sample = impact.impact(old, new, sample, kind="sample")
    assert on_sample.applied < len(sample) * impact.APPLIES_AT_LEAST
    # the bundled methodology keeps its own sample, and a copy of it under another id too
    assert impact.preview_records(evaluation.compiled(HELLO).methodology, HELLO, None)[1] == "sample"
    copy = SHENZHEN.replace("methodology cn.shenzhen.public-transit ", "methodology test.copy ", 1)
    records, kind = impact.preview_records(evaluation.compiled(copy).methodology, copy, None)
    assert (kind, records.name) == ("sample", "methodologies/samples/shenzhen-public-transit.csv")


def test_credited_records_come_first_and_are_anonymised():
    rows = [{"id": "secret-1", "account": "13800000000", "vehicle": "ebike", "distance": "3 km",
             "time": "2025-02-01T08:00"}]
    methodology = evaluation.compiled(_ebike("35.01")).methodology
    records, kind = impact.preview_records(methodology, _ebike("35.01"), rows)
    assert kind == "ledger" and records.rows == rows
