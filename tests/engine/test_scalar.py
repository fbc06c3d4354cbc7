"""The scalar evaluator: ingestion, evaluation order, explanations, examples."""

from pathlib import Path

from dsl import compile_source
from engine import Engine
from engine.examples import run_examples

ROOT = Path(__file__).resolve().parents[2]


def shenzhen():
    path = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"
    return Engine(compile_source(path.read_text(), str(path)).methodology)


def ride(**overrides):
    record = {"id": "r1", "account": "a", "mode": "ebus", "distance": "8.2 km",
              "boarded": "2024-05-20T08:00", "alighted": "2024-05-20T08:30"}
    record.update(overrides)
    return record


def test_the_published_example_and_its_explanation():
    (result,) = shenzhen().evaluate([ride()], explain=True)
    assert (result.status, result.reduction_mg, result.points) == ("credited", 220_580, 220)
    steps = {(s["kind"], s.get("name")): s for s in result.explanation}
    factor = steps[("parameter", "reduction_factor")]
    assert factor["key"] == ["ebus"] and factor["from"] == "2021-12-16" and factor["tag"] == "SRC"
    assert "深圳商报" in factor["source"]
    assert steps[("output", "reduction")]["mg"] == 220_580
    assert steps[("output", "reduction")]["unit"] == "g"


def test_units_convert_at_the_edge():
    engine = shenzhen()
    metres, miles = engine.evaluate([ride(distance="8200 m"), ride(id="r2", account="b", distance="5.0953 mile")])
    assert metres.reduction_mg == 220_580
    assert miles.reduction_mg == round(26.9 * 5.0953 * 1.609344 * 1000)


def test_bad_records_are_reported_not_dropped():
    results = shenzhen().evaluate([ride(distance="8.2"), ride(id="r2", mode="tram"),
                                   ride(id="r3", boarded="yesterday"), ride(id="r4", distance=None),
                                   ride(id="r5")])
    assert [(r.row, r.status) for r in results] == [(1, "invalid"), (2, "invalid"), (3, "invalid"),
                                                    (4, "invalid"), (5, "credited")]
    messages = [r.message for r in results[:4]]
    assert messages[0].startswith("distance:") and "no unit" in messages[0]
    assert messages[1].startswith("mode:") and "tram" in messages[1]
    assert messages[2].startswith("boarded:")
    assert messages[3] == "distance: missing"


def test_evaluation_order_first_failure_wins():
    results = shenzhen().evaluate([ride(mode="diesel_bus", alighted="2024-05-20T07:00"),
                                   ride(id="r2", distance="250 km"),
                                   ride(id="r3", boarded="2021-01-01T08:00", alighted="2021-01-01T09:00")])
    assert [(r.status, r.code) for r in results] == [
        ("rejected", "NOT_COVERED"),  # the first require, although the second fails too
        ("rejected", "OUT_OF_RANGE"),  # bounds come before requires
        ("not_applicable", "OUT_OF_PERIOD"),  # before the methodology's start
    ]


def test_results_carry_the_methodology_and_its_hash():
    engine = shenzhen()
    (result,) = engine.evaluate([ride()])
    data = result.to_dict(engine.ref)
    assert data["methodology"] == "cn.shenzhen.public-transit"
    assert data["content_hash"].startswith("sha256:") and len(data["content_hash"]) == 71


def test_a_wrong_example_fails_with_what_was_expected(tmp_path):
    source = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text()
    broken = source.replace("=> reduction 220.58 g, points 220", "=> reduction 220.59 g, points 220")
    compiled = compile_source(broken, "x.tanpu")
    failures = [o for o in run_examples(Engine(compiled.methodology)) if not o.passed]
    assert len(failures) == 1
    assert failures[0].failures == ["expected reduction 220.59 g, got 220.58 g (-10 mg)"]


def test_an_example_may_leave_out_an_optional_input(engine_for):
    from tests.engine.conftest import compile_text
    methodology = compile_text('''
input distance: quantity [km]
input extra: quantity [km] optional
reduction = 1 g/km * (distance + extra)
points = floor(reduction / 1 g)
example "extra left out" { distance: 2 km } => reduction 2 g
''')
    (outcome,) = run_examples(Engine(methodology))
    assert outcome.passed, outcome.failures


def test_a_line_that_is_not_json_says_so(tmp_path):
    import subprocess
    import sys
    good = ('{"id":"r1","account":"a","mode":"ebus","distance":"8.2 km",'
            '"boarded":"2024-05-20T08:00","alighted":"2024-05-20T08:30"}')
    (tmp_path / "r.jsonl").write_text(good + "\n{bad json\n")
    for engine in ("scalar", "batch"):
        done = subprocess.run([sys.executable, "-m", "tanpu.cli", "eval", "--engine", engine,
                               str(ROOT / "methodologies" / "shenzhen-public-transit.tanpu"),
                               str(tmp_path / "r.jsonl")], capture_output=True, text=True, timeout=120)
        assert "row 2: record: not a JSON object" in done.stderr, (engine, done.stderr)
        assert done.stdout.splitlines()[1].split(",")[4] == "credited"


def test_a_failed_example_shows_every_digit_and_the_difference():
    """Issue 12: masses 0.1 g apart in 1.2 t printed as the same six figures."""
    from engine.examples import _mass  # noqa: PLC2701 - the module's own formatter

    assert (_mass(1_234_567_800), _mass(1_234_567_900)) == ("1234.5678 kg", "1234.5679 kg")
    assert (_mass(583_750), _mass(-5), _mass(0)) == ("583.75 g", "-0.005 g", "0 g")
