"""The C kernel of the batch formulas (engine/to_c.py, engine/batch/kernel.py, engine/native/build.py).

test_batch_differential.py runs every methodology through the kernel as well; these
tests aim at what a C translation gets wrong: the bits of the numeric contract on
awkward numbers, text, keys that cannot be found, and how kernels are built and kept.
Without a kernel the batch engine runs the scalar path's function row by row.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine import Engine
from engine.batch import BatchEngine
from engine.to_c import generate
from engine.batch.values import Cat
from engine.native import build as kernels

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler")

HEADER = '''methodology test.{name} "{name}" version 1.0.0 {{
  covers thing
  effective from 2024-01-01
  timezone Asia/Shanghai
}}
'''

# every rounding mode and precision path, min/max with ties and signed zeros, abs, a
# division that can be by zero (not finite: rejected), whole mg on halves, int64 math
NUMBERS = HEADER.format(name="numbers") + '''
input x: quantity [kg]
input y: quantity [kg]
input z: integer between -1000000 and 1000000
let q = x / y
baseline = round(q * 1 kg, 0.001 kg) + floor(x, 0.01 kg) + ceil(y, 1 kg)
project = min(x, y) - max(x, abs(y)) + (if x > y then x else y)
reduction = baseline - project + round(x / 1 kg) * 1 kg - ceil(y / 1 kg) * 1 g
points = round(reduction / 1 g) + z * z - z + floor(q)
'''

AWKWARD = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.0000005, -0.0000005, 0.0000015, 1e-300,
           5e-324, 1e300, -1e300, 4503599627370496.5, 9.007199254740993e15, 0.1, 0.3, 2.675,
           1.0000000000001, 0.9999999999999999]


def _compile(text: str):
    compiled = compile_source(text, "test.tanpu")
    assert compiled.ok, compiled.render()
    return compiled.methodology


def _keys(results) -> list:
    return [r.key() + (r.message,) for r in results]


_number = st.one_of(st.sampled_from(AWKWARD), st.floats(allow_nan=False, allow_infinity=False),
                    st.floats(min_value=-1e4, max_value=1e4).map(lambda v: round(v, 7)))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(_number, _number, st.integers(-1_000_000, 1_000_000)), max_size=40))
def test_awkward_numbers_give_the_scalar_paths_bits(rows):
    methodology = NUMBERS_METHODOLOGY
    stream = [{"id": f"r{i}", "account": "a", "time": "2024-05-20T08:00",
               "x": f"{x!r} kg", "y": f"{y!r} kg", "z": str(z)} for i, (x, y, z) in enumerate(rows)]
    expected = _keys(Engine(methodology).evaluate(stream))
    assert _keys(IN_C.evaluate(stream)) == expected
    assert _keys(WITHOUT_C.evaluate(stream)) == expected


NUMBERS_METHODOLOGY = _compile(NUMBERS)
IN_C = BatchEngine(NUMBERS_METHODOLOGY, kernels=kernels.build)
WITHOUT_C = BatchEngine(NUMBERS_METHODOLOGY)


def test_the_numbers_methodology_runs_in_c():
    assert IN_C.formulas.compiles()
    results = IN_C.evaluate([{"id": "r", "account": "a", "time": "2024-05-20T08:00",
                              "x": "1 kg", "y": "0 kg", "z": "2"}])
    assert results[0].code == "NOT_FINITE"  # x / 0 kg


def test_names_in_chinese_become_c_identifiers():
    methodology = _compile(HEADER.format(name="names") + '''
input 距离: quantity [km] between 0 km and 100 km
let 系数 = 40 g/km
let 减排 = 系数 * 距离
reduction = 减排
points = floor(reduction / 1 g)
''')
    batch = BatchEngine(methodology, kernels=kernels.build)
    assert batch.formulas.compiles()
    stream = [{"id": "r", "account": "a", "time": "2024-05-20T08:00", "距离": "2.5 km"}]
    assert [r.points for r in batch.evaluate(stream)] == [100]
    assert _keys(batch.evaluate(stream)) == _keys(Engine(methodology).evaluate(stream))


def test_text_compared_with_text_runs_in_c():
    methodology = _compile(HEADER.format(name="texts") + '''
input a: text
input b: text
input n: integer between 0 and 100
require a != b else SAME "the two texts are the same"
reduction = n * 1 g
points = n
''')
    batch = BatchEngine(methodology, kernels=kernels.build)
    assert batch.formulas.compiles()  # text against text, in one label space per call
    stream = [{"id": f"r{i}", "account": "a", "time": "2024-05-20T08:00", "a": a, "b": b, "n": "7"}
              for i, (a, b) in enumerate([("x", "y"), ("x", "x"), ("甲", "甲")])]
    assert _keys(batch.evaluate(stream)) == _keys(Engine(methodology).evaluate(stream))
    assert [r.code for r in batch.evaluate(stream)] == ["", "SAME", "SAME"]


def test_a_key_the_checker_ruled_out_is_named_by_the_kernel():
    """A choice outside the table cannot come from ingest (it rejects unknown choices),
    but the kernel must still not invent an outcome: it rejects the row and hands back
    the key, and the message names it as the scalar path's does."""
    methodology = _compile(HEADER.format(name="impossible") + '''
input mode: choice { bus, metro }
input distance: quantity [km] between 0 km and 100 km
parameter factor [g/km] by mode from 2024-01-01 source "t" [ASM] { bus: 20, metro: 30 }
reduction = factor[mode] * distance
points = floor(reduction / 1 g)
''')
    columns = {"mode": Cat(np.array([0, 2, 1], dtype=np.int32), ("bus", "metro", "tram")),
               "distance": np.array([10_000.0, 10_000.0, 10_000.0]),  # metres
               "time": np.full(3, 1_716_163_200_000_000, dtype=np.int64),
               "activity": Cat(np.zeros(3, dtype=np.int32), ("",))}
    batch = BatchEngine(methodology, kernels=kernels.build)
    assert batch.formulas.compiles()
    scalar = BatchEngine(methodology)
    by_c = batch.formulas.run(dict(columns), 3, np.zeros(3, dtype=np.int32))
    by_rows = scalar.formulas.run(dict(columns), 3, np.zeros(3, dtype=np.int32))
    assert [batch.reasons.items[r] for r in by_c.reason] == [scalar.reasons.items[r] for r in by_rows.reason]
    assert by_c.reason[0] == 0 and by_c.reason[1] > 1
    assert batch.reasons.items[by_c.reason[1]] == ("rejected", "NO_VALUE", "`factor` has no value for tram")
    assert by_c.points[[0, 2]].tolist() == by_rows.points[[0, 2]].tolist() == [200, 300]
    assert by_c.masses["reduction"][[0, 2]].tolist() == [200_000, 300_000]


def test_the_source_asks_for_ieee_operations_only():
    source = generate(IN_C.plan)
    assert "-ffp-contract=off" in kernels.FLAGS and not any("fast" in f and "fno" not in f
                                                         for f in kernels.FLAGS)
    # a division by a constant (1 g in kg, written exactly) stays a division, not a
    # multiplication by its reciprocal
    assert f"/ (double)(({(0.001).hex()}))" in source.text


def test_kernels_are_kept_and_reused_without_a_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("TANPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(kernels, "_loaded", {})
    source = generate(IN_C.plan).text
    assert kernels.build(source) is not None
    libraries = list((tmp_path / "kernels").glob("*.so"))
    assert len(libraries) == 1
    monkeypatch.setattr(kernels, "_loaded", {})  # a new process: only the file remains
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert kernels.compiler() is None
    assert kernels.build(source) is not None  # loaded from the cache folder


def test_a_damaged_library_is_compiled_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TANPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(kernels, "_loaded", {})
    source = generate(IN_C.plan).text
    library = kernels.library_path(source)
    library.write_bytes(b"not a shared library")  # a disk that filled up, a copy cut short
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert kernels.build(source) is None  # cannot be loaded, and nothing to compile it with
    assert not library.exists()
    monkeypatch.delenv("CC")
    library.write_bytes(b"not a shared library")
    assert kernels.build(source) is not None
    assert library.read_bytes()[:4] == b"\x7fELF"


def test_without_a_compiler_the_engine_evaluates_row_by_row(tmp_path, monkeypatch):
    monkeypatch.setenv("TANPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(kernels, "_loaded", {})
    batch = BatchEngine(NUMBERS_METHODOLOGY, kernels=kernels.build)
    assert not batch.formulas.compiles()
    stream = [{"id": "r", "account": "a", "time": "2024-05-20T08:00", "x": "1.5 kg", "y": "2 kg", "z": "3"}]
    assert _keys(batch.evaluate(stream)) == _keys(Engine(NUMBERS_METHODOLOGY).evaluate(stream))


def test_a_failing_compiler_warns_and_the_engine_evaluates_row_by_row(tmp_path, monkeypatch):
    failing = tmp_path / "cc"
    failing.write_text("#!/bin/sh\necho 'no space left on device' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("TANPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(failing))
    monkeypatch.setattr(kernels, "_loaded", {})
    batch = BatchEngine(NUMBERS_METHODOLOGY, kernels=kernels.build)
    with pytest.warns(RuntimeWarning, match="no space left"):
        assert not batch.formulas.compiles()


def test_with_caching_off_kernels_go_to_a_folder_of_the_process(monkeypatch):
    monkeypatch.setenv("TANPU_CACHE_DIR", "")  # caching off (dsl/cache.py)
    monkeypatch.setattr(kernels, "_loaded", {})
    monkeypatch.setattr(kernels, "_scratch", None)
    source = generate(IN_C.plan).text
    assert kernels.build(source) is not None
    library = kernels.library_path(source)
    assert library.exists() and library.parent.name.startswith("tanpu-kernels-")
