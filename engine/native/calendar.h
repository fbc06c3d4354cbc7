/* Calendar parts of a day number (days since 1970-01-01) and of local microseconds, as
 * engine/scalar.py's day_part and LocalTime.part give them (proleptic Gregorian, as
 * Python's datetime.date). The civil date is H. Hinnant's days_from_civil inverse.
 */
#ifndef TANPU_CALENDAR_H
#define TANPU_CALENDAR_H
#include <stdint.h>
/* follows numeric.h (t_floordiv) in every kernel's source */
static inline int64_t t_day_part(int64_t days, int part) {
    /* part: 0 year, 1 month, 2 day, 3 weekday (1 = Monday), 5 days in the year */
    if (part == 3) return ((days % 7) + 7 + 3) % 7 + 1;
    int64_t z = days + 719468;
    int64_t era = t_floordiv(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    if (part == 5) return (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 366 : 365;
    return part == 0 ? y : (part == 1 ? m : d);
}
static inline int64_t t_local_part(int64_t local_us, int part) {
    /* part: 0 year, 1 month, 2 day, 3 weekday, 4 hour */
    if (part == 4) return ((t_floordiv(local_us, INT64_C(3600000000)) % 24) + 24) % 24;
    return t_day_part(t_floordiv(local_us, INT64_C(86400000000)), part);
}
/* The code of a number key in a table: its position among the sorted keys, or -1. */
static inline int64_t t_find(const double *keys, const int64_t *codes, int64_t n, double x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (keys[mid] < x) lo = mid + 1; else hi = mid;
    }
    return (lo < n && keys[lo] == x) ? codes[lo] : -1;
}
typedef struct { int64_t utc, local; } t_instant;
#endif
