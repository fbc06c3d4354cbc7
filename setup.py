"""The one thing pyproject.toml cannot say: the engine's fixed C, built at install time.

engine/native/ holds C that is the same for every methodology (the text readers of the
batch engine, text.c, and wrappers of the numeric contract, numeric.c, over numeric.h),
so it is compiled once by pip, as an ordinary extension module (engine.native._fixed),
not at run time like the per-methodology kernels (engine/native/build.py). An editable
install (`make install`) builds it in place, next to its sources.

The flags are part of the numeric contract: no fused multiply-add (-ffp-contract=off;
GCC fuses by default in GNU C mode) and no fast-math option, so each operation is the
IEEE-754 operation engine/numeric.py does. No -march or -msse4.1: a wheel must load on
any CPU of its platform.
"""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-std=gnu11", "-ffp-contract=off", "-fno-fast-math"]

setup(ext_modules=[Extension(
    "engine.native._fixed",
    sources=["engine/native/fixed.c", "engine/native/text.c", "engine/native/numeric.c"],
    depends=["engine/native/numeric.h", "engine/native/export.h"],
    extra_compile_args=FLAGS,
)])
