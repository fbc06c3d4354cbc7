"""`tanpu check` across methodologies: one activity must not be credited twice."""

from pathlib import Path

from dsl import compile_source
from dsl.check.library import check_library

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text()


def compiled(name, text):
    result = compile_source(text, name)
    assert result.ok, result.render()
    return result


def test_two_methodologies_covering_one_activity_are_flagged():
    other = SOURCE.replace("cn.shenzhen.public-transit", "cn.other.transit")
    (warning,) = check_library([compiled("a.tanpu", SOURCE), compiled("b.tanpu", other)])
    assert warning.code == "W0401" and warning.file == "b.tanpu"
    assert "transit_trip" in warning.message and "2021-12-16" in warning.message
    assert warning.notes[0].file == "a.tanpu"


def test_precedence_or_disjoint_dates_or_another_activity_resolve_it():
    precedes = SOURCE.replace("cn.shenzhen.public-transit", "cn.other.transit").replace(
        "  timezone Asia/Shanghai", "  timezone Asia/Shanghai\n  precedes cn.shenzhen.public-transit")
    later = SOURCE.replace("cn.shenzhen.public-transit", "cn.later.transit").replace(
        "effective from 2021-12-16", "effective from 2019-01-01 until 2021-12-15").replace(
        'from 2021-12-16 source', 'from 2019-01-01 source')
    elsewhere = SOURCE.replace("cn.shenzhen.public-transit", "cn.bike").replace(
        "covers transit_trip", "covers bike_trip")
    base = compiled("a.tanpu", SOURCE)
    for text in (precedes, later, elsewhere):
        assert check_library([base, compiled("b.tanpu", text)]) == []


def test_versions_of_one_methodology_do_not_conflict():
    newer = SOURCE.replace("version 1.0.0", "version 1.1.0")
    assert check_library([compiled("a.tanpu", SOURCE), compiled("b.tanpu", newer)]) == []
