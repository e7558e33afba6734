/* reduce.c — sum (and mean, through its scale) and max over any set of axes; expand, the sum's
 * adjoint (the broadcast of a reduced tensor back to the full shape); softmax and log-softmax
 * along one axis with their backward kernels; and the strided copies the shape ops lower to
 * (transpose, broadcast_to, slice and its scatter-back, concat). Compiled through kernels_f*.c. */
#ifndef KERNEL
#error "compile reduce.c through kernels_f32.c or kernels_f64.c"
#endif
#include <string.h>
#include <tgmath.h>
#include "gg_math.h"

#ifndef GG_SUM_CHUNK
#define GG_SUM_CHUNK 4096   /* elements per partial sum of a full reduction (the unit threads share) */
#endif

/* the general case of sum: out (zeroed) += x's rows of the last axis, walked with an odometer over the
 * outer axes */
static void KERNEL(sum_rows)(real *out, const real *x, int32_t rank, const int64_t *in_shape, const int64_t *out_stride,
                             int64_t total) {
    int64_t inner = in_shape[rank - 1], inner_stride = out_stride[rank - 1];
    int64_t outer = total / inner;
    int64_t idx[32] = {0};
    int64_t off = 0;
    for (int64_t o = 0; o < outer; o++) {
        const real *row = x + o * inner;
        if (inner_stride == 0) {
            out[off] += (real)gg_lane_sum(row, inner);
        } else {
            real *dst = out + off;
            for (int64_t i = 0; i < inner; i++) dst[i * inner_stride] += row[i];
        }
        /* odometer step over the outer axes */
        for (int32_t d = rank - 2; d >= 0; d--) {
            idx[d]++;
            off += out_stride[d];
            if (idx[d] < in_shape[d]) break;
            off -= idx[d] * out_stride[d];
            idx[d] = 0;
        }
    }
}

/* Column sums, out[j] = sum over rows of x[r, j] for x (rows, cols): a bias's gradient. The threads
 * share out blocks of columns; each block's sums stay in L1 while the rows stream past, and every
 * column is added up in row order, the same bits on any thread count as the general loop's. */
#define GG_SUM_COLUMN_BLOCK 512
static void KERNEL(sum_columns)(real *restrict out, const real *restrict x, int64_t rows, int64_t cols) {
    int64_t blocks = (cols + GG_SUM_COLUMN_BLOCK - 1) / GG_SUM_COLUMN_BLOCK;
    GG_PARALLEL_FOR(rows * cols >= GG_PARALLEL_MIN && blocks > 1,
        for (int64_t b = 0; b < blocks; b++) {
            int64_t j0 = b * GG_SUM_COLUMN_BLOCK, width = cols - j0 < GG_SUM_COLUMN_BLOCK ? cols - j0 : GG_SUM_COLUMN_BLOCK;
            real *restrict o = out + j0;
            for (int64_t r = 0; r < rows; r++) {
                const real *restrict row = x + r * cols + j0;
                for (int64_t j = 0; j < width; j++) o[j] += row[j];
            }
        });
}

/* x is in_shape[rank]; out has out_n elements; out_stride is 0 on reduced axes. */
void KERNEL(sum)(real *out, int64_t out_n, const real *x, int32_t rank, const int64_t *in_shape,
                 const int64_t *out_stride, double scale) {
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= in_shape[d];
    if (out_n == 1) {
        /* full reduction: accumulate in double for accuracy, in chunks (in parallel when large) */
        double acc = 0.0;
        int64_t chunks = (total + GG_SUM_CHUNK - 1) / GG_SUM_CHUNK;
        GG_PARALLEL_SUM(total >= GG_PARALLEL_MIN,
            for (int64_t c = 0; c < chunks; c++) {
                int64_t i = c * GG_SUM_CHUNK;
                acc += gg_lane_sum(x + i, total - i < GG_SUM_CHUNK ? total - i : GG_SUM_CHUNK);
            }
        );
        out[0] = (real)(acc * scale);
        return;
    }
    memset(out, 0, (size_t)out_n * sizeof(real));
    if (total == 0) {
        /* an empty sum is 0; an empty mean is 0 * NaN = NaN, as in NumPy */
        for (int64_t i = 0; i < out_n; i++) out[i] = (real)(0.0 * scale);
        return;
    }
    if (rank == 3 && out_stride[0] == 0 && out_stride[1] == 1 && out_stride[2] == 0) {
        /* per-channel sums of (n, c, s), a convolution's bias gradient: the threads share out the
         * channels, each summing its rows in the order of the loop below (the same bits, any thread count) */
        const int64_t n = in_shape[0], c = in_shape[1], s = in_shape[2];
        GG_PARALLEL_FOR(total >= GG_PARALLEL_MIN && c > 1,
            for (int64_t ch = 0; ch < c; ch++) {
                real acc = 0;
                for (int64_t i = 0; i < n; i++) acc += (real)gg_lane_sum(x + (i * c + ch) * s, s);
                out[ch] = acc;
            });
    } else if (out_stride[rank - 1] == 1 && out_n == in_shape[rank - 1]) {
        /* every axis but the last reduced: column sums of (total / cols, cols) */
        KERNEL(sum_columns)(out, x, total / out_n, out_n);
    } else {
        KERNEL(sum_rows)(out, x, rank, in_shape, out_stride, total);
    }
    if (scale != 1.0)
        for (int64_t i = 0; i < out_n; i++) out[i] = (real)(out[i] * scale);
}

/* out is out_shape[rank]; g is read with g_stride (0 on the axes it was reduced over). */
void KERNEL(expand)(real *out, const real *g, int32_t rank, const int64_t *out_shape,
                    const int64_t *g_stride, double scale) {
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= out_shape[d];
    if (total == 0) return;
    if (rank == 0) { out[0] = (real)(g[0] * scale); return; }
    int64_t inner = out_shape[rank - 1], inner_stride = g_stride[rank - 1];
    int64_t outer = total / inner;
    real s = (real)scale;
    GG_PARALLEL_FOR(total >= GG_PARALLEL_MIN,
        for (int64_t o = 0; o < outer; o++) {
            int64_t off = 0, rem = o;
            for (int32_t d = rank - 2; d >= 0; d--) {
                off += (rem % out_shape[d]) * g_stride[d];
                rem /= out_shape[d];
            }
            real *dst = out + o * inner;
            const real *src = g + off;
            for (int64_t i = 0; i < inner; i++) dst[i] = s * src[i * inner_stride];
        }
    );
}

/* The larger of m and v, NaN winning (once m is NaN it stays NaN) */
static inline real nan_max(real m, real v) { return (v > m || v != v) ? v : m; }

/* x is in_shape[rank]; out has out_n elements; out_stride is 0 on reduced axes. NaN wins, as in
 * NumPy. The caller guarantees every output has at least one element to reduce. */
void KERNEL(max)(real *out, int64_t out_n, const real *x, int32_t rank, const int64_t *in_shape,
                 const int64_t *out_stride) {
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= in_shape[d];
    if (total == 0) return;
    for (int64_t i = 0; i < out_n; i++) out[i] = -INFINITY;
    if (rank == 0) { out[0] = x[0]; return; }
    int64_t inner = in_shape[rank - 1], inner_stride = out_stride[rank - 1];
    int64_t outer = total / inner;
    int64_t idx[32] = {0};
    int64_t off = 0;
    for (int64_t o = 0; o < outer; o++) {
        const real *row = x + o * inner;
        if (inner_stride == 0) {
            real m = out[off];
            for (int64_t i = 0; i < inner; i++) m = nan_max(m, row[i]);
            out[off] = m;
        } else {
            real *dst = out + off;
            for (int64_t i = 0; i < inner; i++) dst[i * inner_stride] = nan_max(dst[i * inner_stride], row[i]);
        }
        /* odometer step over the outer axes */
        for (int32_t d = rank - 2; d >= 0; d--) {
            idx[d]++;
            off += out_stride[d];
            if (idx[d] < in_shape[d]) break;
            off -= idx[d] * out_stride[d];
            idx[d] = 0;
        }
    }
}

/* One line of the softmax axis: n elements, stride `step`. Returns log(sum(exp(x - max))) and the max. */
static real line_logsumexp(const real *x, int64_t n, int64_t step, real *max_out) {
    real m = -INFINITY;
    if (step == 1) m = gg_row_max(x, n);
    else for (int64_t j = 0; j < n; j++) m = x[j * step] > m ? x[j * step] : m;
    if (m == -INFINITY) m = 0;   /* all -inf (or n == 0): keep exp(x - m) defined */
    double s = 0;                /* accumulated in double: long rows stay accurate in float32 */
    if (step == 1) s = gg_row_sum_exp(NULL, x, n, m);
    else for (int64_t j = 0; j < n; j++) s += (double)gg_exp(x[j * step] - m);
    *max_out = m;
    return (real)log(s);
}

/* The lines of an (outer, n, inner) tensor: line r starts at base(r) and steps by inner. Lines
 * with inner == 1 are contiguous rows and take the vectorised row helpers of gg_math.h. */
static inline int64_t line_base(int64_t r, int64_t n, int64_t inner) { return (r / inner) * n * inner + r % inner; }

/* out, x are (outer, n, inner); softmax along n, stable: exp(x - max) / sum */
void KERNEL(softmax)(real *out, const real *x, int64_t outer, int64_t n, int64_t inner) {
    GG_PARALLEL_FOR(outer * n * inner >= GG_PARALLEL_MIN,
        for (int64_t r = 0; r < outer * inner; r++) {
            int64_t base = line_base(r, n, inner);
            const real *xl = x + base;
            real *ol = out + base;
            if (inner == 1) {
                real m = gg_row_max(xl, n);
                if (m == -INFINITY) m = 0;
                real inv = (real)(1.0 / gg_row_sum_exp(ol, xl, n, m));
                for (int64_t j = 0; j < n; j++) ol[j] *= inv;
                continue;
            }
            real m = -INFINITY;
            for (int64_t j = 0; j < n; j++) m = xl[j * inner] > m ? xl[j * inner] : m;
            if (m == -INFINITY) m = 0;
            double s = 0;
            for (int64_t j = 0; j < n; j++) {
                real e = gg_exp(xl[j * inner] - m);
                ol[j * inner] = e;
                s += (double)e;
            }
            real inv = (real)(1.0 / s);
            for (int64_t j = 0; j < n; j++) ol[j * inner] *= inv;
        }
    );
}

/* out, x are (outer, n, inner); log_softmax along n: x - max - log(sum(exp(x - max))) */
void KERNEL(log_softmax)(real *out, const real *x, int64_t outer, int64_t n, int64_t inner) {
    GG_PARALLEL_FOR(outer * n * inner >= GG_PARALLEL_MIN,
        for (int64_t r = 0; r < outer * inner; r++) {
            int64_t base = line_base(r, n, inner);
            real m;
            real shift = line_logsumexp(x + base, n, inner, &m);
            shift += m;
            if (inner == 1) {
                const real *xl = x + base;
                real *ol = out + base;
                for (int64_t j = 0; j < n; j++) ol[j] = xl[j] - shift;
            } else {
                for (int64_t j = 0; j < n; j++) out[base + j * inner] = x[base + j * inner] - shift;
            }
        }
    );
}

/* dx, y, dy are (outer, n, inner); y is softmax's output: dx = y (dy - sum(dy y)) */
void KERNEL(softmax_backward)(real *dx, const real *y, const real *dy, int64_t outer, int64_t n, int64_t inner) {
    GG_PARALLEL_FOR(outer * n * inner >= GG_PARALLEL_MIN,
        for (int64_t r = 0; r < outer * inner; r++) {
            int64_t base = line_base(r, n, inner);
            if (inner == 1) {
                const real *yl = y + base, *dyl = dy + base;
                real *dxl = dx + base;
                real s = gg_row_dot(dyl, yl, n);
                for (int64_t j = 0; j < n; j++) dxl[j] = yl[j] * (dyl[j] - s);
                continue;
            }
            real s = 0;
            for (int64_t j = 0; j < n; j++) s += dy[base + j * inner] * y[base + j * inner];
            for (int64_t j = 0; j < n; j++) {
                int64_t k = base + j * inner;
                dx[k] = y[k] * (dy[k] - s);
            }
        }
    );
}

/* dx, y, dy are (outer, n, inner); y is log_softmax's output: dx = dy - exp(y) sum(dy) */
void KERNEL(log_softmax_backward)(real *dx, const real *y, const real *dy, int64_t outer, int64_t n, int64_t inner) {
    GG_PARALLEL_FOR(outer * n * inner >= GG_PARALLEL_MIN,
        for (int64_t r = 0; r < outer * inner; r++) {
            int64_t base = line_base(r, n, inner);
            if (inner == 1) {
                const real *yl = y + base, *dyl = dy + base;
                real *dxl = dx + base;
                real s = gg_row_dot(dyl, NULL, n);
                for (int64_t j = 0; j < n; j++) dxl[j] = dyl[j] - gg_exp(yl[j]) * s;
                continue;
            }
            real s = 0;
            for (int64_t j = 0; j < n; j++) s += dy[base + j * inner];
            for (int64_t j = 0; j < n; j++) {
                int64_t k = base + j * inner;
                dx[k] = dy[k] - gg_exp(y[k]) * s;
            }
        }
    );
}

/* Offset of the o-th row (all axes but the last) of shape[rank] in a view with `stride`. */
static inline int64_t row_offset(int64_t o, int32_t rank, const int64_t *shape, const int64_t *stride) {
    int64_t off = 0;
    for (int32_t d = rank - 2; d >= 0; d--) {
        off += (o % shape[d]) * stride[d];
        o /= shape[d];
    }
    return off;
}

/* out is shape[rank] (contiguous); x is read at offset + sum(index[d] * stride[d]) */
void KERNEL(strided_copy)(real *out, const real *x, int64_t offset, int32_t rank, const int64_t *shape,
                          const int64_t *stride) {
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= shape[d];
    if (total == 0) return;
    if (rank == 0) { out[0] = x[offset]; return; }
    int64_t inner = shape[rank - 1], step = stride[rank - 1], outer = total / inner;
    GG_PARALLEL_FOR(total >= GG_PARALLEL_MIN,
        for (int64_t o = 0; o < outer; o++) {
            const real *src = x + offset + row_offset(o, rank, shape, stride);
            real *dst = out + o * inner;
            if (step == 1) memcpy(dst, src, (size_t)inner * sizeof(real));
            else for (int64_t i = 0; i < inner; i++) dst[i] = src[i * step];
        }
    );
}

/* out has out_n elements, zeroed first; g is shape[rank] (contiguous), written at
 * offset + sum(index[d] * stride[d]) (the views never overlap themselves: slices only) */
void KERNEL(strided_scatter)(real *out, int64_t out_n, const real *g, int64_t offset, int32_t rank,
                             const int64_t *shape, const int64_t *stride) {
    memset(out, 0, (size_t)out_n * sizeof(real));
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= shape[d];
    if (total == 0) return;
    if (rank == 0) { out[offset] = g[0]; return; }
    int64_t inner = shape[rank - 1], step = stride[rank - 1], outer = total / inner;
    GG_PARALLEL_FOR(total >= GG_PARALLEL_MIN,
        for (int64_t o = 0; o < outer; o++) {
            real *dst = out + offset + row_offset(o, rank, shape, stride);
            const real *src = g + o * inner;
            for (int64_t i = 0; i < inner; i++) dst[i * step] = src[i];
        }
    );
}

/* out is (outer, sum of widths); xs[k] is (outer, widths[k]): the blocks side by side */
void KERNEL(concat)(real *out, const real *const *xs, int32_t n_in, int64_t outer, const int64_t *widths) {
    int64_t width = 0;
    for (int32_t k = 0; k < n_in; k++) width += widths[k];
    GG_PARALLEL_FOR(outer * width >= GG_PARALLEL_MIN,
        for (int64_t o = 0; o < outer; o++) {
            real *dst = out + o * width;
            for (int32_t k = 0; k < n_in; k++) {
                if (widths[k]) memcpy(dst, xs[k] + o * widths[k], (size_t)widths[k] * sizeof(real));
                dst += widths[k];
            }
        }
    );
}
