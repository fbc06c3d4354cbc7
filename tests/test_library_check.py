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


def _in(text: str, name: str, regions: str) -> str:
    return text.replace("cn.shenzhen.public-transit", name).replace(
        "covers transit_trip", f"covers transit_trip in {regions}")


def test_the_same_activity_in_regions_that_do_not_meet_is_not_flagged():
    """Issue 12: a Hubei scheme and a Beijing one for the same activity do not overlap."""
    hubei = compiled("a.tanpu", _in(SOURCE, "cn.hubei.transit", "CN-HB"))
    beijing = compiled("b.tanpu", _in(SOURCE, "cn.beijing.transit", "CN-BJ"))
    assert hubei.methodology.metadata.regions == ("CN-HB",)
    assert check_library([hubei, beijing]) == []
    wuhan = compiled("c.tanpu", _in(SOURCE, "cn.wuhan.transit", "CN-HB.Wuhan"))
    assert check_library([beijing, wuhan]) == []


def test_regions_that_meet_or_no_region_are_flagged():
    hubei = compiled("a.tanpu", _in(SOURCE, "cn.hubei.transit", "CN-HB"))
    for text in (_in(SOURCE, "cn.wuhan.transit", "CN-HB.Wuhan"),   # a place of Hubei
                 _in(SOURCE, "cn.national.transit", "CN"),         # the whole country
                 _in(SOURCE, "cn.two.transit", "CN-BJ, CN-HB"),    # one of two regions
                 SOURCE.replace("cn.shenzhen.public-transit", "cn.anywhere.transit")):  # everywhere
        (warning,) = check_library([hubei, compiled("b.tanpu", text)])
        assert warning.code == "W0401" and "transit_trip" in warning.message


def test_a_region_that_is_not_an_iso_code_is_an_error():
    result = compile_source(_in(SOURCE, "cn.x.transit", "Hubei"), "x.tanpu")
    assert [d.code for d in result.diagnostics] == ["E0504"]
    assert "region" in result.diagnostics[0].message


def test_a_region_keeps_the_content_hash_of_a_methodology_without_one():
    """The fields issue 12 added are left out of the hashed data while empty, so the
    methodologies registered before them keep their content hashes."""
    from dsl.ir.printer import content_hash, to_data
    plain = compiled("a.tanpu", SOURCE).methodology
    data = to_data(plain, positions=False)
    assert not {"counters", "counter_caps", "rewards"} & set(data)
    assert "regions" not in data["metadata"]
    placed = compiled("c.tanpu", _in(SOURCE, "cn.shenzhen.public-transit", "CN-GD.Shenzhen")).methodology
    assert content_hash(placed) != content_hash(plain)
