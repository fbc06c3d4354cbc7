/* The text readers of the batch engine: engine/batch/text.py's parsers, each as one pass
 * over the cells, with the same acceptance rules (tests/engine/test_native_text.py checks
 * each against its NumPy counterpart on generated cells).
 *
 * Each function takes (int64 n, void **a): the number of cells and an array of pointers
 * to the columns it reads and writes, as engine/batch/native_text.py calls it with ctypes.
 * Built at install time into the extension engine.native._fixed (setup.py).
 */
#include "export.h"
#include <stdint.h>
#include <string.h>

/* what str.strip() removes, by the bytes text.py names: ASCII 9-13 and 28-32, and the
   first bytes of the UTF-8 encodings of the other whitespace characters */
static inline int ascii_ws(unsigned b) { return b <= 32 && (b >= 28 || (b >= 9 && b <= 13)); }
static inline int lead_multibyte_ws(unsigned b) { return b == 0xC2 || (b >= 0xE1 && b <= 0xE3); }

/* a[0]: the views (16 bytes a cell), a[1]: the data buffers' addresses, a[2]: one byte
   per cell, 0 for a null (whose view may hold anything), or NULL when there is none;
   a[3]: suspect (out), a[4]: present, i.e. not null and not empty (out) */
TANPU_EXPORT void tanpu_padded(int64_t n, void **a) {
    const uint8_t *views = (const uint8_t *)a[0];
    const uint8_t *const *buffers = (const uint8_t *const *)a[1];
    const uint8_t *valid = (const uint8_t *)a[2];
    uint8_t *suspect = (uint8_t *)a[3];
    uint8_t *present = (uint8_t *)a[4];
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *v = views + 16 * i;
        uint32_t len;
        memcpy(&len, v, 4);
        if (len == 0 || (valid && !valid[i])) { suspect[i] = 0; present[i] = 0; continue; }
        const uint8_t *p = v + 4;
        if (len > 12) {
            uint32_t buffer, offset;
            memcpy(&buffer, v + 8, 4);
            memcpy(&offset, v + 12, 4);
            p = buffers[buffer] + offset;
        }
        unsigned first = p[0], last = p[len - 1];
        int s = ascii_ws(first) || lead_multibyte_ws(first) || ascii_ws(last);
        if (!s && last >= 0x80 && last <= 0xBF)
            s = (len >= 2 && p[len - 2] == 0xC2) || (len >= 3 && lead_multibyte_ws(p[len - 3]));
        suspect[i] = (uint8_t)s;
        present[i] = 1;
    }
}

/* ---- text.decimals, cell by cell: [+-]digits[.digits][spaces][unit], at most 15 digits,
   no exponent, no trailing space; cells longer than 40 bytes are left to Python.
   a[0] data, a[1] start, a[2] end, a[3] valid; out: a[4] value, a[5] mantissa,
   a[6] negative, a[7] dots, a[8] unit_start, a[9] ok */
static const double POWERS_OF_TEN[16] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
                                          1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
static inline int digit(unsigned b) { return b >= 48 && b <= 57; }

TANPU_EXPORT void tanpu_decimals(int64_t n, void **a) {
    const uint8_t *data = (const uint8_t *)a[0];
    const int64_t *start = (const int64_t *)a[1], *end = (const int64_t *)a[2];
    const uint8_t *valid = (const uint8_t *)a[3];
    double *value = (double *)a[4];
    int64_t *mantissa = (int64_t *)a[5], *dots = (int64_t *)a[7], *unit_start = (int64_t *)a[8];
    uint8_t *negative = (uint8_t *)a[6], *ok = (uint8_t *)a[9];
    for (int64_t i = 0; i < n; i++) {
        int64_t s = start[i], w = end[i] - s;
        value[i] = 0.0; mantissa[i] = 0; negative[i] = 0; dots[i] = 0; unit_start[i] = end[i]; ok[i] = 0;
        if (!valid[i] || w <= 0 || w > 40) continue;
        const uint8_t *m = data + s;
        int64_t sign = (m[0] == 43 || m[0] == 45);
        int64_t stop = w;
        for (int64_t j = 0; j < w; j++) {
            if (!(digit(m[j]) || m[j] == 46 || (j == 0 && sign))) { stop = j; break; }
        }
        int64_t mant = 0, ndots = 0, dot_at = w;
        for (int64_t j = 0; j < stop; j++) {
            if (m[j] == 46) { if (ndots == 0) dot_at = j; ndots++; }
            else if (j >= sign && j < 17 && digit(m[j])) mant = mant * 10 + (m[j] - 48);
        }
        int64_t count = stop - sign - ndots;
        int64_t frac = ndots > 0 ? stop - dot_at - 1 : 0;
        unsigned after = m[stop < w - 1 ? stop : w - 1];
        int good = count >= 1 && count <= 15 && ndots <= 1 && !(stop < w && (after == 101 || after == 69));
        int64_t us = stop;
        while (us < w && m[us] == 32) us++;
        good = good && !(us < w && m[w - 1] == 32);
        double v = (double)mant / POWERS_OF_TEN[frac < 15 ? frac : 15];
        int neg = m[0] == 45;
        value[i] = neg ? -v : v;
        mantissa[i] = mant; negative[i] = (uint8_t)neg; dots[i] = ndots;
        unit_start[i] = s + us; ok[i] = (uint8_t)good;
    }
}

/* ---- text.iso_datetimes, cell by cell: YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,6}]]][Z|+-HH:MM],
   10 to 32 bytes, valid calendar fields. a[0..3] as above; out: a[4] local us,
   a[5] offset us, a[6] has_offset, a[7] ok */
static inline int64_t pair(const uint8_t *m, int64_t w, int64_t k, int *good) {
    if (k + 1 >= w) { *good = 0; return 0; }
    unsigned x = (uint8_t)(m[k] - 48), y = (uint8_t)(m[k + 1] - 48);
    *good = x < 10 && y < 10;
    return (int64_t)(x * 10 + y);
}
static inline unsigned at(const uint8_t *m, int64_t w, int64_t k) { return k < w ? m[k] : 0; }
static inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}
static inline int calendar_ok(int64_t y, int64_t m, int64_t d) {
    static const int64_t days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!(y >= 1 && m >= 1 && m <= 12 && d >= 1)) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m] + (leap && m == 2);
}

TANPU_EXPORT void tanpu_iso_datetimes(int64_t n, void **a) {
    const uint8_t *data = (const uint8_t *)a[0];
    const int64_t *start = (const int64_t *)a[1], *end = (const int64_t *)a[2];
    const uint8_t *valid = (const uint8_t *)a[3];
    int64_t *local = (int64_t *)a[4], *offset = (int64_t *)a[5];
    uint8_t *has_offset = (uint8_t *)a[6], *ok = (uint8_t *)a[7];
    for (int64_t i = 0; i < n; i++) {
        int64_t s = start[i], w = end[i] - s;
        local[i] = 0; offset[i] = 0; has_offset[i] = 0; ok[i] = 0;
        if (!valid[i] || w < 10 || w > 32) continue;
        const uint8_t *m = data + s;
        int g0, g1, g2, g3;
        int64_t year = pair(m, w, 0, &g0) * 100 + pair(m, w, 2, &g1);
        int64_t month = pair(m, w, 5, &g2), day = pair(m, w, 8, &g3);
        int good = g0 && g1 && g2 && g3 && m[4] == 45 && m[7] == 45 && calendar_ok(year, month, day);
        int64_t hour = 0, minute = 0, second = 0, micro = 0, pos = 10;
        int date_only = w == 10;
        if (!date_only) {
            int gh, gm, gs;
            unsigned sep = at(m, w, 10);
            hour = pair(m, w, 11, &gh);
            minute = pair(m, w, 14, &gm);
            good = good && (sep == 84 || sep == 32) && gh && gm && at(m, w, 13) == 58 && w >= 16;
            int has_seconds = at(m, w, 16) == 58 && w >= 19;
            second = pair(m, w, 17, &gs);
            good = good && (!has_seconds || gs);
            if (!has_seconds) second = 0;
            int has_frac = has_seconds && at(m, w, 19) == 46;
            int64_t digits = 0;
            if (has_frac) {
                for (int64_t j = 0; j < 7; j++) {
                    unsigned b = at(m, w, 20 + j);
                    if (!digit(b)) break;
                    if (j == 6) { good = 0; break; }  /* a 7th digit: left to Python */
                    micro = micro * 10 + (b - 48);
                    digits++;
                }
                good = good && digits >= 1;
            }
            for (int64_t k = digits; k < 6; k++) micro *= 10;
            pos = has_frac ? 20 + digits : (has_seconds ? 19 : 16);
            good = good && hour <= 23 && minute <= 59 && second <= 59;
        }
        int64_t tail = w - pos;
        int zulu = 0, sign = 0;
        int64_t oh = 0, om = 0;
        unsigned z = 0;
        if (tail != 0) {
            int goh, gom;
            z = at(m, w, pos);
            zulu = tail == 1 && (z == 90 || z == 122) && !date_only;
            oh = pair(m, w, pos + 1, &goh);
            om = pair(m, w, pos + 4, &gom);
            sign = tail == 6 && (z == 43 || z == 45) && goh && gom && at(m, w, pos + 3) == 58
                   && oh <= 23 && om <= 59 && !date_only;
            good = good && (zulu || sign);
        }
        int64_t days = good ? days_from_civil(year, month, day) : 0;
        local[i] = days * 86400000000LL + hour * 3600000000LL + minute * 60000000LL
                   + second * 1000000LL + micro;
        if (sign) offset[i] = (z == 45 ? -1 : 1) * (oh * 3600 + om * 60) * 1000000LL;
        has_offset[i] = (uint8_t)(zulu || sign);
        ok[i] = (uint8_t)good;
    }
}

/* ---- text.match_strings: the index of the candidate each valid cell equals byte for
   byte (the first, if two are equal), -1 for none. a[0..3] as above, a[4] the
   candidates' bytes, a[5] their offsets (k + 1 of them), a[6] k; out: a[7] index */
TANPU_EXPORT void tanpu_match(int64_t n, void **a) {
    const uint8_t *data = (const uint8_t *)a[0];
    const int64_t *start = (const int64_t *)a[1], *end = (const int64_t *)a[2];
    const uint8_t *valid = (const uint8_t *)a[3];
    const uint8_t *words = (const uint8_t *)a[4];
    const int64_t *offsets = (const int64_t *)a[5];
    int64_t k = *(const int64_t *)a[6];
    int32_t *index = (int32_t *)a[7];
    for (int64_t i = 0; i < n; i++) {
        int32_t found = -1;
        if (valid[i]) {
            int64_t w = end[i] - start[i];
            for (int64_t c = 0; c < k; c++) {
                if (offsets[c + 1] - offsets[c] == w && memcmp(data + start[i], words + offsets[c], (size_t)w) == 0) {
                    found = (int32_t)c;
                    break;
                }
            }
        }
        index[i] = found;
    }
}

/* ---- text.unit_codes: the texts after the numbers, [unit_start, end) of the ok cells,
   numbered in the order they first occur, at most `limit` of them (then -1).
   a[0] data, a[1] unit_start, a[2] end, a[3] ok, a[4] limit; out: a[5] code per cell,
   a[6] the first cell of each unit, a[7] the number of units */
TANPU_EXPORT void tanpu_unit_codes(int64_t n, void **a) {
    const uint8_t *data = (const uint8_t *)a[0];
    const int64_t *ustart = (const int64_t *)a[1], *end = (const int64_t *)a[2];
    const uint8_t *ok = (const uint8_t *)a[3];
    int64_t limit = *(const int64_t *)a[4];
    int32_t *codes = (int32_t *)a[5];
    int64_t *first = (int64_t *)a[6];
    int64_t *count = (int64_t *)a[7];
    int64_t units = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t code = -1;
        if (ok[i]) {
            int64_t w = end[i] - ustart[i];
            for (int64_t u = 0; u < units; u++) {
                int64_t f = first[u];
                if (end[f] - ustart[f] == w && memcmp(data + ustart[i], data + ustart[f], (size_t)w) == 0) {
                    code = (int32_t)u;
                    break;
                }
            }
            if (code < 0 && units < limit) {
                first[units] = i;
                code = (int32_t)units++;
            }
        }
        codes[i] = code;
    }
    *count = units;
}
