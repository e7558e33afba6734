/* loss.c — the loss functions, forward (to a scalar) and backward (gradient w.r.t. the
 * prediction, and for the cross-entropies also w.r.t. the target: `wrt`). `scale` is 1/n for
 * reduction="mean" (n: elements, or rows for the softmax cross-entropy) and 1 for "sum".
 * Sums accumulate in double; logits go through log-sum-exp with the max subtracted, so ±1000
 * stays finite in float32. Compiled through kernels_f*.c. */
#ifndef KERNEL
#error "compile loss.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>
#include "gg_math.h"

/* acc = Σ TERM over i in [0, n) (TERM: a double expression of i). Per chunk the terms go into a buffer
 * in one vectorised loop and are added in GG_LANES partial sums (gg_lane_sum_d): one running sum
 * would be a chain of dependent adds, 4 cycles an element. Chunks run in parallel when n is large. */
#ifndef GG_LOSS_CHUNK
#define GG_LOSS_CHUNK 256
#endif
#define LOSS_SUM(acc, n, i, TERM)                                                                       \
    GG_PARALLEL_SUM((n) >= GG_PARALLEL_MIN,                                                            \
        for (int64_t chunk_ = 0; chunk_ < ((n) + GG_LOSS_CHUNK - 1) / GG_LOSS_CHUNK; chunk_++) {      \
            double terms_[GG_LOSS_CHUNK];                                                              \
            int64_t start_ = chunk_ * GG_LOSS_CHUNK;                                                   \
            int64_t len_ = (n) - start_ < GG_LOSS_CHUNK ? (n) - start_ : GG_LOSS_CHUNK;              \
            for (int64_t k_ = 0; k_ < len_; k_++) {                                                    \
                int64_t i = start_ + k_;                                                               \
                terms_[k_] = (TERM);                                                                   \
            }                                                                                          \
            acc += gg_lane_sum_d(terms_, len_);                                                        \
        }                                                                                              \
    )

static inline double squared_diff(real a, real b) {
    double d = (double)a - (double)b;
    return d * d;
}

/* p, y are (n,); out is () */
void KERNEL(mse)(real *out, const real *p, const real *y, int64_t n, double scale) {
    double acc = 0.0;
    LOSS_SUM(acc, n, i, squared_diff(p[i], y[i]));
    out[0] = (real)(acc * scale);
}

/* mse_backward and l1_backward are elementwise rows of the op table (ops.def, elementwise.c) */

/* p, y are (n,); out is () */
void KERNEL(l1)(real *out, const real *p, const real *y, int64_t n, double scale) {
    double acc = 0.0;
    LOSS_SUM(acc, n, i, fabs((double)p[i] - (double)y[i]));
    out[0] = (real)(acc * scale);
}

static inline double huber_term(double d, double delta) {
    return d <= delta ? 0.5 * d * d : delta * (d - 0.5 * delta);
}

/* p, y are (n,); out is (): quadratic within delta of the target, linear beyond (PyTorch's HuberLoss) */
void KERNEL(huber)(real *out, const real *p, const real *y, int64_t n, double scale, double delta) {
    double acc = 0.0;
    LOSS_SUM(acc, n, i, huber_term(fabs((double)p[i] - (double)y[i]), delta));
    out[0] = (real)(acc * scale);
}

/* dp, p, y are (n,); dout is (): dp = dout * scale * clip(p - y, -delta, delta) */
void KERNEL(huber_backward)(real *dp, const real *p, const real *y, const real *dout, int64_t n, double scale,
                            double delta) {
    real c = (real)(scale * (double)dout[0]), hi = (real)delta;
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real d = p[i] - y[i];
            dp[i] = c * (d > hi ? hi : d < -hi ? -hi : d);
        }
    );
}

static inline double bce_term(real x, real y) {
    return (double)((x > 0 ? x : (real)0) - x * y + gg_log1p(gg_exp(-fabs(x))));
}

/* x (logits), y are (n,); out is (): max(x, 0) - x y + log1p(exp(-|x|)) never overflows */
void KERNEL(bce)(real *out, const real *x, const real *y, int64_t n, double scale) {
    double acc = 0.0;
    LOSS_SUM(acc, n, i, bce_term(x[i], y[i]));
    out[0] = (real)(acc * scale);
}

/* d, x, y are (n,); dout is (): wrt 0: d = c (sigmoid(x) - y); wrt 1: d = -c x */
void KERNEL(bce_backward)(real *d, const real *x, const real *y, const real *dout, int64_t n, double scale,
                          int32_t wrt) {
    real c = (real)(scale * (double)dout[0]);
    if (wrt) {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) d[i] = -c * x[i];
        );
        return;
    }
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real e = gg_exp(-fabs(x[i]));                      /* in (0, 1]: no overflow */
            real s = x[i] >= 0 ? (real)1 / ((real)1 + e) : e / ((real)1 + e);
            d[i] = c * (s - y[i]);
        }
    );
}

/* One row of logits: its max and log(sum(exp(x - max))), so lse = max + log-sum. */
static void row_lse(const real *x, int64_t classes, real *max_out, real *logsum_out) {
    real m = gg_row_max(x, classes);
    if (m == -INFINITY) m = 0;
    double s = gg_row_sum_exp(NULL, x, classes, m);
    *max_out = m;
    *logsum_out = (real)log(s);
}

/* Rows are taken a block at a time. Rows narrower than GG_LANES (10 classes, say) would each get
 * a scalar exp loop; a block of them shares one vector loop over its GG_LSE_BLOCK elements instead.
 * The arithmetic and the order of every sum are the same either way. */
#ifndef GG_LSE_BLOCK
#define GG_LSE_BLOCK 256
#endif
static inline int64_t lse_rows_per_block(int64_t classes) {
    return classes < GG_LANES && classes > 0 ? GG_LSE_BLOCK / classes : 1;
}

/* m[i], ls[i] for the nr rows of x (nr·classes <= GG_LSE_BLOCK when classes < GG_LANES) */
static void rows_lse(const real *x, int64_t nr, int64_t classes, real *m, real *ls) {
    if (classes >= GG_LANES || nr == 1) {
        for (int64_t i = 0; i < nr; i++) row_lse(x + i * classes, classes, m + i, ls + i);
        return;
    }
    real e[GG_LSE_BLOCK];
    for (int64_t i = 0; i < nr; i++) {
        real mi = gg_row_max(x + i * classes, classes);
        m[i] = mi == -INFINITY ? 0 : mi;
        for (int64_t j = 0; j < classes; j++) e[i * classes + j] = x[i * classes + j] - m[i];
    }
    for (int64_t t = 0; t < nr * classes; t++) e[t] = gg_exp(e[t]);
    for (int64_t i = 0; i < nr; i++) {
        double s = 0;
        for (int64_t j = 0; j < classes; j++) s += (double)e[i * classes + j];
        ls[i] = (real)log(s);
    }
}

/* Block b of `per` rows: its first row (*r0), its max and log-sum per row (m, ls); returns its row count. */
static int64_t lse_block(const real *x, int64_t rows, int64_t classes, int64_t per, int64_t b, int64_t *r0,
                         real *m, real *ls) {
    *r0 = b * per;
    int64_t nr = rows - *r0 < per ? rows - *r0 : per;
    rows_lse(x + *r0 * classes, nr, classes, m, ls);
    return nr;
}

/* p (nr, classes) = exp(x - lse) for the rows of a block, written into p (which may be x itself) */
static void rows_softmax(real *p, const real *x, int64_t nr, int64_t classes, const real *m, const real *ls) {
    for (int64_t i = 0; i < nr; i++)
        for (int64_t j = 0; j < classes; j++) p[i * classes + j] = x[i * classes + j] - m[i] - ls[i];
    for (int64_t t = 0; t < nr * classes; t++) p[t] = gg_exp(p[t]);
}

/* x, t are (rows, classes); out is () = scale * sum_r sum_c t (lse_r - x) */
void KERNEL(softmax_ce)(real *out, const real *x, const real *t, int64_t rows, int64_t classes, double scale) {
    double acc = 0.0;
    int64_t per = lse_rows_per_block(classes), blocks = (rows + per - 1) / per;
    GG_PARALLEL_SUM(rows * classes >= GG_PARALLEL_MIN,
        for (int64_t b = 0; b < blocks; b++) {
            int64_t r0;
            real m[GG_LSE_BLOCK], ls[GG_LSE_BLOCK];
            int64_t nr = lse_block(x, rows, classes, per, b, &r0, m, ls);
            for (int64_t i = 0; i < nr; i++) {
                const real *xr = x + (r0 + i) * classes, *tr = t + (r0 + i) * classes;
                double row = 0.0;
                /* (lse - x) = (m - x) + ls: both terms finite for finite logits */
                for (int64_t j = 0; j < classes; j++) row += (double)tr[j] * ((double)(m[i] - xr[j]) + (double)ls[i]);
                acc += row;
            }
        }
    );
    out[0] = (real)(acc * scale);
}

/* d, x, t are (rows, classes); dout is (): wrt 0: d = c (softmax(x) sum_c t - t); wrt 1: d = c (lse - x) */
void KERNEL(softmax_ce_backward)(real *d, const real *x, const real *t, const real *dout, int64_t rows,
                                 int64_t classes, double scale, int32_t wrt) {
    real c = (real)(scale * (double)dout[0]);
    int64_t per = lse_rows_per_block(classes), blocks = (rows + per - 1) / per;
    GG_PARALLEL_FOR(rows * classes >= GG_PARALLEL_MIN,
        for (int64_t b = 0; b < blocks; b++) {
            int64_t r0;
            real m[GG_LSE_BLOCK], ls[GG_LSE_BLOCK];
            int64_t nr = lse_block(x, rows, classes, per, b, &r0, m, ls);
            const real *xb = x + r0 * classes, *tb = t + r0 * classes;
            real *db = d + r0 * classes;
            if (wrt) {
                for (int64_t i = 0; i < nr; i++)
                    for (int64_t j = 0; j < classes; j++)
                        db[i * classes + j] = c * ((m[i] - xb[i * classes + j]) + ls[i]);
                continue;
            }
            rows_softmax(db, xb, nr, classes, m, ls);
            for (int64_t i = 0; i < nr; i++) {
                const real *tr = tb + i * classes;
                real tsum = 0;
                for (int64_t j = 0; j < classes; j++) tsum += tr[j];
                for (int64_t j = 0; j < classes; j++) db[i * classes + j] = c * (db[i * classes + j] * tsum - tr[j]);
            }
        }
    );
}

/* x is (rows, classes), labels (rows,); out is () = scale * sum_r (lse_r - x[r, label_r]).
 * Returns 1 when a label is outside [0, classes), checked before anything is written (out is then left
 * unwritten), else 0. */
int32_t KERNEL(softmax_ce_labels)(real *out, const real *x, const int64_t *labels, int64_t rows, int64_t classes,
                                  double scale) {
    for (int64_t r = 0; r < rows; r++)
        if (labels[r] < 0 || labels[r] >= classes) return 1;
    double acc = 0.0;
    int64_t per = lse_rows_per_block(classes), blocks = (rows + per - 1) / per;
    GG_PARALLEL_SUM(rows * classes >= GG_PARALLEL_MIN,
        for (int64_t b = 0; b < blocks; b++) {
            int64_t r0;
            real m[GG_LSE_BLOCK], ls[GG_LSE_BLOCK];
            int64_t nr = lse_block(x, rows, classes, per, b, &r0, m, ls);
            for (int64_t i = 0; i < nr; i++)
                acc += (double)(m[i] - x[(r0 + i) * classes + labels[r0 + i]]) + (double)ls[i];
        }
    );
    out[0] = (real)(acc * scale);
    return 0;
}

/* dx, x are (rows, classes), labels (rows,), dout (): dx = c (softmax(x) - onehot(label)).
 * Returns 1 when a label is outside [0, classes) (dx is then left unwritten), else 0. */
int32_t KERNEL(softmax_ce_labels_backward)(real *dx, const real *x, const int64_t *labels, const real *dout,
                                           int64_t rows, int64_t classes, double scale) {
    for (int64_t r = 0; r < rows; r++)
        if (labels[r] < 0 || labels[r] >= classes) return 1;
    real c = (real)(scale * (double)dout[0]);
    int64_t per = lse_rows_per_block(classes), blocks = (rows + per - 1) / per;
    GG_PARALLEL_FOR(rows * classes >= GG_PARALLEL_MIN,
        for (int64_t b = 0; b < blocks; b++) {
            int64_t r0;
            real m[GG_LSE_BLOCK], ls[GG_LSE_BLOCK];
            int64_t nr = lse_block(x, rows, classes, per, b, &r0, m, ls);
            real *db = dx + r0 * classes;
            rows_softmax(db, x + r0 * classes, nr, classes, m, ls);
            for (int64_t t = 0; t < nr * classes; t++) db[t] = c * db[t];
            for (int64_t i = 0; i < nr; i++) db[i * classes + labels[r0 + i]] -= c;
        }
    );
    return 0;
}
