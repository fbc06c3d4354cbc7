/* The numeric contract of numeric.h, one exported function each, so that
 * tests/engine/test_numeric_c.py can compare it bit for bit with engine/numeric.py: the
 * generated kernels include numeric.h itself (kernel.py's PRELUDE), and these wrappers
 * are compiled with the same -ffp-contract=off and no fast-math (setup.py). */
#include "export.h"
#include "numeric.h"

TANPU_EXPORT double tanpu_snap(double q) { return t_snap(q); }
TANPU_EXPORT double tanpu_floor(double q) { return t_floor(q); }
TANPU_EXPORT double tanpu_ceil(double q) { return t_ceil(q); }
TANPU_EXPORT double tanpu_half_away(double q) { return t_half_away(q); }
TANPU_EXPORT double tanpu_dmin(double a, double b) { return t_dmin(a, b); }
TANPU_EXPORT double tanpu_dmax(double a, double b) { return t_dmax(a, b); }
/* a mass in kg to whole mg, as a kernel quantizes baseline, project, leakage, reduction */
TANPU_EXPORT double tanpu_to_mg(double kg) { return t_half_away(t_snap(kg * 1000000.0)); }
TANPU_EXPORT int64_t tanpu_imin(int64_t a, int64_t b) { return t_imin(a, b); }
TANPU_EXPORT int64_t tanpu_imax(int64_t a, int64_t b) { return t_imax(a, b); }
TANPU_EXPORT int64_t tanpu_add(int64_t a, int64_t b) { return t_add(a, b); }
TANPU_EXPORT int64_t tanpu_sub(int64_t a, int64_t b) { return t_sub(a, b); }
TANPU_EXPORT int64_t tanpu_mul(int64_t a, int64_t b) { return t_mul(a, b); }
TANPU_EXPORT int64_t tanpu_neg(int64_t a) { return t_neg(a); }
TANPU_EXPORT int64_t tanpu_iabs(int64_t a) { return t_iabs(a); }
TANPU_EXPORT int64_t tanpu_floordiv(int64_t a, int64_t b) { return t_floordiv(a, b); }
TANPU_EXPORT int64_t tanpu_to_i64(double x) { return t_to_i64(x); }
