/* conv.c — 2-D convolution lowered to the packed GEMM of gemm.c, pooling, and batch
 * normalisation, forward and backward, compiled through kernels_f32.c / kernels_f64.c.
 *
 * Layouts are PyTorch's and ONNX's: activations NCHW, weights (out, in, kh, kw).
 *
 * Convolution, one image at a time (gg_conv2d_shape gives the geometry; K = c·kh·kw, P = oh·ow):
 *   forward        out[i] (o, P)  = w (o, K) · col[i] (K, P)          col = im2col(x[i])
 *   input grad     dcol (K, P)    = wᵀ (K, o) · dy[i] (o, P)          dx[i] = col2im(dcol)
 *   weight grad    dwᵀ (K, o)    += col[i] (K, P) · dy[i]ᵀ (P, o)     (see conv_dw_share)
 * The column buffer is scratch the caller owns (the program's arena): one (K, P) block per
 * thread, so its size is bounded by the thread count, not the batch. Images are shared out
 * among the threads, each running a serial GEMM with its own slice of the packing workspace;
 * with one image (or one thread) the GEMM itself runs threaded instead. A 1×1 kernel with stride
 * 1 and no padding needs no columns: x[i] is already (K, P). The forward's bias (one per output
 * channel, i.e. per row of out[i]) and ReLU run in the GEMM's epilogue hook on each finished
 * block of out[i] while it is in cache. The weight gradient accumulates per thread in the scratch,
 * then sums the partials in thread order, so results do not depend on timing.
 *
 * Pooling (gg_pool2d_shape): max pooling pads with -inf and a tie goes to the first maximum in
 * row-major window order (as PyTorch); its backward recomputes the arg-max from x. Average
 * pooling divides by kh·kw whatever the padding (PyTorch's count_include_pad=True default).
 *
 * Batch normalisation views x as (n, c, s) (s = h·w for NCHW, 1 for (N, F)): statistics per
 * channel over n and s, accumulated in double, mean first then the centred squares.
 */
#ifndef KERNEL
#error "compile conv.c through kernels_f32.c or kernels_f64.c"
#endif
#include <math.h>
#include <omp.h>
#include <string.h>

#define CONV_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- im2col / col2im ---- */

/* The output columns j in [lo, hi) whose input column j·stride - pad + off lies inside [0, size). */
static inline void conv_valid_range(int64_t out_size, int64_t stride, int64_t pad, int64_t off, int64_t size,
                                    int64_t *lo, int64_t *hi) {
    int64_t first = pad - off;   /* need j·stride >= pad - off */
    int64_t l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int64_t last = size - 1 + pad - off;   /* need j·stride <= size - 1 + pad - off */
    int64_t h = last < 0 ? 0 : last / stride + 1;
    *lo = CONV_MIN(l, out_size);
    *hi = CONV_MIN(h, out_size);
    if (*hi < *lo) *hi = *lo;
}

/* AVX-512, float32: a row segment of up to 16 reals is one masked load and one masked store. Lanes
 * outside the valid range are masked off the load (read as 0, never touched: no read leaves the
 * plane), so a padded row needs no separate zero fill. */
#if defined(__AVX512F__) && defined(GG_REAL_F32)
#include <immintrin.h>
#define CONV_VEC 16
/* lanes [lo, hi) of a 16-lane mask (clipped to 0..16) */
static inline __mmask16 conv_lanes(int64_t lo, int64_t hi) {
    lo = lo < 0 ? 0 : lo;
    hi = hi > 16 ? 16 : hi;
    if (hi <= lo) return 0;
    return (__mmask16)((((uint32_t)1 << hi) - 1u) & ~(((uint32_t)1 << lo) - 1u));
}
#else
#define CONV_VEC 0
#endif

/* col is (c·kh·kw, oh·ow) with row stride ld >= oh·ow, the patches of one image x (c, h, w); the
 * columns past oh·ow are set to 0. Rows are short (ow reals), so the copies are plain loops the
 * compiler vectorises (or masked 16-lane moves), not memcpy calls. */
static void conv_im2col(real *restrict col, const real *restrict x, const gg_conv2d_shape *s, int64_t ld) {
    const int64_t P = s->oh * s->ow, oh = s->oh, ow = s->ow, w = s->w, sw = s->sw;
    if (ld > P)
        for (int64_t r = 0; r < s->c * s->kh * s->kw; r++)
            for (int64_t j = P; j < ld; j++) col[r * ld + j] = 0;
#if CONV_VEC
    if (sw == 1) {
        for (int64_t ch = 0; ch < s->c; ch++)
            for (int64_t ki = 0; ki < s->kh; ki++)
                for (int64_t kj = 0; kj < s->kw; kj++) {
                    real *restrict row = col + ((ch * s->kh + ki) * s->kw + kj) * ld;
                    const real *src = x + ch * s->h * w + (ki * s->dh - s->ph) * w - s->pw + kj * s->dw;
                    int64_t lo, hi, ylo, yhi;   /* the valid output columns, and rows */
                    conv_valid_range(ow, 1, s->pw, kj * s->dw, w, &lo, &hi);
                    conv_valid_range(oh, s->sh, s->ph, ki * s->dh, s->h, &ylo, &yhi);
                    const int64_t step = s->sh * w;
                    for (int64_t ox = 0; ox < ow; ox += CONV_VEC) {
                        const __mmask16 keep = conv_lanes(0, ow - ox), read = conv_lanes(lo - ox, hi - ox);
                        const __m512 zero = _mm512_setzero_ps();
                        real *r = row + ox;
                        int64_t oy = 0;
                        for (; oy < ylo; oy++) _mm512_mask_storeu_ps(r + oy * ow, keep, zero);
                        for (; oy < yhi; oy++)
                            _mm512_mask_storeu_ps(r + oy * ow, keep, _mm512_maskz_loadu_ps(read, src + oy * step + ox));
                        for (; oy < oh; oy++) _mm512_mask_storeu_ps(r + oy * ow, keep, zero);
                    }
                }
        return;
    }
#endif
    for (int64_t ch = 0; ch < s->c; ch++)
        for (int64_t ki = 0; ki < s->kh; ki++)
            for (int64_t kj = 0; kj < s->kw; kj++) {
                real *restrict row = col + ((ch * s->kh + ki) * s->kw + kj) * ld;
                const real *plane = x + ch * s->h * w;
                int64_t lo, hi;
                conv_valid_range(ow, sw, s->pw, kj * s->dw, w, &lo, &hi);
                for (int64_t oy = 0; oy < oh; oy++) {
                    real *restrict r = row + oy * ow;
                    int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                    if (iy < 0 || iy >= s->h) {
                        for (int64_t ox = 0; ox < ow; ox++) r[ox] = 0;
                        continue;
                    }
                    const real *restrict src = plane + iy * w - s->pw + kj * s->dw;
                    for (int64_t ox = 0; ox < lo; ox++) r[ox] = 0;
                    if (sw == 1) {
                        for (int64_t ox = lo; ox < hi; ox++) r[ox] = src[ox];
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) r[ox] = src[ox * sw];
                    }
                    for (int64_t ox = hi; ox < ow; ox++) r[ox] = 0;
                }
            }
}

/* col is (c·kh·kw, oh·ow), the patches of one image x (c, h, w) */
void KERNEL(im2col)(real *restrict col, const real *restrict x, const gg_conv2d_shape *s) {
    conv_im2col(col, x, s, s->oh * s->ow);
}

/* dx is one image (c, h, w) = the sum of col's (c·kh·kw, oh·ow) entries (row stride ld) at the positions
 * im2col read */
static void conv_col2im(real *dx, const real *col, const gg_conv2d_shape *s, int64_t ld) {
    const int64_t P = ld;   /* the rows' stride; the columns used are [0, oh·ow) */
#if CONV_VEC
    if (s->sh == 1 && s->sw == 1 && s->kw <= 16) {
        /* Each 16-wide segment of a dx row is summed in registers over the (ki, kj) taps that reach it,
         * in the same order as the loop below adds them (so the same bits), and stored once: adding
         * into dx row by row would reload what a masked store just wrote (a store-forwarding stall).
         * The lanes each kj reads depend only on the segment, so they are worked out once per segment. */
        const int64_t oh = s->oh, ow = s->ow, w = s->w;
        for (int64_t ix = 0; ix < w; ix += CONV_VEC) {
            __mmask16 read[16];
            int64_t ox[16];
            for (int64_t kj = 0; kj < s->kw; kj++) {
                /* dx column ix + lane comes from output column ox + lane, ox = ix + pw - kj·dw */
                ox[kj] = ix + s->pw - kj * s->dw;
                read[kj] = conv_lanes(-ox[kj], ow - ox[kj]) & conv_lanes(0, w - ix);
            }
            const __mmask16 keep = conv_lanes(0, w - ix);
            for (int64_t ch = 0; ch < s->c; ch++) {
                const real *rows = col + ch * s->kh * s->kw * P;
                real *plane = dx + ch * s->h * w;
                for (int64_t iy = 0; iy < s->h; iy++) {
                    __m512 acc = _mm512_setzero_ps();
                    for (int64_t ki = 0; ki < s->kh; ki++) {
                        int64_t oy = iy + s->ph - ki * s->dh;
                        if (oy < 0 || oy >= oh) continue;
                        const real *src = rows + ki * s->kw * P + oy * ow;
                        for (int64_t kj = 0; kj < s->kw; kj++)
                            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(read[kj], src + kj * P + ox[kj]));
                    }
                    _mm512_mask_storeu_ps(plane + iy * w + ix, keep, acc);
                }
            }
        }
        return;
    }
#endif
    memset(dx, 0, (size_t)(s->c * s->h * s->w) * sizeof(real));
    for (int64_t ch = 0; ch < s->c; ch++)
        for (int64_t ki = 0; ki < s->kh; ki++)
            for (int64_t kj = 0; kj < s->kw; kj++) {
                const real *row = col + ((ch * s->kh + ki) * s->kw + kj) * P;
                real *plane = dx + ch * s->h * s->w;
                int64_t lo, hi;
                conv_valid_range(s->ow, s->sw, s->pw, kj * s->dw, s->w, &lo, &hi);
                for (int64_t oy = 0; oy < s->oh; oy++) {
                    int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                    if (iy < 0 || iy >= s->h) continue;
                    const real *r = row + oy * s->ow;
                    real *dst = plane + iy * s->w - s->pw + kj * s->dw;
                    if (s->sw == 1) {
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox] += r[ox];
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox * s->sw] += r[ox];
                    }
                }
            }
}

/* dx is one image (c, h, w) = the sum of col's (c·kh·kw, oh·ow) entries at the positions im2col read */
void KERNEL(col2im)(real *dx, const real *col, const gg_conv2d_shape *s) {
    conv_col2im(dx, col, s, s->oh * s->ow);
}

/* ---- how the threads share the scratch and the packing workspace ---- */

/* Nonzero when x[i] is its own column matrix (1×1 kernel, stride 1, no padding). */
static inline int conv_is_pointwise(const gg_conv2d_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0;
}

/* Threads for a per-image loop: at most one per image, per scratch block and per workspace slice. */
static int conv_threads(const gg_conv2d_shape *s, int64_t scratch_per_thread, int64_t scratch_elems,
                        int64_t ws_per_thread, int64_t work_bytes) {
    int64_t t = gg_threads();
    if (t > s->n) t = s->n;
    if (scratch_per_thread > 0 && t > scratch_elems / scratch_per_thread) t = scratch_elems / scratch_per_thread;
    if (ws_per_thread > 0 && t > work_bytes / ws_per_thread) t = work_bytes / ws_per_thread;
    if ((double)s->n * s->o * s->c * s->kh * s->kw * s->oh * s->ow < (double)GG_PARALLEL_MIN * 8) t = 1;
    return t < 1 ? 1 : (int)t;
}

/* The epilogue hook of the forward GEMM: c (rows, cols) with row stride ld = P is a block of
 * out[i] starting at output channel row0; adds that channel's bias, then the activation. */
typedef struct {
    const real *bias;
    int32_t act;
    int64_t ld;
} conv_epilogue_ctx;

/* out[j] = act(src[j] + b) over one row (out may be src): the two epilogue hooks' shared body */
static inline void conv_bias_act_row(real *out, const real *src, int64_t n, real b, int32_t act) {
    if (act == GG_ACT_RELU) {
        for (int64_t j = 0; j < n; j++) {
            real v = src[j] + b;
            out[j] = v < 0 ? (real)0 : v;   /* relu's rule: NaN kept */
        }
    } else {
        for (int64_t j = 0; j < n; j++) out[j] = src[j] + b;
    }
}

static void conv_bias_act(void *ctx, void *c, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
    const conv_epilogue_ctx *e = (const conv_epilogue_ctx *)ctx;
    (void)col0;
    for (int64_t i = 0; i < rows; i++) {
        real *ci = (real *)c + i * e->ld;
        conv_bias_act_row(ci, ci, cols, e->bias ? e->bias[row0 + i] : (real)0, e->act);
    }
}

/* ---- one input channel, 3×3 (a first layer on grey images): direct kernels ----
 * With K = 9 the GEMM's k loop is 9 steps per C tile, so loading and storing the tile and the
 * column buffer cost more than the arithmetic (conv1 of mnist_convnet ran at ~35 GFLOP/s). These
 * compute a whole output row (ow ≤ 32: one or two 16-lane vectors) in registers: the 3×3
 * neighbourhood of the row is loaded once (9 vectors per half) and reused by every output channel.
 * Stride 1, dilation 1; the forward takes any padding (the image is copied into a zero-padded
 * plane first), the weight gradient none. AVX-512 float32 only; other cases take the GEMM path. */
#if CONV_VEC
static inline int conv_direct_ok(const gg_conv2d_shape *s) {
    return s->c == 1 && s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->dh == 1 && s->dw == 1 &&
           s->ow <= 2 * CONV_VEC && s->ow >= 1 && s->oh >= 1;
}

/* xv[t][h]: the 9 taps t = ki·3 + kj of output row oy, half h (lanes ox = 16·h + lane), from a plane
 * with row stride ld; lanes at or past ow read as 0 */
#define CONV_LOAD_TAPS(xv, plane, ld, oy, halves, mk)                                                  \
    for (int t_ = 0; t_ < 9; t_++)                                                                   \
        for (int h_ = 0; h_ < (halves); h_++)                                                        \
            (xv)[t_][h_] = _mm512_maskz_loadu_ps((mk)[h_], (plane) + ((oy) + t_ / 3) * (ld) + t_ % 3 + 16 * h_)

/* out rows oy of channels [o0, o0 + OB) of one image: OB·halves accumulators, each summing the 9
 * taps in k order from 0 (as the GEMM's k loop does), then the bias and the ReLU */
static inline __attribute__((always_inline)) void conv_direct_fwd_block(
    float *out, const float *w, const float *bias, int32_t act, int64_t P, int64_t row, int64_t o0, const int OB,
    const int halves, __m512 xv[9][2], const __mmask16 mk[2]) {
    __m512 acc[4][2];
    for (int j = 0; j < OB; j++)
        for (int h = 0; h < halves; h++) acc[j][h] = _mm512_setzero_ps();
    for (int t = 0; t < 9; t++)
        for (int j = 0; j < OB; j++) {
            __m512 wv = _mm512_set1_ps(w[(o0 + j) * 9 + t]);
            for (int h = 0; h < halves; h++) acc[j][h] = _mm512_fmadd_ps(xv[t][h], wv, acc[j][h]);
        }
    for (int j = 0; j < OB; j++) {
        __m512 b = _mm512_set1_ps(bias ? bias[o0 + j] : 0.0f);
        for (int h = 0; h < halves; h++) {
            __m512 v = _mm512_add_ps(acc[j][h], b);
            if (act == GG_ACT_RELU) v = _mm512_max_ps(_mm512_setzero_ps(), v);   /* NaN kept (second operand) */
            _mm512_mask_storeu_ps(out + (o0 + j) * P + row + 16 * h, mk[h], v);
        }
    }
}

/* out (o, oh, ow) of one image from plane (oh + 2, ow + 2 or more; row stride ld) */
static inline __attribute__((always_inline)) void conv_direct_fwd_image(float *out, const float *plane, int64_t ld,
                                                                       const float *w, const float *bias, int32_t act,
                                                                       const gg_conv2d_shape *s, const int halves) {
    const int64_t P = s->oh * s->ow;
    const __mmask16 mk[2] = {conv_lanes(0, s->ow), conv_lanes(0, s->ow - 16)};
    __m512 xv[9][2];
    for (int64_t oy = 0; oy < s->oh; oy++) {
        CONV_LOAD_TAPS(xv, plane, ld, oy, halves, mk);
        int64_t o = 0;
        for (; o + 4 <= s->o; o += 4) conv_direct_fwd_block(out, w, bias, act, P, oy * s->ow, o, 4, halves, xv, mk);
        for (; o < s->o; o++) conv_direct_fwd_block(out, w, bias, act, P, oy * s->ow, o, 1, halves, xv, mk);
    }
}

/* x is (n, 1, h, w), w is (o, 1, 3, 3), out is (n, o, oh, ow); pad is one zero-padded plane per thread
 * ((h + 2·ph)·(w + 2·pw) ≤ 9·oh·ow reals: it fits the column block) */
static void conv_direct_fwd(float *out, const float *x, const float *w, const float *bias, const gg_conv2d_shape *s,
                            int32_t act, float *pad, int nt) {
    const int64_t in_img = s->h * s->w, P = s->oh * s->ow, K = 9 * P;
    const int64_t ph = s->ph, pw = s->pw, hp = s->h + 2 * ph, wp = s->w + 2 * pw;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < s->n; i++) {
        const float *plane = x + i * in_img;
        int64_t ld = s->w;
        if (ph || pw) {
            float *mine = pad + (int64_t)omp_get_thread_num() * K;
            memset(mine, 0, (size_t)(hp * wp) * sizeof(float));
            for (int64_t y = 0; y < s->h; y++) memcpy(mine + (y + ph) * wp + pw, plane + y * s->w, (size_t)s->w * sizeof(float));
            plane = mine;
            ld = wp;
        }
        if (s->ow > 16) conv_direct_fwd_image(out + i * s->o * P, plane, ld, w, bias, act, s, 2);
        else conv_direct_fwd_image(out + i * s->o * P, plane, ld, w, bias, act, s, 1);
    }
}

/* dw rows [o0, o0 + OB) (each 9 taps) = sum over images and output rows of dy row · the tap's x row:
 * OB·9 accumulators of 16 lanes, reduced at the end */
static inline __attribute__((always_inline)) void conv_direct_dw_block(float *dw, const float *x, const float *dy,
                                                                      const gg_conv2d_shape *s, int64_t o0, const int OB,
                                                                      const int halves) {
    const int64_t in_img = s->h * s->w, P = s->oh * s->ow;
    const __mmask16 mk[2] = {conv_lanes(0, s->ow), conv_lanes(0, s->ow - 16)};
    __m512 acc[2][9];
    for (int j = 0; j < OB; j++)
        for (int t = 0; t < 9; t++) acc[j][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < s->n; i++) {
        const float *plane = x + i * in_img, *g = dy + (i * s->o + o0) * P;
        for (int64_t oy = 0; oy < s->oh; oy++)
            for (int h = 0; h < halves; h++) {
                __m512 gv[2];
                for (int j = 0; j < OB; j++) gv[j] = _mm512_maskz_loadu_ps(mk[h], g + j * P + oy * s->ow + 16 * h);
                for (int t = 0; t < 9; t++) {
                    __m512 xv = _mm512_maskz_loadu_ps(mk[h], plane + (oy + t / 3) * s->w + t % 3 + 16 * h);
                    for (int j = 0; j < OB; j++) acc[j][t] = _mm512_fmadd_ps(gv[j], xv, acc[j][t]);
                }
            }
    }
    for (int j = 0; j < OB; j++)
        for (int t = 0; t < 9; t++) dw[(o0 + j) * 9 + t] = _mm512_reduce_add_ps(acc[j][t]);
}

/* x is (n, 1, h, w), dy is (n, o, oh, ow), dw is (o, 1, 3, 3); no padding. The threads share out the
 * output channels (pairs), so each dw entry is one thread's sum in a fixed order: the result does not
 * depend on the thread count. */
static void conv_direct_dw(float *dw, const float *x, const float *dy, const gg_conv2d_shape *s, int nt) {
    const int64_t pairs = (s->o + 1) / 2;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t q = 0; q < pairs; q++) {
        int64_t o0 = 2 * q;
        int two = o0 + 1 < s->o;
        if (s->ow > 16) {
            if (two) conv_direct_dw_block(dw, x, dy, s, o0, 2, 2);
            else conv_direct_dw_block(dw, x, dy, s, o0, 1, 2);
        } else {
            if (two) conv_direct_dw_block(dw, x, dy, s, o0, 2, 1);
            else conv_direct_dw_block(dw, x, dy, s, o0, 1, 1);
        }
    }
}
#undef CONV_LOAD_TAPS
#endif

/* ---- convolution ---- */

/* The row stride of the forward's column buffer (and of its GEMM's output): oh·ow rounded up to whole
 * cache lines when that adds at most 1/8 more columns. The GEMM's rows then start on cache lines and its last column tile is whole: C harness, 1 thread, conv2 of
 * mnist_convnet (o = 64, K = 288, 121 positions): 64×121×288 139 GFLOP/s, 64×128×288 168;
 * in the forward, alternating builds: 5.12 -> 4.80 ms at batch 128. The padding columns are zeros in
 * the columns and never copied out of the GEMM's output. */
static inline int64_t conv_padded_cols(const gg_conv2d_shape *s) {
    const int64_t P = s->oh * s->ow, line = 64 / (int64_t)sizeof(real), padded = (P + line - 1) / line * line;
#if CONV_VEC
    if (conv_direct_ok(s)) return P;   /* no GEMM */
#endif
    return !conv_is_pointwise(s) && (padded - P) * 8 <= P ? padded : P;
}

/* Scratch reals per thread: the forward a column block (K, Pp) and, when Pp > P, its GEMM's (o, Pp)
 * output; the input gradient a column block (K, P); the weight gradient a column block (K, P) and a
 * partial dwᵀ (K, o). (Padding the input gradient's columns too, through a padded copy of dy, measured
 * no faster: 5.53 -> 5.58 ms for conv2 at batch 128.) */
static inline int64_t conv_scratch_per_thread(const gg_conv2d_shape *s, int32_t kind) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow, Pp = conv_padded_cols(s);
    if (conv_is_pointwise(s)) return kind == 2 ? s->o * K : 0;
    if (kind == 0) return K * Pp + (Pp > P ? s->o * Pp : 0);
    return K * P + (kind == 2 ? s->o * K : 0);
}

int64_t KERNEL(conv2d_scratch_elems)(const gg_conv2d_shape *s, int32_t kind, int32_t threads) {
    if (threads < 1) threads = 1;
    return threads * conv_scratch_per_thread(s, kind);
}

int64_t KERNEL(conv2d_workspace_bytes)(const gg_conv2d_shape *s, int32_t kind, int32_t threads) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow, Pp = conv_padded_cols(s);
    if (threads < 1) threads = 1;
    if (kind == 0) return threads * KERNEL(gemm_workspace_bytes)(s->o, Pp, K, 1);
    if (kind == 1) return threads * KERNEL(gemm_workspace_bytes)(K, P, s->o, 1);
    return threads * KERNEL(gemm_workspace_bytes)(K, s->o, P, 1);   /* the weight gradient's dwᵀ products */
}

/* The epilogue hook of the forward GEMM when it writes a padded (o, Pp) block: copies the finished
 * block c (row stride Pp) into out[i] (o, P), its bias and activation applied on the way. */
typedef struct {
    real *out;
    const real *bias;
    int32_t act;
    int64_t P, Pp;
} conv_copy_ctx;

static void conv_copy_bias_act(void *ctx, void *c, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
    const conv_copy_ctx *e = (const conv_copy_ctx *)ctx;
    if (col0 + cols > e->P) cols = e->P - col0;
    for (int64_t i = 0; i < rows; i++) {
        const real *ci = (const real *)c + i * e->Pp;
        real *oi = e->out + (row0 + i) * e->P + col0;
        conv_bias_act_row(oi, ci, cols, e->bias ? e->bias[row0 + i] : (real)0, e->act);
    }
}

/* out[i] (o, P) of image x[i] (c, h, w): mine is this thread's scratch, wk/ws its packing space */
static void conv_fwd_image(real *out, const real *x, const real *w, const real *bias, const gg_conv2d_shape *s,
                           int32_t act, real *mine, void *wk, int64_t ws) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow, Pp = conv_padded_cols(s);
    const real *col = x;
    if (!conv_is_pointwise(s)) {
        conv_im2col(mine, x, s, Pp);
        col = mine;
    }
    if (Pp > P) {
        conv_copy_ctx ctx = {out, bias, act, P, Pp};
        gg_epilogue ep = {NULL, GG_ACT_NONE, conv_copy_bias_act, &ctx};
        KERNEL(gemm)(mine + K * Pp, w, col, s->o, Pp, K, 0, 0, 1.0, 0.0, &ep, wk, ws);
    } else {
        conv_epilogue_ctx ctx = {bias, act, P};
        gg_epilogue ep = {NULL, GG_ACT_NONE, conv_bias_act, &ctx};
        KERNEL(gemm)(out, w, col, s->o, P, K, 0, 0, 1.0, 0.0, bias || act ? &ep : NULL, wk, ws);
    }
}

/* x is (n, c, h, w), w is (o, c, kh, kw), bias is (o,) or NULL, out is (n, o, oh, ow) */
void KERNEL(conv2d)(real *out, const real *x, const real *w, const real *bias, const gg_conv2d_shape *s, int32_t act,
                    real *scratch, int64_t scratch_elems, void *work, int64_t work_bytes) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow, in_img = s->c * s->h * s->w;
    int64_t per_thread = conv_scratch_per_thread(s, 0);
    int64_t ws = KERNEL(gemm_workspace_bytes)(s->o, conv_padded_cols(s), K, 1);
#if CONV_VEC
    if (conv_direct_ok(s)) {
        conv_direct_fwd(out, x, w, bias, s, act, scratch, conv_threads(s, per_thread, scratch_elems, 0, 0));
        return;
    }
#endif
    int nt = conv_threads(s, per_thread, scratch_elems, ws, work_bytes);
    if (nt == 1) {
        for (int64_t i = 0; i < s->n; i++)
            conv_fwd_image(out + i * s->o * P, x + i * in_img, w, bias, s, act, scratch, work, work_bytes);
        return;
    }
#pragma omp parallel num_threads(nt)
    for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads())
        for (int64_t i = t; i < s->n; i += nt)
            conv_fwd_image(out + i * s->o * P, x + i * in_img, w, bias, s, act, scratch + t * per_thread,
                           (char *)work + t * ws, ws);
}

/* dx[i] (c, h, w) from dy[i] (o, P): mine is this thread's scratch, wk/ws its packing space */
static void conv_dx_image(real *dx, const real *dy, const real *w, const gg_conv2d_shape *s, real *mine, void *wk,
                          int64_t ws) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow;
    real *dcol = conv_is_pointwise(s) ? dx : mine;
    KERNEL(gemm)(dcol, w, dy, K, P, s->o, 1, 0, 1.0, 0.0, NULL, wk, ws);
    if (!conv_is_pointwise(s)) KERNEL(col2im)(dx, dcol, s);
}

/* dy is (n, o, oh, ow), w is (o, c, kh, kw), dx is (n, c, h, w) */
void KERNEL(conv2d_input_grad)(real *dx, const real *dy, const real *w, const gg_conv2d_shape *s, real *scratch,
                               int64_t scratch_elems, void *work, int64_t work_bytes) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow, in_img = s->c * s->h * s->w;
    int64_t per_thread = conv_scratch_per_thread(s, 1);
    int64_t ws = KERNEL(gemm_workspace_bytes)(K, P, s->o, 1);
    int nt = conv_threads(s, per_thread, scratch_elems, ws, work_bytes);
    if (nt == 1) {
        for (int64_t i = 0; i < s->n; i++)
            conv_dx_image(dx + i * in_img, dy + i * s->o * P, w, s, scratch, work, work_bytes);
        return;
    }
#pragma omp parallel num_threads(nt)
    for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads())
        for (int64_t i = t; i < s->n; i += nt)
            conv_dx_image(dx + i * in_img, dy + i * s->o * P, w, s, scratch + t * per_thread, (char *)work + t * ws, ws);
}

/* One thread's share of the weight gradient: dwᵀ (K, o) summed over images t, t + nt, ... into acc, as
 * col[i] (K, P) · dy[i]ᵀ (P, o). This way round the GEMM reads the columns in place and packs only
 * dy[i] (o·P reals), and its tiles are o wide (a multiple of 16 here), where dy[i] · col[i]ᵀ would pack
 * the columns and run tiles K wide (K = 9 for a 3×3 kernel on one channel: 9 of 32 columns used).
 * C harness, 1 thread, batch 128: mnist_convnet's conv1 1.96-2.23 -> 1.37-1.46 ms, conv2 7.56-9.68 ->
 * 6.52-7.12 ms, alternating runs. */
static void conv_dw_share(real *acc, const real *x, const real *dy, const gg_conv2d_shape *s, int t, int nt,
                          real *col_scratch, void *work, int64_t work_bytes) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow, in_img = s->c * s->h * s->w;
    int pointwise = conv_is_pointwise(s);
    for (int64_t i = t; i < s->n; i += nt) {
        const real *col = x + i * in_img;
        if (!pointwise) {
            KERNEL(im2col)(col_scratch, col, s);
            col = col_scratch;
        }
        KERNEL(gemm)(acc, col, dy + i * s->o * P, K, s->o, P, 0, 1, 1.0, i == t ? 0.0 : 1.0, NULL, work, work_bytes);
    }
}

/* x is (n, c, h, w), dy is (n, o, oh, ow), dw is (o, c, kh, kw) = sum over images of dy[i] · col[i]ᵀ.
 * Each thread sums its images into its own dwᵀ in the scratch; the partials are then added in thread
 * order while transposing into dw, so the result does not depend on timing. */
void KERNEL(conv2d_weight_grad)(real *dw, const real *x, const real *dy, const gg_conv2d_shape *s, real *scratch,
                                int64_t scratch_elems, void *work, int64_t work_bytes) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow;
    int64_t col_elems = conv_is_pointwise(s) ? 0 : K * P;
    int64_t per_thread = col_elems + s->o * K;
    int64_t ws = KERNEL(gemm_workspace_bytes)(K, s->o, P, 1);
    int nt = conv_threads(s, per_thread, scratch_elems, ws, work_bytes);
    if (s->n == 0) {
        memset(dw, 0, (size_t)(s->o * K) * sizeof(real));
        return;
    }
#if CONV_VEC
    if (conv_direct_ok(s) && s->ph == 0 && s->pw == 0) {
        int threads = gg_threads() < (s->o + 1) / 2 ? gg_threads() : (int)((s->o + 1) / 2);
        if ((double)s->n * s->o * K * P < (double)GG_PARALLEL_MIN * 8) threads = 1;
        conv_direct_dw(dw, x, dy, s, threads);
        return;
    }
#endif
    if (nt == 1) {
        conv_dw_share(scratch + col_elems, x, dy, s, 0, 1, scratch, work, work_bytes);
    } else {
#pragma omp parallel num_threads(nt)
        for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
            real *mine = scratch + t * per_thread;
            conv_dw_share(mine + col_elems, x, dy, s, t, nt, mine, (char *)work + t * ws, ws);
        }
    }
    /* every thread t < nt had an image (nt <= n), so every partial is written */
    for (int64_t o = 0; o < s->o; o++)
        for (int64_t k = 0; k < K; k++) {
            real v = 0;
            for (int t = 0; t < nt; t++) v += scratch[t * per_thread + col_elems + k * s->o + o];
            dw[o * K + k] = v;
        }
}

/* ---- pooling ---- */

/* The arg-max of window (oy, ox) of plane x (h, w): its flat index, or -1 when the window lies in
 * the padding only. A tie goes to the first; NaN wins (it propagates, as in PyTorch). */
static inline int64_t pool_argmax(const real *x, const gg_pool2d_shape *s, int64_t oy, int64_t ox) {
    int64_t best = -1;
    real bv = 0;
    int64_t y0 = oy * s->sh - s->ph, x0 = ox * s->sw - s->pw;
    for (int64_t ki = 0; ki < s->kh; ki++) {
        int64_t iy = y0 + ki;
        if (iy < 0 || iy >= s->h) continue;
        for (int64_t kj = 0; kj < s->kw; kj++) {
            int64_t ix = x0 + kj;
            if (ix < 0 || ix >= s->w) continue;
            real v = x[iy * s->w + ix];
            if (best < 0 || v > bv || (v != v && bv == bv)) {
                best = iy * s->w + ix;
                bv = v;
            }
        }
    }
    return best;
}

/* Pooling windows that tile the image (kernel == stride, no padding: MaxPool2D(2)'s case) need no
 * bounds checks; these loops are written for them and inlined with the 2×2 sizes as constants. The
 * comparison is the generic one (first maximum, NaN wins), so both paths give the same result. */
static inline int64_t pool_tiled_argmax(const real *x, int64_t w, int64_t kh, int64_t kw, int64_t y0, int64_t x0) {
    int64_t best = y0 * w + x0;
    real bv = x[best];
    for (int64_t ki = 0; ki < kh; ki++)
        for (int64_t kj = 0; kj < kw; kj++) {
            int64_t at = (y0 + ki) * w + x0 + kj;
            real v = x[at];
            if (v > bv || (v != v && bv == bv)) {
                best = at;
                bv = v;
            }
        }
    return best;
}

static inline int pool_is_tiled(const gg_pool2d_shape *s) {
    return s->kh == s->sh && s->kw == s->sw && s->ph == 0 && s->pw == 0;
}

static inline void max_pool_tiled_plane(real *op, const real *xp, const gg_pool2d_shape *s, int64_t kh, int64_t kw) {
    for (int64_t oy = 0; oy < s->oh; oy++)
        for (int64_t ox = 0; ox < s->ow; ox++) op[oy * s->ow + ox] = xp[pool_tiled_argmax(xp, s->w, kh, kw, oy * kh, ox * kw)];
}

static inline void max_pool_tiled_backward_plane(real *dp, const real *xp, const real *gp, const gg_pool2d_shape *s,
                                                 int64_t kh, int64_t kw, int positive) {
    /* every covered element is written (0 or its window's gradient); rows and columns past the last
     * window are zeroed */
    for (int64_t oy = 0; oy < s->oh; oy++) {
        for (int64_t ox = 0; ox < s->ow; ox++) {
            int64_t a = pool_tiled_argmax(xp, s->w, kh, kw, oy * kh, ox * kw);
            for (int64_t ki = 0; ki < kh; ki++)
                for (int64_t kj = 0; kj < kw; kj++) dp[(oy * kh + ki) * s->w + ox * kw + kj] = 0;
            dp[a] = !positive || !(xp[a] <= 0) ? gp[oy * s->ow + ox] : (real)0;
        }
        for (int64_t ki = 0; ki < kh; ki++)
            for (int64_t ix = s->ow * kw; ix < s->w; ix++) dp[(oy * kh + ki) * s->w + ix] = 0;
    }
    for (int64_t iy = s->oh * kh; iy < s->h; iy++)
        for (int64_t ix = 0; ix < s->w; ix++) dp[iy * s->w + ix] = 0;
}

/* b replaces the best value a when greater, or NaN over a number (the generic rule, branch-free) */
#define POOL_WINS(b, a) ((b) > (a) || ((b) != (b) && (a) == (a)))

/* AVX-512, float32: 16 windows at a time. The 32 reals of a row pair's segment are split into their
 * even and odd columns by two-source permutes, compared as the scalar rule does (NaN included), and
 * the backward's four outputs are interleaved back the same way. */
#if defined(__AVX512F__) && defined(GG_REAL_F32)
#include <immintrin.h>
#define POOL_VEC 16
static inline __mmask16 pool_wins16(__m512 b, __m512 m) {
    return _mm512_cmp_ps_mask(b, m, _CMP_GT_OQ) |
           (_mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q));
}
static inline __mmask16 pool_is_max16(__m512 v, __m512 m) {
    return _mm512_cmp_ps_mask(v, m, _CMP_EQ_OQ) |
           (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q));
}
/* lanes [0, n) of a 16-lane mask (n clipped to 0..16) */
static inline __mmask16 pool_lanes(int64_t n) { return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1u); }
/* the window maxima of `count` (1..16) windows starting at column 2·ox of rows r0, r1 (masked loads
 * past them: nothing outside the rows is read); their four values in a..d */
static inline __m512 pool_max16(const float *r0, const float *r1, int64_t count, __m512 *a, __m512 *b, __m512 *c,
                                __m512 *d) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __mmask16 k0 = pool_lanes(2 * count), k1 = pool_lanes(2 * count - 16);
    __m512 p0 = _mm512_maskz_loadu_ps(k0, r0), p1 = _mm512_maskz_loadu_ps(k1, r0 + 16);
    __m512 q0 = _mm512_maskz_loadu_ps(k0, r1), q1 = _mm512_maskz_loadu_ps(k1, r1 + 16);
    *a = _mm512_permutex2var_ps(p0, even, p1);
    *b = _mm512_permutex2var_ps(p0, odd, p1);
    *c = _mm512_permutex2var_ps(q0, even, q1);
    *d = _mm512_permutex2var_ps(q0, odd, q1);
    __m512 m = *a;
    m = _mm512_mask_blend_ps(pool_wins16(*b, m), m, *b);
    m = _mm512_mask_blend_ps(pool_wins16(*c, m), m, *c);
    return _mm512_mask_blend_ps(pool_wins16(*d, m), m, *d);
}
/* `count` windows' backward: their gradients v placed at each arg-max, rows d0 and d1 from column 2·ox */
static inline void pool_place16(float *d0, float *d1, int64_t count, __m512 a, __m512 b, __m512 c, __m512 m,
                                __m512 v) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    __mmask16 ea = pool_is_max16(a, m), eb = pool_is_max16(b, m) & ~ea;
    __mmask16 ec = pool_is_max16(c, m) & ~(ea | eb), ed = ~(ea | eb | ec);
    __m512 va = _mm512_maskz_mov_ps(ea, v), vb = _mm512_maskz_mov_ps(eb, v);
    __m512 vc = _mm512_maskz_mov_ps(ec, v), vd = _mm512_maskz_mov_ps(ed, v);
    __mmask16 k0 = pool_lanes(2 * count), k1 = pool_lanes(2 * count - 16);
    _mm512_mask_storeu_ps(d0, k0, _mm512_permutex2var_ps(va, lo, vb));
    _mm512_mask_storeu_ps(d0 + 16, k1, _mm512_permutex2var_ps(va, hi, vb));
    _mm512_mask_storeu_ps(d1, k0, _mm512_permutex2var_ps(vc, lo, vd));
    _mm512_mask_storeu_ps(d1 + 16, k1, _mm512_permutex2var_ps(vc, hi, vd));
}
#else
#define POOL_VEC 0
#endif

/* The 2×2 windows of one plane, branch-free so the loops vectorise. */
static void max_pool_2x2_plane(real *restrict op, const real *restrict xp, const gg_pool2d_shape *s) {
    const int64_t oh = s->oh, ow = s->ow, w = s->w;
    for (int64_t oy = 0; oy < oh; oy++) {
        const real *restrict r0 = xp + 2 * oy * w, *restrict r1 = r0 + w;
        real *restrict o = op + oy * ow;
        int64_t ox = 0;
#if POOL_VEC
        for (; ox < ow; ox += POOL_VEC) {
            __m512 a, b, c, d;
            int64_t count = ow - ox < POOL_VEC ? ow - ox : POOL_VEC;
            _mm512_mask_storeu_ps(o + ox, pool_lanes(count), pool_max16(r0 + 2 * ox, r1 + 2 * ox, count, &a, &b, &c, &d));
        }
#endif
        for (; ox < ow; ox++) {
            real m = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
            m = POOL_WINS(b, m) ? b : m;
            m = POOL_WINS(c, m) ? c : m;
            m = POOL_WINS(d, m) ? d : m;
            o[ox] = m;
        }
    }
}

/* v attains the window's maximum m (NaN matches NaN: the first NaN is the arg-max) */
#define POOL_IS_MAX(v, m) ((v) == (m) || ((v) != (v) && (m) != (m)))

/* The 2×2 windows' backward: the arg-max is the first element (row-major) equal to the window's
 * maximum, which is what the generic rule picks; selects only, so the loop vectorises.
 * positive: the gradient passes only where the maximum is not <= 0 (a ReLU's backward folded in: NaN passes). */
static inline void max_pool_2x2_backward_plane(real *restrict dp, const real *restrict xp, const real *restrict gp,
                                               const gg_pool2d_shape *s, const int positive) {
    const int64_t oh = s->oh, ow = s->ow, w = s->w;
    for (int64_t oy = 0; oy < oh; oy++) {
        const real *restrict r0 = xp + 2 * oy * w, *restrict r1 = r0 + w;
        real *restrict d0 = dp + 2 * oy * w, *restrict d1 = d0 + w;
        const real *restrict g = gp + oy * ow;
        int64_t ox = 0;
#if POOL_VEC
        for (; ox < ow; ox += POOL_VEC) {
            __m512 a, b, c, d;
            int64_t count = ow - ox < POOL_VEC ? ow - ox : POOL_VEC;
            __m512 m = pool_max16(r0 + 2 * ox, r1 + 2 * ox, count, &a, &b, &c, &d);
            __m512 v = _mm512_maskz_loadu_ps(pool_lanes(count), g + ox);
            if (positive) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
            pool_place16(d0 + 2 * ox, d1 + 2 * ox, count, a, b, c, m, v);
        }
#endif
        for (; ox < ow; ox++) {
            real a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
            real m = a;
            m = POOL_WINS(b, m) ? b : m;
            m = POOL_WINS(c, m) ? c : m;
            m = POOL_WINS(d, m) ? d : m;
            real zero = 0, v = !positive || !(m <= 0) ? g[ox] : zero;
            real va = POOL_IS_MAX(a, m) ? v : zero;
            real left = POOL_IS_MAX(a, m) ? zero : v;               /* the gradient not yet placed */
            real vb = POOL_IS_MAX(b, m) ? left : zero;
            left = POOL_IS_MAX(b, m) ? zero : left;
            real vc = POOL_IS_MAX(c, m) ? left : zero;
            left = POOL_IS_MAX(c, m) ? zero : left;
            d0[2 * ox] = va;
            d0[2 * ox + 1] = vb;
            d1[2 * ox] = vc;
            d1[2 * ox + 1] = left;
        }
        if (w > 2 * ow) {   /* an odd width: the last column is in no window */
            d0[w - 1] = 0;
            d1[w - 1] = 0;
        }
    }
    if (s->h > 2 * oh) memset(dp + (s->h - 1) * w, 0, (size_t)w * sizeof(real));
}

/* x is (n, c, h, w), out is (n, c, oh, ow): the maximum of each window */
void KERNEL(max_pool2d)(real *out, const real *x, const gg_pool2d_shape *s) {
    int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = s->oh * s->ow;
    int tiled = pool_is_tiled(s), two = tiled && s->kh == 2 && s->kw == 2;
    GG_PARALLEL_FOR(planes * out_plane * s->kh * s->kw >= GG_PARALLEL_MIN,
        for (int64_t p = 0; p < planes; p++) {
            const real *xp = x + p * in_plane;
            real *op = out + p * out_plane;
            if (two) {
                max_pool_2x2_plane(op, xp, s);
            } else if (tiled) {
                max_pool_tiled_plane(op, xp, s, s->kh, s->kw);
            } else {
                for (int64_t oy = 0; oy < s->oh; oy++)
                    for (int64_t ox = 0; ox < s->ow; ox++) {
                        int64_t a = pool_argmax(xp, s, oy, ox);
                        op[oy * s->ow + ox] = a < 0 ? (real)-INFINITY : xp[a];
                    }
            }
        });
}

/* dx is (n, c, h, w) = each dy (n, c, oh, ow) added at its window's arg-max in x (positive: only where
 * that maximum is not <= 0, i.e. followed by the backward of the ReLU whose output x is) */
void KERNEL(max_pool2d_backward)(real *dx, const real *x, const real *dy, const gg_pool2d_shape *s, int32_t positive) {
    int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = s->oh * s->ow;
    int tiled = pool_is_tiled(s), two = tiled && s->kh == 2 && s->kw == 2;
    GG_PARALLEL_FOR(planes * out_plane * s->kh * s->kw >= GG_PARALLEL_MIN,
        for (int64_t p = 0; p < planes; p++) {
            const real *xp = x + p * in_plane, *gp = dy + p * out_plane;
            real *dp = dx + p * in_plane;
            if (two && positive) {
                max_pool_2x2_backward_plane(dp, xp, gp, s, 1);
            } else if (two) {
                max_pool_2x2_backward_plane(dp, xp, gp, s, 0);
            } else if (tiled) {
                max_pool_tiled_backward_plane(dp, xp, gp, s, s->kh, s->kw, positive);
            } else {
                memset(dp, 0, (size_t)in_plane * sizeof(real));
                for (int64_t oy = 0; oy < s->oh; oy++)
                    for (int64_t ox = 0; ox < s->ow; ox++) {
                        int64_t a = pool_argmax(xp, s, oy, ox);
                        if (a >= 0 && (!positive || !(xp[a] <= 0))) dp[a] += gp[oy * s->ow + ox];
                    }
            }
        });
}

/* out is (n, c, oh, ow) = g (n, c, h, w) read at each window's arg-max in x (the adjoint of the backward;
 * positive as there) */
void KERNEL(max_pool2d_gather)(real *out, const real *x, const real *g, const gg_pool2d_shape *s, int32_t positive) {
    int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = s->oh * s->ow;
    GG_PARALLEL_FOR(planes * out_plane * s->kh * s->kw >= GG_PARALLEL_MIN,
        for (int64_t p = 0; p < planes; p++) {
            const real *xp = x + p * in_plane, *gp = g + p * in_plane;
            real *op = out + p * out_plane;
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    int64_t a = pool_argmax(xp, s, oy, ox);
                    op[oy * s->ow + ox] = a < 0 || (positive && xp[a] <= 0) ? (real)0 : gp[a];
                }
        });
}

/* x is (n, c, h, w), out is (n, c, oh, ow): each window's sum over kh·kw (padding counts as zeros) */
void KERNEL(avg_pool2d)(real *out, const real *x, const gg_pool2d_shape *s) {
    int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = s->oh * s->ow;
    real scale = (real)(1.0 / (double)(s->kh * s->kw));
    GG_PARALLEL_FOR(planes * out_plane * s->kh * s->kw >= GG_PARALLEL_MIN,
        for (int64_t p = 0; p < planes; p++) {
            const real *xp = x + p * in_plane;
            real *op = out + p * out_plane;
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    real acc = 0;
                    for (int64_t ki = 0; ki < s->kh; ki++) {
                        int64_t iy = oy * s->sh - s->ph + ki;
                        if (iy < 0 || iy >= s->h) continue;
                        for (int64_t kj = 0; kj < s->kw; kj++) {
                            int64_t ix = ox * s->sw - s->pw + kj;
                            if (ix >= 0 && ix < s->w) acc += xp[iy * s->w + ix];
                        }
                    }
                    op[oy * s->ow + ox] = acc * scale;
                }
        });
}

/* dx is (n, c, h, w) = each dy (n, c, oh, ow) spread evenly over its window */
void KERNEL(avg_pool2d_backward)(real *dx, const real *dy, const gg_pool2d_shape *s) {
    int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = s->oh * s->ow;
    real scale = (real)(1.0 / (double)(s->kh * s->kw));
    GG_PARALLEL_FOR(planes * out_plane * s->kh * s->kw >= GG_PARALLEL_MIN,
        for (int64_t p = 0; p < planes; p++) {
            const real *gp = dy + p * out_plane;
            real *dp = dx + p * in_plane;
            memset(dp, 0, (size_t)in_plane * sizeof(real));
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    real v = gp[oy * s->ow + ox] * scale;
                    for (int64_t ki = 0; ki < s->kh; ki++) {
                        int64_t iy = oy * s->sh - s->ph + ki;
                        if (iy < 0 || iy >= s->h) continue;
                        for (int64_t kj = 0; kj < s->kw; kj++) {
                            int64_t ix = ox * s->sw - s->pw + kj;
                            if (ix >= 0 && ix < s->w) dp[iy * s->w + ix] += v;
                        }
                    }
                }
        });
}

/* ---- batch normalisation: x is (n, c, s) ---- */

/* stats is (2, c): the batch mean and the biased variance of each channel */
void KERNEL(batch_norm_stats)(real *stats, const real *x, int64_t n, int64_t c, int64_t s) {
    GG_PARALLEL_FOR(n * c * s >= GG_PARALLEL_MIN,
        for (int64_t ch = 0; ch < c; ch++) {
            double sum = 0, sq = 0;
            for (int64_t i = 0; i < n; i++) {
                const real *row = x + (i * c + ch) * s;
                for (int64_t j = 0; j < s; j++) sum += row[j];
            }
            double count = (double)(n * s), mean = count > 0 ? sum / count : 0.0;
            for (int64_t i = 0; i < n; i++) {
                const real *row = x + (i * c + ch) * s;
                for (int64_t j = 0; j < s; j++) {
                    double d = row[j] - mean;
                    sq += d * d;
                }
            }
            stats[ch] = (real)mean;
            stats[c + ch] = (real)(count > 0 ? sq / count : 0.0);
        });
}

/* y is (n, c, s) = (x - mean) / sqrt(var + eps) · gamma + beta, mean, var, gamma, beta (c,) */
void KERNEL(batch_norm)(real *y, const real *x, const real *mean, const real *var, const real *gamma,
                        const real *beta, int64_t n, int64_t c, int64_t s, double eps) {
    GG_PARALLEL_FOR(n * c * s >= GG_PARALLEL_MIN,
        for (int64_t r = 0; r < n * c; r++) {
            int64_t ch = r % c;
            real scale = (real)((double)gamma[ch] / sqrt((double)var[ch] + eps));
            real shift = (real)((double)beta[ch] - (double)mean[ch] * (double)scale);
            const real *xr = x + r * s;
            real *yr = y + r * s;
            for (int64_t j = 0; j < s; j++) yr[j] = xr[j] * scale + shift;
        });
}

/* running_mean, running_var (c,) move towards the batch's stats (2, c) by momentum; the variance
 * enters unbiased (· count/(count-1)), as in PyTorch */
void KERNEL(batch_norm_running_update)(real *running_mean, real *running_var, const real *stats, int64_t c,
                                       int64_t count, double momentum) {
    double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
    for (int64_t ch = 0; ch < c; ch++) {
        running_mean[ch] = (real)((1.0 - momentum) * running_mean[ch] + momentum * stats[ch]);
        running_var[ch] = (real)((1.0 - momentum) * running_var[ch] + momentum * unbias * stats[c + ch]);
    }
}

/* Per channel ch: the sums of dy and of dy·x̂ (x̂ = (x - mean)·inv_std) over n and s, in double. */
static inline void bn_channel_sums(double *dsum, double *dxhat, const real *x, const real *stats, const real *dy,
                                   int64_t n, int64_t c, int64_t s, double eps, int64_t ch) {
    double mean = stats[ch], inv = 1.0 / sqrt((double)stats[c + ch] + eps);
    double a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        const real *xr = x + (i * c + ch) * s, *gr = dy + (i * c + ch) * s;
        for (int64_t j = 0; j < s; j++) {
            a += gr[j];
            b += gr[j] * ((xr[j] - mean) * inv);
        }
    }
    *dsum = a;
    *dxhat = b;
}

/* dx is (n, c, s) = gamma·inv_std·(dy - mean(dy) - x̂·mean(dy·x̂)): the gradient through the batch
 * statistics included; x, dy (n, c, s), gamma (c,), stats (2, c) */
void KERNEL(batch_norm_backward)(real *dx, const real *x, const real *gamma, const real *stats, const real *dy,
                                 int64_t n, int64_t c, int64_t s, double eps) {
    double count = (double)(n * s);
    GG_PARALLEL_FOR(n * c * s >= GG_PARALLEL_MIN,
        for (int64_t ch = 0; ch < c; ch++) {
            double dsum, dxhat;
            bn_channel_sums(&dsum, &dxhat, x, stats, dy, n, c, s, eps, ch);
            double mean = stats[ch], inv = 1.0 / sqrt((double)stats[c + ch] + eps);
            double k = (double)gamma[ch] * inv, mdy = dsum / count, mdx = dxhat / count;
            for (int64_t i = 0; i < n; i++) {
                const real *xr = x + (i * c + ch) * s, *gr = dy + (i * c + ch) * s;
                real *dr = dx + (i * c + ch) * s;
                for (int64_t j = 0; j < s; j++) {
                    double xhat = (xr[j] - mean) * inv;
                    dr[j] = (real)(k * (gr[j] - mdy - xhat * mdx));
                }
            }
        });
}

/* dparams is (2, c): sum(dy·x̂) (gamma's gradient) and sum(dy) (beta's); x, dy (n, c, s), stats (2, c) */
void KERNEL(batch_norm_param_grad)(real *dparams, const real *x, const real *stats, const real *dy, int64_t n,
                                   int64_t c, int64_t s, double eps) {
    GG_PARALLEL_FOR(n * c * s >= GG_PARALLEL_MIN,
        for (int64_t ch = 0; ch < c; ch++) {
            double dsum, dxhat;
            bn_channel_sums(&dsum, &dxhat, x, stats, dy, n, c, s, eps, ch);
            dparams[ch] = (real)dxhat;
            dparams[c + ch] = (real)dsum;
        });
}

#undef POOL_WINS
#undef POOL_VEC
#undef POOL_IS_MAX
#undef CONV_MIN
#undef CONV_VEC
