/* elementwise.c — unary and binary maps (NumPy broadcasting through element strides) and the
 * activations with their backward kernels. Compiled through kernels_f32.c / kernels_f64.c. */
#ifndef KERNEL
#error "compile elementwise.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>
#include <stddef.h>

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
        int64_t chunk = 8192;
        int64_t n_chunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for num_threads(gg_threads()) if (inner >= GG_PARALLEL_MIN) schedule(static)
        for (int64_t c = 0; c < n_chunks; c++) {
            int64_t s = c * chunk, len = inner - s < chunk ? inner - s : chunk;
            row(out + s, a + s * ia, ia, b + s * ib, ib, len);
        }
        return;
    }
#pragma omp parallel for num_threads(gg_threads()) if (outer * inner >= GG_PARALLEL_MIN) schedule(static)
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
}

DEFINE_BINARY(add, x + y)
DEFINE_BINARY(sub, x - y)
DEFINE_BINARY(mul, x * y)
DEFINE_BINARY(div, x / y)

/* Unary maps over n contiguous elements; in place (out == x) is allowed. */
#define DEFINE_UNARY(NAME, EXPR)                                                               \
    void KERNEL(NAME)(real *out, const real *x_, int64_t n) {                                  \
        _Pragma("omp parallel for num_threads(gg_threads()) if (n >= GG_PARALLEL_MIN) schedule(static)") \
        for (int64_t i = 0; i < n; i++) { real x = x_[i]; out[i] = (EXPR); }                   \
    }

/* Stable logistic: exp never sees a large positive argument. */
static inline real stable_sigmoid(real x) {
    if (x >= 0) return (real)1 / ((real)1 + exp(-x));
    real e = exp(x);
    return e / ((real)1 + e);
}

DEFINE_UNARY(neg, -x)
DEFINE_UNARY(abs, fabs(x))
DEFINE_UNARY(sign, (real)((x > 0) - (x < 0)))
DEFINE_UNARY(copy, x)
DEFINE_UNARY(relu, x > 0 ? x : (real)0)
DEFINE_UNARY(sigmoid, stable_sigmoid(x))

/* Backward kernels: dx from the saved tensor (input x or output y) and the incoming dy. */
#define DEFINE_BACKWARD(NAME, EXPR)                                                            \
    void KERNEL(NAME)(real *dx, const real *s_, const real *dy_, int64_t n) {                  \
        _Pragma("omp parallel for num_threads(gg_threads()) if (n >= GG_PARALLEL_MIN) schedule(static)") \
        for (int64_t i = 0; i < n; i++) { real s = s_[i], dy = dy_[i]; dx[i] = (EXPR); }       \
    }

DEFINE_BACKWARD(relu_backward, s > 0 ? dy : (real)0)          /* s is relu's input x */
DEFINE_BACKWARD(sigmoid_backward, dy * s * ((real)1 - s))     /* s is sigmoid's output y */
