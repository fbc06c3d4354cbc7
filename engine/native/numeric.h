/* The numeric contract of engine/numeric.py in C, for the generated kernels.
 *
 * Each function here is the C form of the function of the same name in engine/numeric.py
 * and gives the same bits (tests/engine/test_numeric_c.py compares them on values
 * Hypothesis chooses). Kernels are compiled with -ffp-contract=off and no fast-math
 * option, so each operation is the IEEE-754 operation the Python code does.
 */
#ifndef TANPU_NUMERIC_H
#define TANPU_NUMERIC_H
#include <math.h>
#include <stdint.h>

static inline double t_snap(double q) {
    double h = q * 2.0;
    double n = rint(h);
    double gap = fabs(h - n);
    double s = fabs(h);
    s = (s != s) ? s : (s > 1.0 ? s : 1.0);
    s *= 0x1p-48;  /* SNAP_TOLERANCE of dsl/ir/ast.py */
    n *= 0.5;
    return gap <= s ? n : q;
}
static inline double t_floor(double q) { return isfinite(q) ? copysign(floor(q), q) : q; }
static inline double t_ceil(double q) { return isfinite(q) ? copysign(ceil(q), q) : q; }
static inline double t_half_away(double q) { return copysign(floor(fabs(q) + 0.5), q); }
static inline double t_dmin(double a, double b) { return (a != a) ? a : (a < b ? a : b); }
static inline double t_dmax(double a, double b) { return (a != a) ? a : (a > b ? a : b); }
static inline int64_t t_imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t t_imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t t_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t t_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static inline int64_t t_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static inline int64_t t_neg(int64_t a) { return (int64_t)(0u - (uint64_t)a); }
static inline int64_t t_iabs(int64_t a) { return a < 0 ? t_neg(a) : a; }
static inline int64_t t_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}
static inline int64_t t_to_i64(double x) {
    return (x >= -0x1p63 && x < 0x1p63) ? (int64_t)x : INT64_MIN;
}
#endif
