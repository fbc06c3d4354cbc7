"""Packaging checks: what an installed Tanpu must ship."""

from importlib.resources import files


def test_grammar_is_package_data():
    grammar = files("dsl") / "grammar.lark"
    assert grammar.is_file(), f"dsl/grammar.lark not found via importlib.resources: {grammar}"


def test_the_fixed_c_is_built_with_the_package():
    """setup.py builds engine/native/'s fixed C at install time (in place for an editable
    install, inside the wheel otherwise); the engine finds its functions through ctypes."""
    from engine.native import _fixed, fixed

    library = fixed()
    assert library is not None, "engine.native._fixed is not built: pip install -e ."
    assert files("engine.native").joinpath(_fixed.__file__.rsplit("/", 1)[-1]).is_file()
    for name in ("tanpu_padded", "tanpu_decimals", "tanpu_iso_datetimes", "tanpu_match",
                 "tanpu_unit_codes", "tanpu_snap", "tanpu_to_mg"):
        assert hasattr(library, name), name
    # the sources ship too, for an sdist and for the kernels (numeric.h, read by kernel.py)
    for source in ("numeric.h", "text.c", "numeric.c", "fixed.c", "export.h"):
        assert (files("engine") / "native" / source).is_file(), source
