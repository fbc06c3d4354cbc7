"""The start-up caches (dsl/cache.py): the LALR tables and Pint's answers about units.

A cache only saves time: a missing, stale, truncated or corrupt entry, or a directory that
cannot be written, gives exactly the results of a run without any cache, and never fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from dsl import cache, compile_source, render_text, unit_table, units
from dsl.ir.printer import to_json
from dsl.surface import parse as parse_module

from .kit import KITCHEN_SINK, ROOT, SHENZHEN

# Syntax errors (expected-token lists, labelled examples, recovery) and a unit error.
BROKEN = SHENZHEN.replace("reduction_factor[mode] * distance", "reduction_factor[mode] * * distance") \
    .replace("[g/km]", "[g/kmm]") + "\nlet = 3\n"


def _outcome(source: str):
    compiled = compile_source(source, "t.tanpu")
    return ([render_text(d, compiled.source) for d in compiled.diagnostics],
            to_json(compiled.methodology) if compiled.methodology else None,
            compiled.content_hash if compiled.ok else None)


def _fresh(monkeypatch, directory):
    """Forget this process's parser and unit answers; use ``directory`` as the cache."""
    monkeypatch.setenv("TANPU_CACHE_DIR", str(directory))
    parse_module._parser.cache_clear()
    parse_module._terminal_display.cache_clear()
    units._remembered.cache_clear()
    units.parse_unit.cache_clear()
    units._display_product.cache_clear()


@pytest.fixture(autouse=True)
def _forget_afterwards():
    yield
    parse_module._parser.cache_clear()
    parse_module._terminal_display.cache_clear()
    units._remembered.cache_clear()
    units.parse_unit.cache_clear()
    units._display_product.cache_clear()


@pytest.fixture(scope="module")
def expected():
    """The outcomes with no cache at all."""
    saved = os.environ.get("TANPU_CACHE_DIR")
    os.environ["TANPU_CACHE_DIR"] = ""
    try:
        for clear in (parse_module._parser, parse_module._terminal_display, units._remembered,
                      units.parse_unit, units._display_product):
            clear.cache_clear()
        return [_outcome(s) for s in (KITCHEN_SINK, SHENZHEN, BROKEN)]
    finally:
        if saved is None:
            del os.environ["TANPU_CACHE_DIR"]
        else:
            os.environ["TANPU_CACHE_DIR"] = saved


def _outcomes():
    return [_outcome(s) for s in (KITCHEN_SINK, SHENZHEN, BROKEN)]


def _grammar_entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("grammar-*.lark"))


def test_the_parser_is_cached_and_the_cached_parser_parses_the_same(monkeypatch, tmp_path, expected):
    _fresh(monkeypatch, tmp_path)
    assert _outcomes() == expected
    [entry] = _grammar_entries(tmp_path)
    written = entry.read_bytes()
    _fresh(monkeypatch, tmp_path)
    assert _outcomes() == expected  # now from the cache
    assert entry.read_bytes() == written  # loaded, not rebuilt
    assert not list(tmp_path.glob("*.tmp"))


@pytest.fixture(scope="module")
def built_entry(tmp_path_factory) -> tuple[str, bytes]:
    """The parser's cache entry as a build writes it: (file name, bytes). Built once for
    the damage cases (each build of the LALR tables takes seconds); each case still
    rebuilds it from its damaged copy."""
    folder = tmp_path_factory.mktemp("built-parser")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fresh(monkeypatch, folder)
        parse_module._parser()
        [entry] = _grammar_entries(folder)
        built = entry.name, entry.read_bytes()
        _fresh(monkeypatch, folder)  # this process's parser is not left behind for a test
    return built


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "body", "stale"])
def test_a_damaged_parser_entry_is_rebuilt(monkeypatch, tmp_path, expected, built_entry, damage):
    name, good = built_entry
    _fresh(monkeypatch, tmp_path)
    entry = tmp_path / name
    header = good[:good.index(b"\n") + 1]
    entry.write_bytes({
        "garbage": b"\x80\x04not a pickle at all",
        "truncated": good[:len(good) // 2],
        "empty": b"",
        "body": header + b"\x80\x04\x95garbage",
        "stale": b"tanpu-lalr " + b"0" * 64 + b"\n" + good[len(header):],
    }[damage])
    _fresh(monkeypatch, tmp_path)
    assert _outcomes() == expected
    assert entry.read_bytes()[:len(header)] == header  # written again, whole
    _fresh(monkeypatch, tmp_path)
    assert _outcomes() == expected


def test_a_cache_that_cannot_be_written_is_not_used(monkeypatch, tmp_path, expected):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    _fresh(monkeypatch, not_a_directory / "cache")
    assert _outcomes() == expected
    _fresh(monkeypatch, "")  # TANPU_CACHE_DIR= turns the cache off
    assert _outcomes() == expected


def test_the_default_cache_directory(monkeypatch, tmp_path):
    from dsl import cache

    monkeypatch.delenv("TANPU_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "tanpu"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / ".cache" / "tanpu"


def test_processes_starting_at_once_share_an_empty_cache(tmp_path):
    env = dict(os.environ, TANPU_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "tanpu.cli", "check", "--format", "json",
               str(ROOT / "methodologies" / "shenzhen-public-transit.tanpu")]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(4)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4
    assert all(err == b"" for _, err in outputs)
    assert len({out for out, _ in outputs}) == 1
    assert len(_grammar_entries(tmp_path / "cache")) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))
    again = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert (again.returncode, again.stdout, again.stderr) == (0, outputs[0][0], b"")


# ---------------------------------------------------------------- units

def test_the_shipped_unit_table_is_what_pint_answers():
    """Regenerate with `python -m dsl.make_unit_table` when this fails (a Pint upgrade)."""
    key = units._memory_key(cache.installed_version("pint"))
    assert unit_table.KEY == key, "dsl/unit_table.py is for another Pint: regenerate it"
    shipped = units._Memory(key)
    shipped.load(unit_table.DATA.encode("utf-8"))
    assert len(shipped.units) > 50 and len(shipped.products) > 500
    for text, answer in shipped.units.items():
        try:
            pint_answer = units._pint_parse_unit(text)
        except units.UnitError as error:
            pint_answer = error.reason
        assert answer == pint_answer, text
    for key, answer in shipped.products.items():
        assert answer == units._pint_display_product(*key), key


UNIT_TEXTS = ["g", "kg", "km", "mile", "L", "gallon", "kWh", "h", "%", "kg·km", "m^2", "km^-1",
              "gCO2e/pkm", "kgCO2/L", "µg", "1/h", "g/km/h", "fortnight", "kWh/(m^2*day)",
              "°C", "degC", "dB", "m^0.5", "nonsense", "h*MW", "kgCO2*l/kg"]


def _unit_answers():
    answers = []
    for text in UNIT_TEXTS:
        try:
            unit = units.parse_unit(text)
        except units.UnitError as error:
            answers.append((text, error.reason))
            continue
        answers.append((text, unit.text, unit.dimension, unit.factor))
        for other in UNIT_TEXTS:
            try:
                second = units.parse_unit(other)
            except units.UnitError:
                continue
            answers.append((unit.times(second), unit.per(second)))
    return answers


@pytest.fixture(scope="module")
def pint_answers():
    """parse_unit and products answered by Pint alone: no table, no cache."""
    saved = (units._remembered, os.environ.get("TANPU_CACHE_DIR"))
    os.environ["TANPU_CACHE_DIR"] = ""
    units._remembered = lambda: units._Memory(None)
    units.parse_unit.cache_clear()
    units._display_product.cache_clear()
    try:
        return _unit_answers()
    finally:
        units._remembered = saved[0]
        if saved[1] is None:
            del os.environ["TANPU_CACHE_DIR"]
        else:
            os.environ["TANPU_CACHE_DIR"] = saved[1]
        units.parse_unit.cache_clear()
        units._display_product.cache_clear()


def _unit_entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("units-*.json"))


def test_unit_answers_are_pints_with_an_empty_and_a_warm_cache(monkeypatch, tmp_path, pint_answers):
    _fresh(monkeypatch, tmp_path)
    assert _unit_answers() == pint_answers
    [entry] = _unit_entries(tmp_path)
    content = json.loads(entry.read_text(encoding="utf-8"))
    assert content["units"]["fortnight"] == ["fortnight", [["[time]", 1]], 1209600, 1]
    assert content["units"]["degC"] == "offset unit"
    _fresh(monkeypatch, tmp_path)
    assert _unit_answers() == pint_answers
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", [
    b"", b"{not json", b'{"key": "other", "version": 1, "units": {}, "products": []}', b"\xff\xfe",
    "wrong types",
])
def test_a_damaged_unit_entry_is_ignored(monkeypatch, tmp_path, pint_answers, damage):
    _fresh(monkeypatch, tmp_path)
    units.parse_unit("fortnight")
    [entry] = _unit_entries(tmp_path)
    if damage == "wrong types":
        content = json.loads(entry.read_text(encoding="utf-8"))
        content["units"]["fortnight"] = ["fortnight", [["[time]", "1"]], 1.5, 0]
        damage = json.dumps(content).encode("utf-8")
    entry.write_bytes(damage)
    _fresh(monkeypatch, tmp_path)
    assert _unit_answers() == pint_answers
