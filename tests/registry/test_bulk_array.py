"""bulk.array (PostgreSQL): an array parameter sent as one literal text, which the server's
cast parses, gives the server the same values as psycopg's binary array of the list, for
every text and integer; what a literal could get wrong (a control character, a type other
than str, int or None, an integer beyond 64 bits, a lone surrogate) goes as the list."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from registry import bulk

TRICKY = ["a", "", "NULL", "null", "Null", " sp ", "q\"uo\"te", "back\\slash", "{br,ace}",
          "tab\there", "new\nline", "cr\r", "\x01\x1f", "del\x7f", "\\n", "\\\\n", "\\u0041",
          "\\\"", "\"", "\\", ",", "'", "x" * 300, "{\"a\": \"b\\\"c\"}", "中文", "😀",
          "\u2028\u2029", "é\u0301", "[1,2]", "}", "{", " ", "  NULL  "]


def _round_trip(s, value, pg_type: str):
    return s.connection().exec_driver_sql(f"SELECT %(x)b::{pg_type}[]", {"x": value}).scalar()


@pytest.fixture
def pg(reg, backend):
    if backend != "postgresql":
        pytest.skip("array literals are PostgreSQL's")
    with reg.uow() as s:
        yield s


def test_texts_come_back_as_sent(pg):
    rng = random.Random(7)
    alphabet = "ab\"\\{},' \t\nNUL\u00e9\u4e2d\U0001f600"
    lists = [TRICKY, TRICKY + [None], [None], [None, "x", None], ["NULL", None]]
    lists += [["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
               for _ in range(rng.randrange(1, 40))] for _ in range(300)]
    for values in lists:
        for pg_type in ("varchar", "text"):
            assert _round_trip(pg, bulk.array(values), pg_type) == values, values
            # and the same as the list itself sent by psycopg
            assert _round_trip(pg, bulk.array(values), pg_type) == _round_trip(pg, values, pg_type)


def test_texts_without_control_characters_go_as_one_literal(pg):
    plain = [t for t in TRICKY if not any(ord(c) < 0x20 for c in t)
             and not any(f"\\{c}" in t for c in "ntrbfu")]
    assert len(plain) > 25 and isinstance(bulk.array(plain), str)
    assert isinstance(bulk.array(plain + [None]), str)
    for control in ("\n", "\t", "\x00", "\x1f"):  # JSON would escape it: the list goes
        assert bulk.array(["a", f"b{control}c"]) == ["a", f"b{control}c"]
    # a backslash before one of JSON's escape letters looks like one: the list goes too
    assert bulk.array(["a\\nb"]) == ["a\\nb"]


def test_integers_come_back_as_sent(pg):
    rng = random.Random(8)
    lists = [[0], [-1, 1], [2 ** 63 - 1, -2 ** 63], [None, 5, None], [2 ** 31 - 1, -2 ** 31]]
    lists += [[rng.randrange(-2 ** 63, 2 ** 63) for _ in range(rng.randrange(1, 50))] for _ in range(50)]
    for values in lists:
        literal = bulk.array(values)
        assert isinstance(literal, str)
        assert _round_trip(pg, literal, "int8") == values
    assert _round_trip(pg, bulk.array([7, -8, None]), "int4") == [7, -8, None]


def test_what_a_literal_could_get_wrong_goes_as_the_list(pg):
    for values in ([True, 1], [1.5, 2], [2 ** 64], ["\ud800"], [b"x"], [1, "a", 2.0]):
        assert bulk.array(values) is values
    assert bulk.array([]) == "{}"
    assert _round_trip(pg, bulk.array([]), "varchar") == []


def test_the_unnest_of_literals_zips_the_columns(pg):
    ids, numbers = ["b\"1", "a,2", "c}3"], [3, None, 1]
    rows = pg.connection().exec_driver_sql(
        "SELECT * FROM unnest(%(a)b::varchar[], %(n)b::int8[]) AS u(a, n)",
        {"a": bulk.array(ids), "n": bulk.array(numbers)}).all()
    assert [tuple(r) for r in rows] == list(zip(ids, numbers))


def test_times_in_utc_come_back_as_sent(pg):
    import datetime as dt
    utc = dt.timezone.utc
    times = [dt.datetime(2024, 5, 20, 1, 2, 3, tzinfo=utc), dt.datetime(2024, 5, 20, 1, 2, 3, 5, tzinfo=utc),
             None, dt.datetime(1, 1, 1, tzinfo=utc), dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=utc),
             dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc)]
    literal = bulk.array(times)
    assert isinstance(literal, str)
    pg.connection().exec_driver_sql("SET LOCAL TIME ZONE 'Asia/Shanghai'")
    assert _round_trip(pg, literal, "timestamptz") == times
    assert _round_trip(pg, literal, "timestamptz") == _round_trip(pg, times, "timestamptz")
    # another offset, or none, goes as the list (orjson rounds an offset of seconds)
    for other in (dt.timezone(dt.timedelta(hours=8)), dt.timezone(dt.timedelta(seconds=30)), None):
        values = [dt.datetime(2024, 5, 20, tzinfo=utc), dt.datetime(2024, 5, 20, tzinfo=other)]
        assert bulk.array(values) is values
    assert bulk.array([times[0], "a"]) == [times[0], "a"]


def test_json_texts_go_as_one_literal_with_their_escapes(pg):
    import json
    texts = [json.dumps({"note": t, "n": i}, ensure_ascii=False) for i, t in enumerate(TRICKY)]
    texts += [json.dumps(TRICKY), json.dumps(TRICKY, ensure_ascii=True), None]
    assert any("\\n" in t for t in texts if t)  # escapes of control characters among them
    literal = bulk.array(texts, json=True)
    assert isinstance(literal, str)
    assert bulk.array(texts) is texts  # without saying so, the escapes send the list
    for pg_type in ("text", "varchar"):
        assert _round_trip(pg, literal, pg_type) == texts
