/* elementwise.c — unary and binary maps (NumPy broadcasting through element strides) and the
 * activations with their backward kernels. Compiled through kernels_f32.c / kernels_f64.c.
 * Every formula is written to stay finite for large |x| (no exp of a large positive number). */
#ifndef KERNEL
#error "compile elementwise.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>
#include <stddef.h>
#include "gg_math.h"

/* One contiguous output row of a binary op: o[i] = f(a[i*ia], b[i*ib]); strides are 0 or 1
 * after the compiler's dimension collapsing, so the common cases get their own loops. */
typedef void (*binary_row_fn)(real *o, const real *a, int64_t ia, const real *b, int64_t ib, int64_t n);

#define DEFINE_BINARY(NAME, EXPR)                                                              \
    static void NAME##_row(real *o, const real *a, int64_t ia, const real *b, int64_t ib,     \
                           int64_t n) {                                                        \
        if (ia == 1 && ib == 1) {                                                              \
            for (int64_t i = 0; i < n; i++) { real x = a[i], y = b[i]; o[i] = (EXPR); }        \
        } else if (ia == 1 && ib == 0) {                                                       \
            real y = b[0];                                                                     \
            for (int64_t i = 0; i < n; i++) { real x = a[i]; o[i] = (EXPR); }                  \
        } else if (ia == 0 && ib == 1) {                                                       \
            real x = a[0];                                                                     \
            for (int64_t i = 0; i < n; i++) { real y = b[i]; o[i] = (EXPR); }                  \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) { real x = a[i * ia], y = b[i * ib]; o[i] = (EXPR); } \
        }                                                                                      \
    }                                                                                          \
    void KERNEL(NAME)(real *out, const real *a, const real *b, int32_t rank,                   \
                      const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b) { \
        broadcast_binary(NAME##_row, out, a, b, rank, shape, stride_a, stride_b);              \
    }

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

DEFINE_BINARY(add, x + y)
DEFINE_BINARY(sub, x - y)
DEFINE_BINARY(mul, x * y)
DEFINE_BINARY(div, x / y)
DEFINE_BINARY(pow, gg_pow(x, y))
/* NaN propagates as in NumPy: the comparison is false for NaN, so x wins only when it is NaN or larger */
DEFINE_BINARY(maximum, (x > y || x != x) ? x : y)
DEFINE_BINARY(minimum, (x < y || x != x) ? x : y)
/* maximum's gradient share for a (ties split evenly, as PyTorch does) */
DEFINE_BINARY(maximum_mask, x > y ? (real)1 : x == y ? (real)0.5 : (real)0)
DEFINE_BINARY(equal, (real)(x == y))

/* Unary maps over n contiguous elements; in place (out == x) is allowed. */
#define DEFINE_UNARY(NAME, EXPR)                                                               \
    void KERNEL(NAME)(real *out, const real *x_, int64_t n) {                                  \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) { real x = x_[i]; out[i] = (EXPR); });                   \
    }

/* Stable logistic: exp never sees a large positive argument (gg_math.h). */
#define stable_sigmoid gg_sigmoid

/* Unary maps with one or two real parameters p, q (passed as double, used as real). */
#define DEFINE_UNARY_P(NAME, EXPR)                                                             \
    void KERNEL(NAME)(real *out, const real *x_, int64_t n, double p_) {                       \
        const real p = (real)p_;                                                               \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) { real x = x_[i]; out[i] = (EXPR); });                   \
    }
#define DEFINE_UNARY_PQ(NAME, EXPR)                                                            \
    void KERNEL(NAME)(real *out, const real *x_, int64_t n, double p_, double q_) {            \
        const real p = (real)p_, q = (real)q_;                                                 \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) { real x = x_[i]; out[i] = (EXPR); });                   \
    }

/* log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)) (gg_math.h) */
#define stable_softplus gg_softplus

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

DEFINE_UNARY(neg, -x)
DEFINE_UNARY(abs, fabs(x))
DEFINE_UNARY(sign, (real)((x > 0) - (x < 0)))
DEFINE_UNARY(copy, x)
DEFINE_UNARY(relu, x > 0 ? x : (real)0)
DEFINE_UNARY(sigmoid, stable_sigmoid(x))
DEFINE_UNARY(exp, gg_exp(x))
DEFINE_UNARY(log, gg_log(x))
DEFINE_UNARY(sqrt, sqrt(x))
DEFINE_UNARY(tanh, gg_tanh(x))
DEFINE_UNARY(softplus, stable_softplus(x))
DEFINE_UNARY(gelu, gelu_erf(x))
DEFINE_UNARY(gelu_tanh, gelu_tanh(x))
DEFINE_UNARY_P(leaky_relu, x > 0 ? x : p * x)
DEFINE_UNARY_P(elu, x > 0 ? x : p * gg_expm1(x))
/* clip keeps NaN (both comparisons are false), as NumPy's clip does */
DEFINE_UNARY_PQ(clip, x < p ? p : x > q ? q : x)

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

/* Backward kernels: dx from the saved tensor (input x or output y) and the incoming dy. */
#define DEFINE_BACKWARD(NAME, EXPR)                                                            \
    void KERNEL(NAME)(real *dx, const real *s_, const real *dy_, int64_t n) {                  \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) { real s = s_[i], dy = dy_[i]; dx[i] = (EXPR); });       \
    }

DEFINE_BACKWARD(relu_backward, s > 0 ? dy : (real)0)          /* s is relu's input x */
DEFINE_BACKWARD(sigmoid_backward, dy * s * ((real)1 - s))     /* s is sigmoid's output y */
DEFINE_BACKWARD(tanh_backward, dy * ((real)1 - s * s))         /* s is tanh's output y */
DEFINE_BACKWARD(softplus_backward, dy * stable_sigmoid(s))     /* s is softplus's input x */
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

/* Backward kernels with the forward's parameters p, q; s is the forward's input x. */
#define DEFINE_BACKWARD_P(NAME, EXPR)                                                          \
    void KERNEL(NAME)(real *dx, const real *s_, const real *dy_, int64_t n, double p_) {       \
        const real p = (real)p_;                                                               \
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++) { real s = s_[i], dy = dy_[i]; dx[i] = (EXPR); });       \
    }

DEFINE_BACKWARD_P(leaky_relu_backward, s > 0 ? dy : p * dy)
DEFINE_BACKWARD_P(elu_backward, s > 0 ? dy : dy * p * gg_exp(s))

/* the gradient passes where lo <= x <= hi (PyTorch's clamp: the bounds themselves included) */
void KERNEL(clip_backward)(real *dx, const real *x, const real *dy, int64_t n, double lo_, double hi_) {
    const real lo = (real)lo_, hi = (real)hi_;
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) dx[i] = (x[i] >= lo && x[i] <= hi) ? dy[i] : (real)0;
    );
}
