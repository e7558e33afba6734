/* gg_math.h — exp, expm1, log, log1p, tanh and the logistic function for `real`, written so
 * that GCC vectorises the loops calling them: no branches (selects instead), no libm calls,
 * 2^k built from its bits. libm's scalar calls would keep every activation kernel at one element
 * at a time. Plain IEEE arithmetic (never -ffast-math); accuracy a few ulp in float32 and
 * float64 (tests compare against NumPy), NaN and ±inf handled as libm does.
 *
 * Included by the kernel files after gg_internal.h has bound `real`; each translation unit
 * (kernels_f32.c, kernels_f64.c) sees one binding, so one source serves both dtypes. Only the
 * bit layout and the polynomial degrees differ between them. */
#ifndef GG_MATH_H
#define GG_MATH_H
#include <stdint.h>
#include <string.h>

#if defined(GG_REAL_F32)
typedef int32_t gg_ibits;
#define GG_MANT_BITS 23
#define GG_EXP_BIAS 127
#define GG_ROUND_MAGIC 12582912.0f            /* 1.5 * 2^23: adding it rounds to an integer */
#define GG_EXP_LO (-104.0f)                    /* exp below this is 0 in float32 */
#define GG_EXP_HI 89.0f                        /* and above this +inf */
#define GG_EXP_DEGREE 7
#define GG_EXPM1_DEGREE 9
#define GG_LOG_TERMS 6                         /* atanh series terms: s, s^3/3, ..., s^11/11 */
#define GG_TANH_TERMS 4                        /* Taylor terms for |x| < 0.1 */
#define GG_TINY 1.17549435e-38f                /* smallest normal */
#define GG_TINY_SCALE 8388608.0f               /* 2^23: lifts subnormals to normals */
#else
typedef int64_t gg_ibits;
#define GG_MANT_BITS 52
#define GG_EXP_BIAS 1023
#define GG_ROUND_MAGIC 6755399441055744.0      /* 1.5 * 2^52 */
#define GG_EXP_LO (-746.0)
#define GG_EXP_HI 710.0
#define GG_EXP_DEGREE 13
#define GG_EXPM1_DEGREE 15
#define GG_LOG_TERMS 11                        /* up to s^21/21: |s| < 0.172 leaves < 1e-18 */
#define GG_TANH_TERMS 7
#define GG_TINY 2.2250738585072014e-308
#define GG_TINY_SCALE 4503599627370496.0       /* 2^52 */
#endif

/* 1/k! for the Taylor polynomials of exp and expm1 (Horner from the top degree down) */
static const double gg_inv_fact[17] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                       1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600,
                                       1.0 / 6227020800, 1.0 / 87178291200, 1.0 / 1307674368000,
                                       1.0 / 20922789888000};
/* 1/d for the atanh series of log */
static const double gg_inv_int[24] = {0.0, 1.0, 1.0 / 2, 1.0 / 3, 1.0 / 4, 1.0 / 5, 1.0 / 6, 1.0 / 7, 1.0 / 8,
                                      1.0 / 9, 1.0 / 10, 1.0 / 11, 1.0 / 12, 1.0 / 13, 1.0 / 14, 1.0 / 15, 1.0 / 16,
                                      1.0 / 17, 1.0 / 18, 1.0 / 19, 1.0 / 20, 1.0 / 21, 1.0 / 22, 1.0 / 23};

static inline real gg_from_bits(gg_ibits b) { real r; memcpy(&r, &b, sizeof r); return r; }
static inline gg_ibits gg_to_bits(real r) { gg_ibits b; memcpy(&b, &r, sizeof b); return b; }

/* e^x: x = k ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact k ln2), e^r by its Taylor
 * polynomial, 2^k as two factors 2^(k/2) 2^(k - k/2) so subnormal and overflowing results come
 * out right without a branch. */
static inline real gg_exp_hilo(real x, real xlo) {
    real xc = (real)GG_EXP_LO < x ? x : (real)GG_EXP_LO;     /* NaN lands on the low bound here */
    xc = xc < (real)GG_EXP_HI ? xc : (real)GG_EXP_HI;
    real shifted = xc * (real)1.44269504088896340736 + (real)GG_ROUND_MAGIC;
    real k = shifted - (real)GG_ROUND_MAGIC;
    gg_ibits n = gg_to_bits(shifted) - gg_to_bits((real)GG_ROUND_MAGIC);
    real r = fma(k, (real)-6.93145751953125E-1, xc);    /* ln2, high part: k * it is exact */
    r = fma(k, (real)-1.42860682030941723212E-6, r) + xlo; /* ln2, low part; x's own low part */
    /* Horner on 1 + r + r^2/2! + ... + r^D/D! */
    real p = (real)gg_inv_fact[GG_EXP_DEGREE];
    _Pragma("GCC unroll 16")
    for (int d = GG_EXP_DEGREE - 1; d >= 0; d--) p = fma(p, r, (real)gg_inv_fact[d]);
    gg_ibits h = n / 2;
    real s1 = gg_from_bits((h + GG_EXP_BIAS) << GG_MANT_BITS);
    real s2 = gg_from_bits((n - h + GG_EXP_BIAS) << GG_MANT_BITS);
    real out = p * s1 * s2;
    return x != x ? x : out;
}

/* e^x (exp of x + xlo with xlo = 0: the pair form serves pow, whose exponent carries extra bits) */
static inline real gg_exp(real x) { return gg_exp_hilo(x, (real)0); }

/* e^x - 1, accurate near 0 (the Taylor series there, e^x - 1 elsewhere) */
static inline real gg_expm1(real x) {
    real p = (real)gg_inv_fact[GG_EXPM1_DEGREE];
    _Pragma("GCC unroll 16")
    for (int d = GG_EXPM1_DEGREE - 1; d >= 1; d--) p = fma(p, x, (real)gg_inv_fact[d]);
    real small = x * p;
    real big = gg_exp(x) - (real)1;
    return (x > (real)-0.35 && x < (real)0.35) ? small : big;
}

/* log x: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172.
 * Only real-valued selects, so the loop around it vectorises; the exponent field becomes a real
 * exactly by planting it in the mantissa of 2^MANT_BITS. */
static inline real gg_log_parts(real x, real *exponent) {
    const real two_mant = (real)GG_TINY_SCALE;               /* 2^MANT_BITS */
    real xs = x < (real)GG_TINY ? x * two_mant : x;            /* subnormals: lift by 2^MANT_BITS */
    real lifted = x < (real)GG_TINY ? (real)GG_MANT_BITS : (real)0;
    gg_ibits bits = gg_to_bits(xs);
    gg_ibits mant_mask = ((gg_ibits)1 << GG_MANT_BITS) - 1;
    real e = gg_from_bits(((bits >> GG_MANT_BITS) & (gg_ibits)0x7ff) | gg_to_bits(two_mant)) - two_mant
             - (real)GG_EXP_BIAS;                              /* m in [1, 2) */
    real m = gg_from_bits((bits & mant_mask) | ((gg_ibits)GG_EXP_BIAS << GG_MANT_BITS));
    real high = m > (real)1.41421356237309504880 ? (real)1 : (real)0;
    m = m > (real)1.41421356237309504880 ? m * (real)0.5 : m;
    real fe = e + high - lifted;
    real s = (m - (real)1) / (m + (real)1), s2 = s * s;
    real p = (real)gg_inv_int[2 * GG_LOG_TERMS - 1];
    _Pragma("GCC unroll 16")
    for (int t = GG_LOG_TERMS - 2; t >= 1; t--) p = fma(p, s2, (real)gg_inv_int[2 * t + 1]);
    *exponent = fe;
    return fma((real)2 * s, s2 * p, (real)2 * s);              /* log m */
}

/* log x for finite x > 0 as exponent·ln2 + log m; zero, negatives, inf and NaN by selects */
static inline real gg_log(real x) {
    real fe;
    real r = gg_log_parts(x, &fe);
    r = fma(fe, (real)6.93145751953125E-1, fma(fe, (real)1.42860682030941723212E-6, r));
    r = x == (real)0 ? -(real)INFINITY : r;
    r = x < (real)0 ? (real)NAN : r;
    r = x == (real)INFINITY ? x : r;
    return x != x ? x : r;
}

/* 1 where p is an integer, 0 elsewhere (every float beyond 2^MANT_BITS is an integer) */
static inline real gg_is_integer(real p) {
    real a = fabs(p);
    a = a < (real)GG_TINY_SCALE ? a : (real)GG_TINY_SCALE;      /* 2^MANT_BITS and beyond: integers */
    real rounded = (a + (real)GG_ROUND_MAGIC) - (real)GG_ROUND_MAGIC;
    return rounded == a ? (real)1 : (real)0;
}

/* x ** p with C99/NumPy semantics: log|x| as an exact exponent part plus log m, p times it kept
 * as a (hi, lo) pair so exp sees the product's rounding error, then the sign (negative x with an
 * odd integer p), then the special cases by selects. A few ulp in float32 and float64.
 * Always inlined: it is long enough that GCC otherwise calls it, and a loop with a call does not
 * vectorise (x ** 1.7 over 1M floats, 1 thread: 38.6 ms with the call, 2.1 ms inlined). */
static inline __attribute__((always_inline)) real gg_pow(real x, real p) {
    real a = fabs(x);
    real fe;
    real lm = gg_log_parts(a, &fe);
    real l_hi = fe * (real)6.93145751953125E-1;                  /* exact: few bits times few bits */
    real l_lo = fma(fe, (real)1.42860682030941723212E-6, lm);
    real hi = p * l_hi;
    real lo = fma(p, l_hi, -hi) + p * l_lo;                      /* the product's rounding error, and the rest */
    real y = hi + lo, ylo = (hi - y) + lo;
    real mag = gg_exp_hilo(y, ylo);
    /* zero and infinite bases, infinite exponents. The conditions are 0/1 reals combined by
     * arithmetic, each comparison made unconditionally: a comparison GCC would have to speculate
     * (short-circuit logic) may trap under -ftrapping-math, and the loop would not vectorise. */
    real big = (real)INFINITY;
    real a_zero = a == (real)0 ? (real)1 : (real)0;
    real a_inf = a == big ? (real)1 : (real)0;
    real a_edge = a_zero + a_inf;
    real a_one = a == (real)1 ? (real)1 : (real)0;
    real a_below_one = a < (real)1 ? (real)1 : (real)0;
    real p_pos = p > (real)0 ? (real)1 : (real)0;
    real p_inf = fabs(p) == big ? (real)1 : (real)0;
    real x_neg = x < (real)0 ? (real)1 : (real)0;
    real x_signed = gg_to_bits(x) < 0 ? (real)1 : (real)0;           /* sign bit: -0 included */
    real edge_mag = a_zero == p_pos ? (real)0 : big;
    mag = a_edge != (real)0 ? edge_mag : mag;
    real inf_mag = a_below_one == p_pos ? (real)0 : big;
    inf_mag = a_one != (real)0 ? (real)1 : inf_mag;
    mag = p_inf != (real)0 ? inf_mag : mag;
    real integer = gg_is_integer(p);
    real small_enough = fabs(p) < (real)2 * (real)GG_TINY_SCALE ? (real)1 : (real)0;
    real odd = integer * small_enough * ((real)1 - gg_is_integer(p * (real)0.5));
    real r = odd * x_signed != (real)0 ? -mag : mag;
    /* a finite negative base with a finite non-integer exponent has no real power */
    r = x_neg * ((real)1 - a_inf) * ((real)1 - integer) * ((real)1 - p_inf) != (real)0 ? (real)NAN : r;
    r = p != p ? p : r;
    r = x != x ? x : r;
    r = p == (real)0 ? (real)1 : r;
    return x == (real)1 ? (real)1 : r;
}

/* log(1 + u), accurate for tiny u (Goldberg's correction: log(w) u / (w - 1), w = 1 + u) */
static inline real gg_log1p(real u) {
    real w = (real)1 + u;
    real d = w - (real)1;
    real r = gg_log(w) * (u / (d == (real)0 ? (real)1 : d));   /* d == 0 takes the select below */
    r = d == (real)0 ? u : r;
    return w == (real)INFINITY ? w : r;
}

/* e^x for x in [-60, 0] only (callers guarantee it: no NaN, no overflow, no subnormal result),
 * so no clamps and one 2^k factor: the cheap exp inside tanh */
static inline real gg_exp_nonpositive(real x) {
    real shifted = x * (real)1.44269504088896340736 + (real)GG_ROUND_MAGIC;
    real k = shifted - (real)GG_ROUND_MAGIC;
    gg_ibits n = gg_to_bits(shifted) - gg_to_bits((real)GG_ROUND_MAGIC);
    real r = fma(k, (real)-6.93145751953125E-1, x);
    r = fma(k, (real)-1.42860682030941723212E-6, r);
    real p = (real)gg_inv_fact[GG_EXP_DEGREE];
    _Pragma("GCC unroll 16")
    for (int d = GG_EXP_DEGREE - 1; d >= 0; d--) p = fma(p, r, (real)gg_inv_fact[d]);
    return p * gg_from_bits((n + GG_EXP_BIAS) << GG_MANT_BITS);
}

/* tanh x = sign(x) (1 - e) / (1 + e), e = exp(-2|x|); its Taylor series near 0, where 1 - e
 * would cancel. |x| is capped at 20, where tanh is 1 to within half an ulp in float64. */
static inline real gg_tanh(real x) {
    static const double taylor[7] = {1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835, -1382.0 / 155925,
                                     21844.0 / 6081075};
    real a = fabs(x);
    a = a < (real)20 ? a : (real)20;                           /* NaN lands on 20 here */
    real e = gg_exp_nonpositive((real)-2 * a);
    real big = ((real)1 - e) / ((real)1 + e);
    real x2 = a * a, p = (real)0;
    _Pragma("GCC unroll 16")
    for (int t = GG_TANH_TERMS - 1; t >= 0; t--) p = fma(x2, p, (real)taylor[t]);
    real small = a * p;
    real r = copysign(a < (real)0.1 ? small : big, x);
    return x != x ? x : r;
}

/* 1 / (1 + exp(-x)) without overflow: exp only ever sees -|x| */
static inline real gg_sigmoid(real x) {
    real e = gg_exp(-fabs(x));
    real inv = (real)1 / ((real)1 + e);
    return x >= 0 ? inv : e * inv;
}

/* log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) */
static inline real gg_softplus(real x) {
    return (x > 0 ? x : (real)0) + gg_log1p(gg_exp(-fabs(x)));
}


/* Lanes for reductions: the vectoriser may not reorder a floating-point reduction (that would need
 * -ffast-math), so rows are reduced in GG_LANES independent partial results, combined at the end
 * in a fixed order: vectorised, and deterministic. */
#define GG_LANES 16

/* sum of x[0..n) in double, over GG_LANES partial sums combined in a fixed order: vectorised, where one
 * running sum is a chain of dependent adds (4 cycles each), and deterministic */
static inline double gg_lane_sum(const real *x, int64_t n) {
    double lane[GG_LANES] = {0};
    int64_t j = 0;
    for (; j + GG_LANES <= n; j += GG_LANES)
        for (int l = 0; l < GG_LANES; l++) lane[l] += (double)x[j + l];
    double s = 0;
    for (int l = 0; l < GG_LANES; l++) s += lane[l];
    for (; j < n; j++) s += (double)x[j];
    return s;
}

/* the same for doubles (terms a kernel computed in double) */
static inline double gg_lane_sum_d(const double *x, int64_t n) {
    double lane[GG_LANES] = {0};
    int64_t j = 0;
    for (; j + GG_LANES <= n; j += GG_LANES)
        for (int l = 0; l < GG_LANES; l++) lane[l] += x[j + l];
    double s = 0;
    for (int l = 0; l < GG_LANES; l++) s += lane[l];
    for (; j < n; j++) s += x[j];
    return s;
}

/* max of x[0..n) (n >= 1 assumed by callers; -inf for n == 0); NaN is ignored like the
 * comparison-based loop it replaces (a NaN row still ends as NaN through exp) */
static inline real gg_row_max(const real *x, int64_t n) {
    real lane[GG_LANES];
    for (int l = 0; l < GG_LANES; l++) lane[l] = -(real)INFINITY;
    int64_t j = 0;
    for (; j + GG_LANES <= n; j += GG_LANES)
        for (int l = 0; l < GG_LANES; l++) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    real m = -(real)INFINITY;
    for (int l = 0; l < GG_LANES; l++) m = lane[l] > m ? lane[l] : m;
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* sum of exp(x[j] - m) over x[0..n), accumulated in real lanes (each lane holds n/16 terms in
 * (0, 1]); writes the exponentials to e when it is not NULL */
static inline double gg_row_sum_exp(real *e, const real *x, int64_t n, real m) {
    real lane[GG_LANES] = {0};
    int64_t j = 0;
    if (e) {
        for (; j + GG_LANES <= n; j += GG_LANES)
            for (int l = 0; l < GG_LANES; l++) { real v = gg_exp(x[j + l] - m); e[j + l] = v; lane[l] += v; }
    } else {
        for (; j + GG_LANES <= n; j += GG_LANES)
            for (int l = 0; l < GG_LANES; l++) lane[l] += gg_exp(x[j + l] - m);
    }
    double s = 0;
    for (int l = 0; l < GG_LANES; l++) s += (double)lane[l];
    for (; j < n; j++) {
        real v = gg_exp(x[j] - m);
        if (e) e[j] = v;
        s += (double)v;
    }
    return s;
}

/* sum of a[j] * b[j] (b may be NULL: sum of a) over [0..n), in lanes */
static inline real gg_row_dot(const real *a, const real *b, int64_t n) {
    real lane[GG_LANES] = {0};
    int64_t j = 0;
    if (b) {
        for (; j + GG_LANES <= n; j += GG_LANES)
            for (int l = 0; l < GG_LANES; l++) lane[l] += a[j + l] * b[j + l];
    } else {
        for (; j + GG_LANES <= n; j += GG_LANES)
            for (int l = 0; l < GG_LANES; l++) lane[l] += a[j + l];
    }
    real s = 0;
    for (int l = 0; l < GG_LANES; l++) s += lane[l];
    for (; j < n; j++) s += b ? a[j] * b[j] : a[j];
    return s;
}

/* x, or 0 where |x| is below the smallest normal number. The optimizers' moving averages decay
 * geometrically where a gradient stays 0 (a dead ReLU unit, a pixel that is always blank) and would
 * pass through the subnormal range, where each operation on this CPU costs tens of cycles (Adam over
 * 100k weights: 40 -> 75 µs with 30 % of m subnormal); TensorFlow and JAX flush them on CPU too. */
static inline real gg_flush_subnormal(real x) { return x < (real)GG_TINY && x > -(real)GG_TINY ? (real)0 : x; }

#endif
