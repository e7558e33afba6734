/* elementwise.c — the kernels of the elementwise rows of the op table (csrc/ops.def): unary and
 * binary maps (NumPy broadcasting through element strides), activations and their backward ops,
 * the loss gradients that are maps. Each row's per-element body becomes a static inline function
 * <name>_element here, which both its kernel below and the fused block loop (fused.c) call, so the
 * two compute the same bits. pow_scalar and gelu are written by hand. Compiled through
 * kernels_f32.c / kernels_f64.c. Every formula is written to stay finite for large |x| (no exp of
 * a large positive number). */
#ifndef KERNEL
#error "compile elementwise.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>
#include <stddef.h>
#include "gg_math.h"

/* One contiguous output row of a binary op: o[i] = f(a[i*ia], b[i*ib]); strides are 0 or 1
 * after the compiler's dimension collapsing, so the common cases get their own loops. */
typedef void (*binary_row_fn)(real *o, const real *a, int64_t ia, const real *b, int64_t ib, int64_t n);

/* out is shape[rank] (contiguous); the last axis is the row, the others are walked by index. */
static void broadcast_binary(binary_row_fn row, real *out, const real *a, const real *b, int32_t rank,
                             const int64_t *shape, const int64_t *sa, const int64_t *sb) {
    int64_t inner = rank > 0 ? shape[rank - 1] : 1;
    int64_t ia = rank > 0 ? sa[rank - 1] : 0, ib = rank > 0 ? sb[rank - 1] : 0;
    int64_t outer = 1;
    for (int32_t d = 0; d < rank - 1; d++) outer *= shape[d];
    if (outer * inner == 0) return;
    if (outer == 1) {
        /* one long row: split it into chunks across threads */
        int64_t chunk = 65536;
        int64_t n_chunks = (inner + chunk - 1) / chunk;
        GG_PARALLEL_FOR(inner >= GG_PARALLEL_MIN,
            for (int64_t c = 0; c < n_chunks; c++) {
                int64_t s = c * chunk, len = inner - s < chunk ? inner - s : chunk;
                row(out + s, a + s * ia, ia, b + s * ib, ib, len);
            }
        );
        return;
    }
    GG_PARALLEL_FOR(outer * inner >= GG_PARALLEL_MIN,
        for (int64_t o = 0; o < outer; o++) {
            int64_t off_a = 0, off_b = 0, rem = o;
            for (int32_t d = rank - 2; d >= 0; d--) {
                int64_t idx = rem % shape[d];
                rem /= shape[d];
                off_a += idx * sa[d];
                off_b += idx * sb[d];
            }
            row(out + o * inner, a + off_a, ia, b + off_b, ib, inner);
        }
    );
}

/* gelu's kernels: unary maps over n contiguous elements; in place (out == x) is allowed. */
#define DEFINE_UNARY(NAME, EXPR)                                                               \
    void KERNEL(NAME)(real *out, const real *x_, int64_t n) {                                  \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) { real x = x_[i]; out[i] = (EXPR); });                   \
    }

#define GG_SQRT1_2 0.70710678118654752440    /* 1/sqrt(2) */
#define GG_SQRT2_PI 0.79788456080286535588   /* sqrt(2/pi) */
#define GG_INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */
#define GG_GELU_C 0.044715

/* GELU, exact: x * Phi(x) with Phi the standard normal CDF */
static inline real gelu_erf(real x) { return (real)0.5 * x * ((real)1 + erf(x * (real)GG_SQRT1_2)); }
/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static inline real gelu_tanh(real x) {
    return (real)0.5 * x * ((real)1 + gg_tanh((real)GG_SQRT2_PI * (x + (real)GG_GELU_C * x * x * x)));
}

DEFINE_UNARY(gelu, gelu_erf(x))
DEFINE_UNARY(gelu_tanh, gelu_tanh(x))

/* x ** p with the common exponents as plain arithmetic (exact and fast); p is one value for all x */
void KERNEL(pow_scalar)(real *out, const real *x, int64_t n, double exponent) {
    const real p = (real)exponent;
    if (exponent == 2.0) {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) out[i] = x[i] * x[i];
        );
    } else if (exponent == 1.0) {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) out[i] = x[i];
        );
    } else if (exponent == 3.0) {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) out[i] = x[i] * x[i] * x[i];
        );
    } else if (exponent == 0.5) {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) out[i] = sqrt(x[i]);
        );
    } else if (exponent == -1.0) {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) out[i] = (real)1 / x[i];
        );
    } else {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) out[i] = gg_pow(x[i], p);
        );
    }
}

/* gelu's backward kernels: dx from its input s and the incoming dy. */
#define DEFINE_BACKWARD(NAME, EXPR)                                                            \
    void KERNEL(NAME)(real *dx, const real *s_, const real *dy_, int64_t n) {                  \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) { real s = s_[i], dy = dy_[i]; dx[i] = (EXPR); });       \
    }

/* s is gelu's input x: d/dx x Phi(x) = Phi(x) + x phi(x) */
DEFINE_BACKWARD(gelu_backward, dy * ((real)0.5 * ((real)1 + erf(s * (real)GG_SQRT1_2)) +
                                     s * (real)GG_INV_SQRT_2PI * exp((real)-0.5 * s * s)))

/* s is gelu's input x, tanh form: with u = sqrt(2/pi)(x + c x^3), t = tanh(u),
 * d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 c x^2) */
static inline real gelu_tanh_grad(real x) {
    real t = gg_tanh((real)GG_SQRT2_PI * (x + (real)GG_GELU_C * x * x * x));
    return (real)0.5 * ((real)1 + t) +
           (real)0.5 * x * ((real)1 - t * t) * (real)GG_SQRT2_PI * ((real)1 + (real)(3 * GG_GELU_C) * x * x);
}
DEFINE_BACKWARD(gelu_tanh_backward, dy * gelu_tanh_grad(s))


/* ---- the elementwise rows of the op table: per-element bodies, then their kernels ---- */

/* sign(v) in {-1, 0, 1} (0 for NaN) */
static inline real gg_sign(real v) { return (real)((v > 0) - (v < 0)); }

#define GG_BINARY(E, CODE, NAME, BODY) static inline real NAME##_element(real x, real y) { return (BODY); }
#define GG_UNARY(E, CODE, NAME, BODY) static inline real NAME##_element(real x) { return (BODY); }
#define GG_UNARY_P(E, CODE, NAME, BODY) static inline real NAME##_element(real x, real p) { return (BODY); }
#define GG_UNARY_PQ(E, CODE, NAME, BODY) static inline real NAME##_element(real x, real p, real q) { return (BODY); }
#define GG_BACKWARD(E, CODE, NAME, BODY) static inline real NAME##_element(real s, real dy) { return (BODY); }
#define GG_BACKWARD_P(E, CODE, NAME, BODY) \
    static inline real NAME##_element(real s, real dy, real p) { return (BODY); }
#define GG_BACKWARD_PQ(E, CODE, NAME, BODY) \
    static inline real NAME##_element(real s, real dy, real p, real q) { return (BODY); }
/* a loss gradient: c = COEF (in double, from the scale and the scalar dout), then BODY per element */
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY)                                                    \
    static inline real NAME##_coefficient(double scale, double dout) { return (real)(COEF); }          \
    static inline real NAME##_element(real c, real x, real y) { return (BODY); }
#include "ops_table.h"

/* One contiguous output row of a binary op: o[i] = f(a[i*ia], b[i*ib]); strides are 0 or 1
 * after the compiler's dimension collapsing, so the common cases get their own loops. */
#define GG_BINARY(E, CODE, NAME, BODY)                                                                 \
    static void NAME##_row(real *o, const real *a, int64_t ia, const real *b, int64_t ib, int64_t n) { \
        if (ia == 1 && ib == 1) {                                                                      \
            for (int64_t i = 0; i < n; i++) o[i] = NAME##_element(a[i], b[i]);                         \
        } else if (ia == 1 && ib == 0) {                                                               \
            real y = b[0];                                                                             \
            for (int64_t i = 0; i < n; i++) o[i] = NAME##_element(a[i], y);                            \
        } else if (ia == 0 && ib == 1) {                                                               \
            real x = a[0];                                                                             \
            for (int64_t i = 0; i < n; i++) o[i] = NAME##_element(x, b[i]);                            \
        } else {                                                                                       \
            for (int64_t i = 0; i < n; i++) o[i] = NAME##_element(a[i * ia], b[i * ib]);               \
        }                                                                                              \
    }                                                                                                  \
    void KERNEL(NAME)(real *out, const real *a, const real *b, int32_t rank, const int64_t *shape,     \
                      const int64_t *stride_a, const int64_t *stride_b) {                              \
        broadcast_binary(NAME##_row, out, a, b, rank, shape, stride_a, stride_b);                      \
    }
/* out and x are (n,) */
#define GG_UNARY(E, CODE, NAME, BODY)                                                                  \
    void KERNEL(NAME)(real *out, const real *x, int64_t n) {                                           \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) out[i] = NAME##_element(x[i]);); \
    }
#define GG_UNARY_P(E, CODE, NAME, BODY)                                                                \
    void KERNEL(NAME)(real *out, const real *x, int64_t n, double p_) {                                \
        const real p = (real)p_;                                                                       \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) out[i] = NAME##_element(x[i], p);); \
    }
#define GG_UNARY_PQ(E, CODE, NAME, BODY)                                                               \
    void KERNEL(NAME)(real *out, const real *x, int64_t n, double p_, double q_) {                     \
        const real p = (real)p_, q = (real)q_;                                                         \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,                                                          \
                        for (int64_t i = 0; i < n; i++) out[i] = NAME##_element(x[i], p, q););        \
    }
/* dx, s, dy are (n,) */
#define GG_BACKWARD(E, CODE, NAME, BODY)                                                               \
    void KERNEL(NAME)(real *dx, const real *s, const real *dy, int64_t n) {                            \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,                                                          \
                        for (int64_t i = 0; i < n; i++) dx[i] = NAME##_element(s[i], dy[i]););        \
    }
#define GG_BACKWARD_P(E, CODE, NAME, BODY)                                                             \
    void KERNEL(NAME)(real *dx, const real *s, const real *dy, int64_t n, double p_) {                 \
        const real p = (real)p_;                                                                       \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,                                                          \
                        for (int64_t i = 0; i < n; i++) dx[i] = NAME##_element(s[i], dy[i], p););     \
    }
#define GG_BACKWARD_PQ(E, CODE, NAME, BODY)                                                            \
    void KERNEL(NAME)(real *dx, const real *s, const real *dy, int64_t n, double p_, double q_) {      \
        const real p = (real)p_, q = (real)q_;                                                         \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,                                                          \
                        for (int64_t i = 0; i < n; i++) dx[i] = NAME##_element(s[i], dy[i], p, q););  \
    }
/* dp, p, y are (n,); dout is () */
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY)                                                    \
    void KERNEL(NAME)(real *dp, const real *p, const real *y, const real *dout, int64_t n, double scale) { \
        const real c = NAME##_coefficient(scale, (double)dout[0]);                                     \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,                                                          \
                        for (int64_t i = 0; i < n; i++) dp[i] = NAME##_element(c, p[i], y[i]););      \
    }
#include "ops_table.h"
