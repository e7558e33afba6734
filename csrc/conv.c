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

/* ---- Winograd F(2×2, 3×3): 3×3 kernels, stride 1, dilation 1 (F(4×4) below takes the small planes) ----
 * Each 2×2 block of outputs ("tile") of one output channel is Aᵀ [Σ_c (G w Gᵀ) ⊙ (Bᵀ d B)] A, d the tile's
 * 4×4 input patch: 16 multiplies per tile and input channel instead of 36, and the sum over the
 * channels is, for each of the 16 positions ξ of the 4×4 transform, one GEMM
 *     forward         M_ξ (o, T)  = U_ξ (o, c) · V_ξ (c, T)        U = G w Gᵀ, V = Bᵀ d B, T tiles
 * Its two backward passes are that computation's exact adjoint (the transforms transposed):
 *     input grad      dV_ξ (c, T) = U_ξᵀ (c, o) · dM_ξ (o, T)     dM = A dY Aᵀ, dd = B dV Bᵀ
 *     weight grad     dU_ξ (o, c) += dM_ξ (o, T) · V_ξᵀ (T, c)      dw = Gᵀ dU G
 * so all three run 16/36 of the im2col GEMM's multiply-adds (16·36 against 9·121 per channel pair for
 * 11×11 outputs: the 6×6 tiles cover 12×12). The transforms are additions only (G's halves are
 * exact), so the rounding is that of a few more additions: float32 results differ from the im2col
 * GEMM's in the last bits. The images are processed in chunks of WG_TILES tiles (the GEMMs' N;
 * 288 = 8 images of 36 tiles), each thread its own contiguous range of images; the transformed
 * weights U (16, o, c) are made once per call at the start of the scratch. Tiles run past the
 * output's last row and column when oh or ow is odd: those outputs are dropped in the forward and
 * their dy is read as 0 in the backward. */
#ifndef WG_TILES
#define WG_TILES 288
#endif
#define WG_MAX_SIDE 64   /* oh, ow at most this: a padded plane and a tile row stay small */
/* The 16 blocks of V, M and dM sit WG_SKEW reals further apart than their size: at conv2's sizes the
 * blocks are multiples of 4 KiB, so the transforms' 16 streams (one per ξ) all fell into one L1 set
 * (C harness, conv2 at batch 128: the dy transform alone took half of the weight gradient). */
#define WG_SKEW 16

static inline int conv_winograd_ok(const gg_conv2d_shape *s) {
    return s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->dh == 1 && s->dw == 1 && s->c >= 8 &&
           s->o >= 8 && s->oh <= WG_MAX_SIDE && s->ow <= WG_MAX_SIDE;
}

/* F(4×4, 3×3) (below) takes the AVX-512 float32 case when every plane is at most 12×12: 36 multiplies per
 * 4×4 outputs instead of F(2×2)'s 16 per 2×2, so the GEMMs do 0.56× the work; everything else keeps
 * F(2×2). WG4_TILES is its chunk (16 images of mnist_convnet's conv2, 9 tiles each). */
#ifndef WG4_TILES
#define WG4_TILES 144
#endif
static inline int wg4_ok(const gg_conv2d_shape *s) {
    return CONV_VEC && s->oh <= 12 && s->ow <= 12;
}

/* m×m outputs per tile (2 or 4), pos = (m + 2)² transform positions ξ; th×tw tiles per image; the
 * zero-padded input plane is hp×wp (covers every tile's (m + 2)² patch); a chunk is `imgs` images, T =
 * imgs·tiles columns */
typedef struct {
    int64_t m, pos, th, tw, tiles, hp, wp, imgs, T;
} wg_geo;

static inline wg_geo wg_geometry(const gg_conv2d_shape *s) {
    wg_geo g;
    g.m = wg4_ok(s) ? 4 : 2;
    g.pos = (g.m + 2) * (g.m + 2);
    g.th = (s->oh + g.m - 1) / g.m;
    g.tw = (s->ow + g.m - 1) / g.m;
    g.tiles = g.th * g.tw;
    g.hp = g.m * g.th + 2;
    g.wp = g.m * g.tw + 2;
    int64_t chunk = g.m == 4 ? WG4_TILES : WG_TILES;
    g.imgs = chunk / g.tiles > 1 ? chunk / g.tiles : 1;
    g.T = g.imgs * g.tiles;
    return g;
}

/* Scratch: U (pos, o, c) once, then per thread V (pos, c, T), M or dM (pos, o, T), dU (pos, o, c), a padded
 * plane (hp, wp) and four tile rows (4, T) of F(2×2)'s output transform. */
static inline int64_t wg_shared(const gg_conv2d_shape *s) { return wg_geometry(s).pos * s->o * s->c; }
static inline int64_t wg_per_thread(const gg_conv2d_shape *s) {
    wg_geo g = wg_geometry(s);
    return g.pos * (g.T * (s->c + s->o) + 2 * WG_SKEW) + g.pos * s->o * s->c + g.hp * g.wp + 4 * g.tiles;
}

/* U[ξ][o][c] = (G w[o][c] Gᵀ)[ξ], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1] */
static void wg_weights(real *U, const real *w, const gg_conv2d_shape *s) {
    const int64_t oc = s->o * s->c;
    for (int64_t q = 0; q < oc; q++) {
        const real *g = w + q * 9;
        real t[4][3];   /* G g: rows */
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[j];
            t[1][j] = (real)0.5 * (g[j] + g[3 + j] + g[6 + j]);
            t[2][j] = (real)0.5 * (g[j] - g[3 + j] + g[6 + j]);
            t[3][j] = g[6 + j];
        }
        for (int i = 0; i < 4; i++) {
            U[(4 * i + 0) * oc + q] = t[i][0];
            U[(4 * i + 1) * oc + q] = (real)0.5 * (t[i][0] + t[i][1] + t[i][2]);
            U[(4 * i + 2) * oc + q] = (real)0.5 * (t[i][0] - t[i][1] + t[i][2]);
            U[(4 * i + 3) * oc + q] = t[i][2];
        }
    }
}

/* dw[o][c] = Gᵀ dU[·][o][c] G, the adjoint of wg_weights */
static void wg_weights_adjoint(real *dw, const real *dU, const gg_conv2d_shape *s) {
    const int64_t oc = s->o * s->c;
    for (int64_t q = 0; q < oc; q++) {
        real t[4][3];   /* dU G: each row's 4 entries to 3 */
        for (int i = 0; i < 4; i++) {
            real u0 = dU[(4 * i) * oc + q], u1 = dU[(4 * i + 1) * oc + q], u2 = dU[(4 * i + 2) * oc + q],
                 u3 = dU[(4 * i + 3) * oc + q];
            t[i][0] = u0 + (real)0.5 * (u1 + u2);
            t[i][1] = (real)0.5 * (u1 - u2);
            t[i][2] = (real)0.5 * (u1 + u2) + u3;
        }
        real *g = dw + q * 9;
        for (int j = 0; j < 3; j++) {
            g[j] = t[0][j] + (real)0.5 * (t[1][j] + t[2][j]);
            g[3 + j] = (real)0.5 * (t[1][j] - t[2][j]);
            g[6 + j] = (real)0.5 * (t[1][j] + t[2][j]) + t[3][j];
        }
    }
}

/* V[ξ][ch][t0 + tile] = (Bᵀ d B)[ξ] for every tile of image x (c, h, w), Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
 * 0 1 0 -1]. plane (hp, wp) is zero outside where the image is copied in (the caller zeroes it once). */
static void wg_input(real *restrict V, int64_t T, int64_t t0, const real *restrict x, const gg_conv2d_shape *s,
                     const wg_geo *g, real *restrict plane) {
    const int64_t wp = g->wp, cT = s->c * T + WG_SKEW;
    for (int64_t ch = 0; ch < s->c; ch++) {
        for (int64_t y = 0; y < s->h; y++) {
            real *dst = plane + (y + s->ph) * wp + s->pw;
            const real *src = x + (ch * s->h + y) * s->w;
            for (int64_t j = 0; j < s->w; j++) dst[j] = src[j];
        }
        real *v = V + ch * T + t0;
        for (int64_t ty = 0; ty < g->th; ty++) {
            const real *r0 = plane + 2 * ty * wp, *r1 = r0 + wp, *r2 = r1 + wp, *r3 = r2 + wp;
            real rows[4][2 * WG_MAX_SIDE + 4];   /* Bᵀ d down the columns: the four combined rows */
            for (int64_t j = 0; j < wp; j++) {
                rows[0][j] = r0[j] - r2[j];
                rows[1][j] = r1[j] + r2[j];
                rows[2][j] = r2[j] - r1[j];
                rows[3][j] = r1[j] - r3[j];
            }
            for (int i = 0; i < 4; i++) {
                const real *r = rows[i];
                real *v0 = v + (4 * i) * cT + ty * g->tw, *v1 = v0 + cT, *v2 = v1 + cT, *v3 = v2 + cT;
                for (int64_t tx = 0; tx < g->tw; tx++) {
                    real a = r[2 * tx], b = r[2 * tx + 1], c = r[2 * tx + 2], d = r[2 * tx + 3];
                    v0[tx] = a - c;
                    v1[tx] = b + c;
                    v2[tx] = c - b;
                    v3[tx] = b - d;
                }
            }
        }
    }
}

/* out (o, oh, ow) of one image = Aᵀ M A per tile, Aᵀ = [1 1 1 0; 0 1 -1 -1], then the bias and the
 * activation; M[ξ][o][t0 + tile]. ys holds the four outputs of every tile (4, tiles). */
static void wg_output(real *restrict out, const real *restrict M, int64_t T, int64_t t0, const real *bias, int32_t act,
                      const gg_conv2d_shape *s, const wg_geo *g, real *restrict ys) {
    const int64_t oT = s->o * T + WG_SKEW, tiles = g->tiles;
    real *y00 = ys, *y01 = ys + tiles, *y10 = y01 + tiles, *y11 = y10 + tiles;
    for (int64_t o = 0; o < s->o; o++) {
        const real *m = M + o * T + t0;
        for (int64_t t = 0; t < tiles; t++) {
            real s0[4], s1[4];
            for (int j = 0; j < 4; j++) {
                real a = m[j * oT + t], b = m[(4 + j) * oT + t], c = m[(8 + j) * oT + t], d = m[(12 + j) * oT + t];
                s0[j] = a + b + c;
                s1[j] = b - c - d;
            }
            y00[t] = s0[0] + s0[1] + s0[2];
            y01[t] = s0[1] - s0[2] - s0[3];
            y10[t] = s1[0] + s1[1] + s1[2];
            y11[t] = s1[1] - s1[2] - s1[3];
        }
        const real b = bias ? bias[o] : (real)0;
        for (int64_t oy = 0; oy < s->oh; oy++) {
            const real *ya = (oy & 1 ? y10 : y00) + (oy / 2) * g->tw, *yb = (oy & 1 ? y11 : y01) + (oy / 2) * g->tw;
            real *row = out + (o * s->oh + oy) * s->ow;
            for (int64_t ox = 0; ox < s->ow; ox++) {
                real v = (ox & 1 ? yb : ya)[ox / 2] + b;
                row[ox] = act == GG_ACT_RELU && v < 0 ? (real)0 : v;   /* relu's rule: NaN kept */
            }
        }
    }
}

/* dM[ξ][o][t0 + tile] = (A dY Aᵀ)[ξ] for every tile of dy (o, oh, ow), the adjoint of wg_output
 * (outputs past oh, ow read as 0) */
static void wg_dy(real *restrict dM, int64_t T, int64_t t0, const real *restrict dy, const gg_conv2d_shape *s,
                  const wg_geo *g) {
    const int64_t oT = s->o * T + WG_SKEW, tw = g->tw;
    for (int64_t o = 0; o < s->o; o++) {
        real *m = dM + o * T + t0;
        for (int64_t ty = 0; ty < g->th; ty++) {
            const real *ra = dy + (o * s->oh + 2 * ty) * s->ow;
            const real *rb = 2 * ty + 1 < s->oh ? ra + s->ow : NULL;
            for (int64_t tx = 0; tx < tw; tx++) {
                int64_t x0 = 2 * tx;
                int second = x0 + 1 < s->ow;
                real p0 = ra[x0], q0 = second ? ra[x0 + 1] : 0;
                real p1 = rb ? rb[x0] : 0, q1 = rb && second ? rb[x0 + 1] : 0;
                /* rows of A dY: (p0, q0), (p0 + p1, q0 + q1), (p0 - p1, q0 - q1), (-p1, -q1); each row (u, v)
                 * then goes to (u, u + v, u - v, -v) */
                real u[4] = {p0, p0 + p1, p0 - p1, -p1}, v[4] = {q0, q0 + q1, q0 - q1, -q1};
                real *mt = m + ty * tw + tx;
                for (int i = 0; i < 4; i++) {
                    mt[(4 * i) * oT] = u[i];
                    mt[(4 * i + 1) * oT] = u[i] + v[i];
                    mt[(4 * i + 2) * oT] = u[i] - v[i];
                    mt[(4 * i + 3) * oT] = -v[i];
                }
            }
        }
    }
}

/* dx (c, h, w) of one image = the sum over its tiles of B dV Bᵀ placed at each tile's patch (the adjoint
 * of wg_input); plane (hp, wp) is the accumulator */
static void wg_dx(real *restrict dx, const real *restrict dV, int64_t T, int64_t t0, const gg_conv2d_shape *s,
                  const wg_geo *g, real *restrict plane) {
    const int64_t wp = g->wp, cT = s->c * T + WG_SKEW;
    for (int64_t ch = 0; ch < s->c; ch++) {
        memset(plane, 0, (size_t)(g->hp * wp) * sizeof(real));
        const real *v = dV + ch * T + t0;
        for (int64_t ty = 0; ty < g->th; ty++) {
            real *r0 = plane + 2 * ty * wp, *r1 = r0 + wp, *r2 = r1 + wp, *r3 = r2 + wp;
            for (int i = 0; i < 4; i++) {
                /* row i of dV Bᵀ for each tile, overlap-added along the tile row */
                real row[2 * WG_MAX_SIDE + 4];
                const real *v0 = v + (4 * i) * cT + ty * g->tw, *v1 = v0 + cT, *v2 = v1 + cT, *v3 = v2 + cT;
                for (int64_t j = 0; j < wp; j++) row[j] = 0;
                for (int64_t tx = 0; tx < g->tw; tx++) {
                    real a = v0[tx], b = v1[tx], c = v2[tx], d = v3[tx];
                    row[2 * tx] += a;
                    row[2 * tx + 1] += b - c + d;
                    row[2 * tx + 2] += c + b - a;
                    row[2 * tx + 3] -= d;
                }
                /* B's column i: dd row 0 gets row 0, row 1 gets rows 1 - 2 + 3, row 2 gets -0 + 1 + 2,
                 * row 3 gets -3 */
                for (int64_t j = 0; j < wp; j++) {
                    real e = row[j];
                    if (i == 0) {
                        r0[j] += e;
                        r2[j] -= e;
                    } else if (i == 1) {
                        r1[j] += e;
                        r2[j] += e;
                    } else if (i == 2) {
                        r1[j] -= e;
                        r2[j] += e;
                    } else {
                        r1[j] += e;
                        r3[j] -= e;
                    }
                }
            }
        }
        for (int64_t y = 0; y < s->h; y++) {
            const real *src = plane + (y + s->ph) * wp + s->pw;
            real *dst = dx + (ch * s->h + y) * s->w;
            for (int64_t j = 0; j < s->w; j++) dst[j] = src[j];
        }
    }
}

/* AVX-512 float32, planes up to 16 wide and high (oh, ow ≤ 14): one vector per row of the padded
 * plane, so each transform works on a whole tile row at a time (tw ≤ 7 tiles in the lanes); the
 * even and odd columns a tile row needs are permutes of that vector. The same additions in the same
 * order as the scalar loops above, so the same bits. The V and dM rows are written with whole
 * 16-lane stores (masked stores are slow on Zen 4: the dy transform took 16% of the C harness's
 * time with them): the lanes past a tile row's tw tiles land on the next tile row's, written after
 * (the last tile row of an image spills into the next image's first, also written after); only the
 * tile rows within 16 columns of the end of the chunk's row are stored masked. */
#if CONV_VEC
static inline int wg_vec_ok(const wg_geo *g) { return g->wp <= 16 && g->hp <= 16; }

/* lanes k -> lane 2k + off of a row vector (lanes past 15 read 0) */
static inline __m512 wg_cols(__m512 row, int off) {
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                                         _mm512_set1_epi32(off));
    const __mmask16 in = _mm512_cmplt_epi32_mask(idx, _mm512_set1_epi32(16));
    return _mm512_maskz_permutexvar_ps(in, idx, row);
}
/* -v (the sign flipped, as the scalar negation: -0 for 0) */
static inline __m512 wg_neg(__m512 v) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)));
}
/* row lanes 2k = e[k], 2k + 1 = o[k] (k < 8) */
static inline __m512 wg_interleave(__m512 e, __m512 o) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    return _mm512_permutex2var_ps(e, lo, o);
}

/* a tile row of V or dM: a whole vector, or only the tiles when the 16 lanes would run past the
 * chunk's row (the last tile rows of its last image) */
static inline void wg_store_row(float *p, __m512 v, __mmask16 tiles, int last) {
    if (last) _mm512_mask_storeu_ps(p, tiles, v);
    else _mm512_storeu_ps(p, v);
}

/* V for the k images of a chunk from x[0..k) */
static void wg_input16(float *restrict V, int64_t T, int64_t k, const float *restrict x, const gg_conv2d_shape *s,
                       const wg_geo *g) {
    const int64_t cT = s->c * T + WG_SKEW;
    const __mmask16 cols = conv_lanes(s->pw, s->pw + s->w);
    __m512 R[16];
    const __mmask16 tiles = conv_lanes(0, g->tw);
    for (int64_t img = 0; img < k; img++)
      for (int64_t ch = 0; ch < s->c; ch++) {
        const int64_t t0 = img * g->tiles;
        const float *plane = x + (img * s->c + ch) * s->h * s->w - s->pw;   /* lane j of padded row y: image column j - pw */
        for (int64_t y = 0; y < g->hp; y++) {
            int64_t iy = y - s->ph;
            R[y] = iy >= 0 && iy < s->h ? _mm512_maskz_loadu_ps(cols, plane + iy * s->w) : _mm512_setzero_ps();
        }
        float *v = V + ch * T + t0;
        for (int64_t ty = 0; ty < g->th; ty++) {
            const __m512 r0 = R[2 * ty], r1 = R[2 * ty + 1], r2 = R[2 * ty + 2], r3 = R[2 * ty + 3];
            const __m512 rows[4] = {_mm512_sub_ps(r0, r2), _mm512_add_ps(r1, r2), _mm512_sub_ps(r2, r1),
                                    _mm512_sub_ps(r1, r3)};
            for (int i = 0; i < 4; i++) {
                __m512 a = wg_cols(rows[i], 0), b = wg_cols(rows[i], 1), c = wg_cols(rows[i], 2), d = wg_cols(rows[i], 3);
                float *v0 = v + (4 * i) * cT + ty * g->tw;
                const int last = t0 + ty * g->tw + 16 > T;
                wg_store_row(v0, _mm512_sub_ps(a, c), tiles, last);
                wg_store_row(v0 + cT, _mm512_add_ps(b, c), tiles, last);
                wg_store_row(v0 + 2 * cT, _mm512_sub_ps(c, b), tiles, last);
                wg_store_row(v0 + 3 * cT, _mm512_sub_ps(b, d), tiles, last);
            }
        }
    }
}

static void wg_output16(float *restrict out, const float *restrict M, int64_t T, int64_t t0, const float *bias,
                        int32_t act, const gg_conv2d_shape *s, const wg_geo *g) {
    const int64_t oT = s->o * T + WG_SKEW;
    const __mmask16 tiles = conv_lanes(0, g->tw), cols = conv_lanes(0, s->ow);
    for (int64_t o = 0; o < s->o; o++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
        for (int64_t ty = 0; ty < g->th; ty++) {
            const float *m = M + o * T + t0 + ty * g->tw;
            __m512 s0[4], s1[4];
            for (int j = 0; j < 4; j++) {
                __m512 a = _mm512_maskz_loadu_ps(tiles, m + j * oT), bb = _mm512_maskz_loadu_ps(tiles, m + (4 + j) * oT);
                __m512 c = _mm512_maskz_loadu_ps(tiles, m + (8 + j) * oT), d = _mm512_maskz_loadu_ps(tiles, m + (12 + j) * oT);
                s0[j] = _mm512_add_ps(_mm512_add_ps(a, bb), c);
                s1[j] = _mm512_sub_ps(_mm512_sub_ps(bb, c), d);
            }
            __m512 y[2][2] = {{_mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]), _mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3])},
                              {_mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]), _mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3])}};
            for (int a = 0; a < 2 && 2 * ty + a < s->oh; a++) {
                __m512 v = _mm512_add_ps(wg_interleave(y[a][0], y[a][1]), b);
                if (act == GG_ACT_RELU) v = _mm512_max_ps(_mm512_setzero_ps(), v);   /* NaN kept (second operand) */
                _mm512_mask_storeu_ps(out + (o * s->oh + 2 * ty + a) * s->ow, cols, v);
            }
        }
    }
}

/* dM for the k images of a chunk from dy[0..k) */
static void wg_dy16(float *restrict dM, int64_t T, int64_t k, const float *restrict dy, const gg_conv2d_shape *s,
                    const wg_geo *g) {
    const int64_t oT = s->o * T + WG_SKEW;
    const __mmask16 cols = conv_lanes(0, s->ow);
    const __mmask16 tiles = conv_lanes(0, g->tw);
    for (int64_t img = 0; img < k; img++)
      for (int64_t o = 0; o < s->o; o++) {
        float *m = dM + o * T + img * g->tiles;
        const float *plane = dy + (img * s->o + o) * s->oh * s->ow;
        for (int64_t ty = 0; ty < g->th; ty++) {
            __m512 ra = _mm512_maskz_loadu_ps(cols, plane + 2 * ty * s->ow);
            __m512 rb = 2 * ty + 1 < s->oh ? _mm512_maskz_loadu_ps(cols, plane + (2 * ty + 1) * s->ow) : _mm512_setzero_ps();
            __m512 p0 = wg_cols(ra, 0), q0 = wg_cols(ra, 1), p1 = wg_cols(rb, 0), q1 = wg_cols(rb, 1);
            __m512 u[4] = {p0, _mm512_add_ps(p0, p1), _mm512_sub_ps(p0, p1), wg_neg(p1)};
            __m512 v[4] = {q0, _mm512_add_ps(q0, q1), _mm512_sub_ps(q0, q1), wg_neg(q1)};
            float *mt = m + ty * g->tw;
            const int last = img * g->tiles + ty * g->tw + 16 > T;
            for (int i = 0; i < 4; i++) {
                wg_store_row(mt + (4 * i) * oT, u[i], tiles, last);
                wg_store_row(mt + (4 * i + 1) * oT, _mm512_add_ps(u[i], v[i]), tiles, last);
                wg_store_row(mt + (4 * i + 2) * oT, _mm512_sub_ps(u[i], v[i]), tiles, last);
                wg_store_row(mt + (4 * i + 3) * oT, wg_neg(v[i]), tiles, last);
            }
        }
    }
}

static void wg_dx16(float *restrict dx, const float *restrict dV, int64_t T, int64_t t0, const gg_conv2d_shape *s,
                    const wg_geo *g) {
    const int64_t cT = s->c * T + WG_SKEW;
    const __mmask16 tiles = conv_lanes(0, g->tw), cols = conv_lanes(s->pw, s->pw + s->w);
    /* lane k <- lane k - 1, lane 0 <- 0: the previous tile's last two columns land on this one's first two */
    const __m512i prev = _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
    __m512 acc[16];
    for (int64_t ch = 0; ch < s->c; ch++) {
        for (int64_t y = 0; y < g->hp; y++) acc[y] = _mm512_setzero_ps();
        const float *v = dV + ch * T + t0;
        for (int64_t ty = 0; ty < g->th; ty++) {
            for (int i = 0; i < 4; i++) {
                const float *v0 = v + (4 * i) * cT + ty * g->tw;
                __m512 a = _mm512_maskz_loadu_ps(tiles, v0), b = _mm512_maskz_loadu_ps(tiles, v0 + cT);
                __m512 c = _mm512_maskz_loadu_ps(tiles, v0 + 2 * cT), d = _mm512_maskz_loadu_ps(tiles, v0 + 3 * cT);
                /* columns 2tx..2tx + 3 of tile tx get a, b - c + d, c + b - a, -d; overlap-added along the row,
                 * in the scalar loop's order: even column 2k = a[k] + (c + b - a)[k - 1], odd 2k + 1 =
                 * (b - c + d)[k] - d[k - 1] */
                __m512 bcd = _mm512_add_ps(_mm512_sub_ps(b, c), d);
                __m512 e1 = _mm512_maskz_permutexvar_ps(0xfffe, prev, _mm512_sub_ps(_mm512_add_ps(c, b), a));
                __m512 o1 = _mm512_maskz_permutexvar_ps(0xfffe, prev, d);
                __m512 row = wg_interleave(_mm512_add_ps(e1, a), _mm512_sub_ps(bcd, o1));
                __m512 *r = acc + 2 * ty;
                if (i == 0) {
                    r[0] = _mm512_add_ps(r[0], row);
                    r[2] = _mm512_sub_ps(r[2], row);
                } else if (i == 1) {
                    r[1] = _mm512_add_ps(r[1], row);
                    r[2] = _mm512_add_ps(r[2], row);
                } else if (i == 2) {
                    r[1] = _mm512_sub_ps(r[1], row);
                    r[2] = _mm512_add_ps(r[2], row);
                } else {
                    r[1] = _mm512_add_ps(r[1], row);
                    r[3] = _mm512_sub_ps(r[3], row);
                }
            }
        }
        float *plane = dx + ch * s->h * s->w - s->pw;
        for (int64_t y = 0; y < s->h; y++) _mm512_mask_storeu_ps(plane + y * s->w, cols, acc[y + s->ph]);
    }
}
#endif

/* ---- Winograd F(4×4, 3×3), AVX-512 float32, planes up to 12×12 ----
 * The same three GEMM passes as F(2×2) with 6×6 transforms (Lavin and Gray's matrices):
 *     Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *     G  = [¼ 0 0; -⅙ -⅙ -⅙; -⅙ ⅙ -⅙; 1/24 1/12 ⅙; 1/24 -1/12 ⅙; 0 0 1]
 *     Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * ξ = 6i + j is row i, column j of a 6×6 transform. G's fractions are not exact in binary, and the
 * transforms multiply by up to 8, so float32 results carry a few more rounding errors than F(2×2)'s
 * (test_conv checks them against float64 loops).
 * The data transforms put one image's tiles in the lanes of a vector (lane ty·tw + tx, at most 9 tiles):
 * every tile's 36 values are then 36 whole vectors, and the transforms are plain vector arithmetic.
 * Going between a tile-major vector and the plane's rows (one vector per row, lanes = columns) takes
 * two permutes per vector. */
#if CONV_VEC
static const double WG4_G[6][3] = {{0.25, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};

/* lane k -> 9k: the first taps of 16 consecutive 3×3 kernels */
static inline __m512i wg4_kernels(void) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(9));
}

/* U[ξ][o][c] = (G w[o][c] Gᵀ)[ξ], 16 pairs (o, c) at a time: their 3×3 kernels gathered into nine
 * vectors, G applied down and across, each ξ a contiguous store */
static __attribute__((noinline)) void wg4_weights(float *U, const float *w, const gg_conv2d_shape *s) {
    const int64_t oc = s->o * s->c;
    const __m512i nine = wg4_kernels();
    for (int64_t q = 0; q < oc; q += 16) {
        const __mmask16 in = conv_lanes(0, oc - q);
        __m512 g[9], t[6][3];
        for (int k = 0; k < 9; k++)
            g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, nine, w + q * 9 + k, 4);
        for (int i = 0; i < 6; i++)
            for (int k = 0; k < 3; k++)
                t[i][k] = _mm512_fmadd_ps(_mm512_set1_ps((float)WG4_G[i][0]), g[k],
                                          _mm512_fmadd_ps(_mm512_set1_ps((float)WG4_G[i][1]), g[3 + k],
                                                          _mm512_mul_ps(_mm512_set1_ps((float)WG4_G[i][2]), g[6 + k])));
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                __m512 u = _mm512_fmadd_ps(t[i][0], _mm512_set1_ps((float)WG4_G[j][0]),
                                           _mm512_fmadd_ps(t[i][1], _mm512_set1_ps((float)WG4_G[j][1]),
                                                           _mm512_mul_ps(t[i][2], _mm512_set1_ps((float)WG4_G[j][2]))));
                _mm512_mask_storeu_ps(U + (6 * i + j) * oc + q, in, u);
            }
    }
}

/* dw[o][c] = Gᵀ dU[·][o][c] G, the adjoint of wg4_weights: 16 pairs at a time, scattered back */
static __attribute__((noinline)) void wg4_weights_adjoint(float *dw, const float *dU, const gg_conv2d_shape *s) {
    const int64_t oc = s->o * s->c;
    const __m512i nine = wg4_kernels();
    for (int64_t q = 0; q < oc; q += 16) {
        const __mmask16 in = conv_lanes(0, oc - q);
        __m512 t[6][3];   /* dU G */
        for (int i = 0; i < 6; i++) {
            for (int k = 0; k < 3; k++) t[i][k] = _mm512_setzero_ps();
            for (int j = 0; j < 6; j++) {
                __m512 u = _mm512_maskz_loadu_ps(in, dU + (6 * i + j) * oc + q);
                for (int k = 0; k < 3; k++) t[i][k] = _mm512_fmadd_ps(u, _mm512_set1_ps((float)WG4_G[j][k]), t[i][k]);
            }
        }
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 3; k++) {
                __m512 v = _mm512_setzero_ps();
                for (int i = 0; i < 6; i++) v = _mm512_fmadd_ps(_mm512_set1_ps((float)WG4_G[i][r]), t[i][k], v);
                _mm512_mask_i32scatter_ps(dw + q * 9 + 3 * r + k, in, nine, v, 4);
            }
    }
}

#define WG4_C(v) _mm512_set1_ps(v)
/* t = Bᵀ r over six vectors */
static inline void wg4_bt(const __m512 r[6], __m512 t[6]) {
    __m512 r34 = _mm512_add_ps(r[3], r[4]), r12 = _mm512_add_ps(r[1], r[2]);
    __m512 d43 = _mm512_sub_ps(r[4], r[3]), d12 = _mm512_sub_ps(r[1], r[2]);
    __m512 d42 = _mm512_sub_ps(r[4], r[2]), d31 = _mm512_sub_ps(r[3], r[1]);
    t[0] = _mm512_fmadd_ps(WG4_C(4.0f), r[0], _mm512_fmadd_ps(WG4_C(-5.0f), r[2], r[4]));
    t[1] = _mm512_fnmadd_ps(WG4_C(4.0f), r12, r34);
    t[2] = _mm512_fmadd_ps(WG4_C(4.0f), d12, d43);
    t[3] = _mm512_fmadd_ps(WG4_C(2.0f), d31, d42);
    t[4] = _mm512_fnmadd_ps(WG4_C(2.0f), d31, d42);
    t[5] = _mm512_fmadd_ps(WG4_C(4.0f), r[1], _mm512_fmadd_ps(WG4_C(-5.0f), r[3], r[5]));
}
/* y = B x over six vectors (the adjoint of wg4_bt) */
static inline void wg4_b(const __m512 x[6], __m512 y[6]) {
    __m512 p = _mm512_add_ps(x[1], x[2]), q = _mm512_sub_ps(x[2], x[1]);
    __m512 u = _mm512_add_ps(x[3], x[4]), v = _mm512_sub_ps(x[4], x[3]);
    y[0] = _mm512_mul_ps(WG4_C(4.0f), x[0]);
    y[1] = _mm512_fmadd_ps(WG4_C(4.0f), _mm512_add_ps(q, x[5]), _mm512_add_ps(v, v));
    y[2] = _mm512_fnmsub_ps(WG4_C(5.0f), x[0], _mm512_fmadd_ps(WG4_C(4.0f), p, u));
    y[3] = _mm512_fnmsub_ps(WG4_C(5.0f), x[5], _mm512_fmadd_ps(WG4_C(2.0f), v, q));
    y[4] = _mm512_add_ps(_mm512_add_ps(x[0], p), u);
    y[5] = x[5];
}
/* s = Aᵀ m: six vectors to four */
static inline void wg4_at(const __m512 m[6], __m512 s[4]) {
    __m512 p = _mm512_add_ps(m[1], m[2]), q = _mm512_sub_ps(m[1], m[2]);
    __m512 u = _mm512_add_ps(m[3], m[4]), v = _mm512_sub_ps(m[3], m[4]);
    s[0] = _mm512_add_ps(_mm512_add_ps(m[0], p), u);
    s[1] = _mm512_fmadd_ps(WG4_C(2.0f), v, q);
    s[2] = _mm512_fmadd_ps(WG4_C(4.0f), u, p);
    s[3] = _mm512_fmadd_ps(WG4_C(8.0f), v, _mm512_add_ps(q, m[5]));
}
/* e = A d: four vectors to six (the adjoint of wg4_at) */
static inline void wg4_a(const __m512 d[4], __m512 e[6]) {
    __m512 d02 = _mm512_add_ps(d[0], d[2]), d13 = _mm512_add_ps(d[1], d[3]);
    __m512 g = _mm512_fmadd_ps(WG4_C(4.0f), d[2], d[0]), h = _mm512_fmadd_ps(WG4_C(4.0f), d[3], d[1]);
    e[0] = d[0];
    e[1] = _mm512_add_ps(d02, d13);
    e[2] = _mm512_sub_ps(d02, d13);
    e[3] = _mm512_fmadd_ps(WG4_C(2.0f), h, g);
    e[4] = _mm512_fnmadd_ps(WG4_C(2.0f), h, g);
    e[5] = d[3];
}

/* The permutes between an image's rows and its tile-major vectors, for one geometry:
 *   gather[b]/gather3[b]: lane ty·tw + tx <- row[4ty + ·][4tx + b] (rows of tile rows 0, 1 by a
 *     two-source permute, tile row 2 merged in over the lanes `third`)
 *   place[ty]: lane X (a column) <- lane ty·tw + X/4 of the first or second source (X odd: second),
 *     so the pairs (v0, v1) and (v2, v3) of a tile row's four column vectors give the columns X % 4 = 0, 1
 *     and 2, 3; shift[ty] does the same for columns X = 4tx + 4 + {0, 1} (a tile's columns 4 and 5) */
typedef struct {
    __m512i gather[6], gather3[6], place[3], shift[3];
    __mmask16 third, tile_cols, low2, shifted;
} wg4_perm;

static inline wg4_perm wg4_perms(const wg_geo *g) {
    wg4_perm p;
    int32_t idx[16];
    for (int b = 0; b < 6; b++) {
        for (int l = 0; l < 16; l++) {
            int64_t ty = l / g->tw, tx = l % g->tw;
            idx[l] = ty == 0 ? (int32_t)(4 * tx + b) : ty == 1 ? (int32_t)(16 + 4 * tx + b) : 0;
        }
        p.gather[b] = _mm512_loadu_si512(idx);
        for (int l = 0; l < 16; l++) idx[l] = (int32_t)(4 * (l % g->tw) + b);
        p.gather3[b] = _mm512_loadu_si512(idx);
    }
    p.third = conv_lanes(2 * g->tw, 3 * g->tw);
    for (int ty = 0; ty < 3; ty++) {
        for (int X = 0; X < 16; X++) idx[X] = (int32_t)((X & 1 ? 16 : 0) + ty * g->tw + (X / 4 < g->tw ? X / 4 : 0));
        p.place[ty] = _mm512_loadu_si512(idx);
        for (int X = 0; X < 16; X++)
            idx[X] = (int32_t)((X & 1 ? 16 : 0) + ty * g->tw + (X >= 4 && (X - 4) / 4 < g->tw ? (X - 4) / 4 : 0));
        p.shift[ty] = _mm512_loadu_si512(idx);
    }
    p.tile_cols = conv_lanes(0, 4 * g->tw);
    p.low2 = 0x3333;
    p.shifted = 0;
    for (int X = 4; X < 16; X++)
        if ((X & 3) < 2 && (X - 4) / 4 < g->tw) p.shifted |= (__mmask16)(1u << X);
    return p;
}

/* the tile-major vector of column b from the rows of tile rows 0, 1, 2 (absent ones zero) */
static inline __m512 wg4_gather(__m512 r0, __m512 r1, __m512 r2, const wg4_perm *p, int b) {
    __m512 v = _mm512_permutex2var_ps(r0, p->gather[b], r1);
    return _mm512_mask_permutexvar_ps(v, p->third, p->gather3[b], r2);
}
/* tile row ty's row of columns from its four column vectors (lane X <- column X % 4 of tile X / 4) */
static inline __m512 wg4_place(const __m512 c[4], const wg4_perm *p, int ty) {
    __m512 lo = _mm512_permutex2var_ps(c[0], p->place[ty], c[1]), hi = _mm512_permutex2var_ps(c[2], p->place[ty], c[3]);
    return _mm512_mask_blend_ps((__mmask16)~p->low2, lo, hi);
}

/* V for the k images of a chunk from x[0..k) */
static __attribute__((noinline)) void wg4_input(float *restrict V, int64_t T, int64_t k, const float *restrict x,
                                                const gg_conv2d_shape *s, const wg_geo *g, const wg4_perm *p) {
    const int64_t C = s->c, H = s->h, W = s->w, PH = s->ph, HP = g->hp, TH = g->th, tiles = g->tiles;
    const int64_t cT = C * T + WG_SKEW;
    const __mmask16 cols = conv_lanes(s->pw, s->pw + W), lanes = conv_lanes(0, tiles);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t ch = 0; ch < C; ch++)
        for (int64_t img = 0; img < k; img++) {   /* images inner: each of V's rows is written front to back */
            const int64_t t0 = img * tiles;
            const float *plane = x + (img * C + ch) * H * W - s->pw;   /* lane j: image column j - pw */
            __m512 R[14];
            for (int64_t y = 0; y < HP; y++) {
                int64_t iy = y - PH;
                R[y] = iy >= 0 && iy < H ? _mm512_maskz_loadu_ps(cols, plane + iy * W) : zero;
            }
            __m512 rows[3][6];   /* Bᵀ d down the columns, per tile row */
            for (int64_t ty = 0; ty < 3; ty++) {
                if (ty < TH) wg4_bt(R + 4 * ty, rows[ty]);
                else
                    for (int i = 0; i < 6; i++) rows[ty][i] = zero;
            }
            float *v = V + ch * T + t0;
            const int last = t0 + 16 > T;
            for (int i = 0; i < 6; i++) {
                __m512 e[6], t[6];
                for (int b = 0; b < 6; b++) e[b] = wg4_gather(rows[0][i], rows[1][i], rows[2][i], p, b);
                wg4_bt(e, t);
                for (int j = 0; j < 6; j++, v += cT) wg_store_row(v, t[j], lanes, last);
            }
        }
}

/* out (o, oh, ow) of the k images of a chunk = Aᵀ M A per tile, then the bias and the activation */
static __attribute__((noinline)) void wg4_output(float *restrict out, const float *restrict M, int64_t T, int64_t k,
                                                 const float *bias, int32_t act, const gg_conv2d_shape *s, const wg_geo *g,
                                                 const wg4_perm *p) {
    const int64_t O = s->o, OH = s->oh, OW = s->ow, TH = g->th, tiles = g->tiles;
    const int64_t oT = O * T + WG_SKEW, out_img = O * OH * OW;
    const __mmask16 lanes = conv_lanes(0, tiles), cols = conv_lanes(0, OW);
    const int relu = act == GG_ACT_RELU;
    for (int64_t o = 0; o < O; o++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
        for (int64_t img = 0; img < k; img++) {   /* images inner: each of M's rows is read front to back */
            __m512 sr[4][6];   /* Aᵀ M: row r of column j */
            for (int j = 0; j < 6; j++) {
                const float *q = M + o * T + img * tiles + j * oT;
                __m512 col[6], r4[4];
                for (int i = 0; i < 6; i++, q += 6 * oT) col[i] = _mm512_maskz_loadu_ps(lanes, q);
                wg4_at(col, r4);
                for (int r = 0; r < 4; r++) sr[r][j] = r4[r];
            }
            float *dst = out + img * out_img + o * OH * OW;
            for (int r = 0; r < 4; r++) {
                __m512 y[4];   /* output (r, c) of every tile */
                wg4_at(sr[r], y);
                for (int64_t ty = 0; ty < TH && 4 * ty + r < OH; ty++) {
                    __m512 v = _mm512_add_ps(wg4_place(y, p, (int)ty), b);
                    if (relu) v = _mm512_max_ps(_mm512_setzero_ps(), v);   /* NaN kept (second operand) */
                    _mm512_mask_storeu_ps(dst + (4 * ty + r) * OW, cols, v);
                }
            }
        }
    }
}

/* dM for the k images of a chunk from dy[0..k): A dY Aᵀ per tile (outputs past oh, ow read as 0) */
static __attribute__((noinline)) void wg4_dy(float *restrict dM, int64_t T, int64_t k, const float *restrict dy,
                                             const gg_conv2d_shape *s, const wg_geo *g, const wg4_perm *p) {
    const int64_t O = s->o, OH = s->oh, OW = s->ow, tiles = g->tiles;
    const int64_t oT = O * T + WG_SKEW;
    const __mmask16 cols = conv_lanes(0, OW), lanes = conv_lanes(0, tiles);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t o = 0; o < O; o++)
        for (int64_t img = 0; img < k; img++) {   /* images inner: each of dM's rows is written front to back */
            const int64_t t0 = img * tiles;
            const float *plane = dy + (img * O + o) * OH * OW;
            __m512 D[12];
            for (int64_t y = 0; y < 12; y++) D[y] = y < OH ? _mm512_maskz_loadu_ps(cols, plane + y * OW) : zero;
            __m512 e[6][4];   /* A dY: row i of column c */
            for (int c = 0; c < 4; c++) {
                __m512 d[4], t[6];
                for (int r = 0; r < 4; r++) d[r] = wg4_gather(D[r], D[4 + r], D[8 + r], p, c);
                wg4_a(d, t);
                for (int i = 0; i < 6; i++) e[i][c] = t[i];
            }
            float *mt = dM + o * T + t0;
            const int last = t0 + 16 > T;
            for (int i = 0; i < 6; i++) {
                __m512 t[6];
                wg4_a(e[i], t);
                for (int j = 0; j < 6; j++, mt += oT) wg_store_row(mt, t[j], lanes, last);
            }
        }
}

/* dx (c, h, w) of the k images of a chunk = the sum over each image's tiles of B dV Bᵀ placed at the
 * tile's 6×6 patch */
static __attribute__((noinline)) void wg4_dx(float *restrict dx, const float *restrict dV, int64_t T, int64_t k,
                                             const gg_conv2d_shape *s, const wg_geo *g, const wg4_perm *p) {
    const int64_t C = s->c, H = s->h, W = s->w, PH = s->ph, HP = g->hp, TH = g->th, tiles = g->tiles;
    const int64_t cT = C * T + WG_SKEW, in_img = C * H * W;
    const __mmask16 lanes = conv_lanes(0, tiles), cols = conv_lanes(s->pw, s->pw + W);
    const __mmask16 low = p->low2 & p->tile_cols, high = (__mmask16)~p->low2 & p->tile_cols;
    for (int64_t ch = 0; ch < C; ch++)
        for (int64_t img = 0; img < k; img++) {   /* images inner: each of dV's rows is read front to back */
            __m512 z[6][6];   /* B dV: row a of column j */
            for (int j = 0; j < 6; j++) {
                const float *q = dV + ch * T + img * tiles + j * cT;
                __m512 col[6], t[6];
                for (int i = 0; i < 6; i++, q += 6 * cT) col[i] = _mm512_maskz_loadu_ps(lanes, q);
                wg4_b(col, t);
                for (int a = 0; a < 6; a++) z[a][j] = t[a];
            }
            __m512 acc[14];   /* the padded plane's rows */
            for (int64_t y = 0; y < HP; y++) acc[y] = _mm512_setzero_ps();
            for (int a = 0; a < 6; a++) {
                __m512 d[6];   /* entry (a, b) of every tile's B dV Bᵀ */
                wg4_b(z[a], d);
                for (int64_t ty = 0; ty < TH; ty++) {
                    /* columns 4tx + 0..3 of every tile, then its columns 4 and 5 (on the next tile's 0 and 1) */
                    __m512 lo = _mm512_maskz_permutex2var_ps(low, d[0], p->place[ty], d[1]);
                    lo = _mm512_mask_mov_ps(lo, high, _mm512_permutex2var_ps(d[2], p->place[ty], d[3]));
                    __m512 hi = _mm512_maskz_permutex2var_ps(p->shifted, d[4], p->shift[ty], d[5]);
                    acc[4 * ty + a] = _mm512_add_ps(acc[4 * ty + a], _mm512_add_ps(lo, hi));
                }
            }
            float *plane = dx + img * in_img + ch * H * W - s->pw;
            for (int64_t y = 0; y < H; y++) _mm512_mask_storeu_ps(plane + y * W, cols, acc[y + PH]);
        }
}
#undef WG4_C
#endif

/* This thread's range of images [i0, i1), chunk by chunk. kind 0: out = the forward; 1: dx from dy;
 * 2: dU (16, o, c) = the sum of dM_ξ · V_ξᵀ over the range (not written when the range is empty). */
static void wg_range(int kind, real *out, const real *x, const real *dy, const real *U, const real *bias, int32_t act,
                     const gg_conv2d_shape *s, int64_t i0, int64_t i1, real *mine, void *wk, int64_t ws) {
    const wg_geo g = wg_geometry(s);
    const int64_t c = s->c, o = s->o, in_img = c * s->h * s->w, out_img = o * s->oh * s->ow;
    const int64_t pos = g.pos;
    real *V = mine, *M = V + pos * (g.T * c + WG_SKEW), *dU = M + pos * (g.T * o + WG_SKEW), *plane = dU + pos * o * c,
         *ys = plane + g.hp * g.wp;
#if CONV_VEC
    const int vec = wg_vec_ok(&g);
    wg4_perm perm;
    if (g.m == 4) perm = wg4_perms(&g);
#endif
    memset(plane, 0, (size_t)(g.hp * g.wp) * sizeof(real));
    for (int64_t i = i0; i < i1; i += g.imgs) {
        const int64_t k = i1 - i < g.imgs ? i1 - i : g.imgs, T = k * g.tiles;
#if CONV_VEC
        if (g.m == 4) {
            if (kind != 1) wg4_input(V, T, k, x + i * in_img, s, &g, &perm);
            if (kind != 0) wg4_dy(M, T, k, dy + i * out_img, s, &g, &perm);
        } else if (vec) {
            if (kind != 1) wg_input16(V, T, k, x + i * in_img, s, &g);
            if (kind != 0) wg_dy16(M, T, k, dy + i * out_img, s, &g);
        } else
#endif
        {
            for (int64_t j = 0; j < k && kind != 1; j++) wg_input(V, T, j * g.tiles, x + (i + j) * in_img, s, &g, plane);
            for (int64_t j = 0; j < k && kind != 0; j++) wg_dy(M, T, j * g.tiles, dy + (i + j) * out_img, s, &g);
        }
        for (int xi = 0; xi < pos; xi++) {
            const real *Ux = U + xi * o * c;
            real *Vx = V + xi * (c * T + WG_SKEW), *Mx = M + xi * (o * T + WG_SKEW);
            if (kind == 0) KERNEL(gemm)(Mx, Ux, Vx, o, T, c, 0, 0, 1.0, 0.0, NULL, wk, ws);
            else if (kind == 1) KERNEL(gemm)(Vx, Ux, Mx, c, T, o, 1, 0, 1.0, 0.0, NULL, wk, ws);
            else KERNEL(gemm)(dU + xi * o * c, Mx, Vx, o, c, T, 0, 1, 1.0, i == i0 ? 0.0 : 1.0, NULL, wk, ws);
        }
#if CONV_VEC
        if (g.m == 4 && kind == 0) wg4_output(out + i * out_img, M, T, k, bias, act, s, &g, &perm);
        if (g.m == 4 && kind == 1) wg4_dx(out + i * in_img, V, T, k, s, &g, &perm);
        if (g.m == 4) continue;
#endif
        for (int64_t j = 0; j < k && kind != 2; j++) {
#if CONV_VEC
            if (vec && kind == 0) {
                wg_output16(out + (i + j) * out_img, M, T, j * g.tiles, bias, act, s, &g);
                continue;
            }
            if (vec) {
                wg_dx16(out + (i + j) * in_img, V, T, j * g.tiles, s, &g);
                continue;
            }
#endif
            if (kind == 0) wg_output(out + (i + j) * out_img, M, T, j * g.tiles, bias, act, s, &g, ys);
            else wg_dx(out + (i + j) * in_img, V, T, j * g.tiles, s, &g, plane);
        }
    }
}

static int64_t wg_workspace(const gg_conv2d_shape *s, int32_t kind) {
    const wg_geo g = wg_geometry(s);
    if (kind == 0) return KERNEL(gemm_workspace_bytes)(s->o, g.T, s->c, 1);
    if (kind == 1) return KERNEL(gemm_workspace_bytes)(s->c, g.T, s->o, 1);
    return KERNEL(gemm_workspace_bytes)(s->o, s->c, g.T, 1);
}

/* The three passes: out is the forward's (n, o, oh, ow), dx (n, c, h, w) or dw (o, c, 3, 3). Threads take
 * contiguous ranges of images; the weight gradient's partial dU are added in thread order. */
static void wg_run(int kind, real *out, const real *x, const real *dy, const real *w, const real *bias, int32_t act,
                   const gg_conv2d_shape *s, real *scratch, int64_t scratch_elems, void *work, int64_t work_bytes) {
    const int64_t shared = wg_shared(s), per = wg_per_thread(s), ws = wg_workspace(s, kind);
    real *U = scratch;
    int nt = conv_threads(s, per, scratch_elems - shared, ws, work_bytes);
    const wg_geo g = wg_geometry(s);
    if (kind != 2) {
#if CONV_VEC
        if (g.m == 4) wg4_weights(U, w, s);
        else
#endif
            wg_weights(U, w, s);
    }
    if (nt == 1) {
        wg_range(kind, out, x, dy, U, bias, act, s, 0, s->n, scratch + shared, work, work_bytes);
    } else {
#pragma omp parallel num_threads(nt)
        for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads())
            wg_range(kind, out, x, dy, U, bias, act, s, s->n * t / nt, s->n * (t + 1) / nt,
                     scratch + shared + t * per, (char *)work + t * ws, ws);
    }
    if (kind != 2) return;
    /* every thread's range is non-empty (nt <= n): add the partials in thread order into U, then dw */
    const int64_t m = g.pos * s->o * s->c, at = g.pos * (g.T * (s->c + s->o) + 2 * WG_SKEW);
    for (int64_t j = 0; j < m; j++) {
        real v = 0;
        for (int t = 0; t < nt; t++) v += scratch[shared + t * per + at + j];
        U[j] = v;
    }
#if CONV_VEC
    if (g.m == 4) {
        wg4_weights_adjoint(out, U, s);
        return;
    }
#endif
    wg_weights_adjoint(out, U, s);
}

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
    if (conv_winograd_ok(s)) return wg_shared(s) + threads * wg_per_thread(s);
    return threads * conv_scratch_per_thread(s, kind);
}

int64_t KERNEL(conv2d_workspace_bytes)(const gg_conv2d_shape *s, int32_t kind, int32_t threads) {
    int64_t K = s->c * s->kh * s->kw, P = s->oh * s->ow, Pp = conv_padded_cols(s);
    if (threads < 1) threads = 1;
    if (conv_winograd_ok(s)) return threads * wg_workspace(s, kind);
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
    if (conv_winograd_ok(s)) {
        wg_run(0, out, x, NULL, w, bias, act, s, scratch, scratch_elems, work, work_bytes);
        return;
    }
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
    if (conv_winograd_ok(s)) {
        wg_run(1, dx, NULL, dy, w, NULL, GG_ACT_NONE, s, scratch, scratch_elems, work, work_bytes);
        return;
    }
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
    if (conv_winograd_ok(s)) {
        wg_run(2, dw, x, dy, NULL, NULL, GG_ACT_NONE, s, scratch, scratch_elems, work, work_bytes);
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

/* ---- a first layer's weight gradient through its max pool ----
 * dw (o, c, kh, kw) of conv2d(x) when the output gradient is dy = max_pool2d_backward(r, g, positive)
 * (r the convolution's ReLU output (n, o, oh, ow), g the pooled gradient): each pooled gradient that
 * passes (its window's maximum is not <= 0) goes straight to the window's arg-max, whose patch of x it
 * multiplies, so dy is never written and the zeros between the maxima are never read (simplify makes
 * this of a small first layer's weight gradient; compiler/passes.py). Each output channel's sums are
 * one thread's, in a fixed order, so results do not depend on the thread count. */

#if POOL_VEC
/* A 3×3 kernel on one input channel (stride 1, no padding) under MaxPool2D(2) of at most 15 windows
 * per row: one output channel at a time, nine 16-lane accumulators (lanes: the windows of a pooled
 * row). For each window the tap's x value is the one under its arg-max: four candidates (the
 * window's four positions), chosen by the arg-max masks of the pool's backward. */
static inline int pooled_dw_vec_ok(const gg_conv2d_shape *s, const gg_pool2d_shape *ps) {
    return s->c == 1 && s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->dh == 1 && s->dw == 1 && s->ph == 0 &&
           s->pw == 0 && ps->kh == 2 && ps->kw == 2 && ps->sh == 2 && ps->sw == 2 && ps->ph == 0 && ps->pw == 0 &&
           ps->ow <= 15;
}

static void pooled_dw_vec(float *dw, const float *x, const float *r, const float *g, const gg_conv2d_shape *s,
                          const gg_pool2d_shape *ps) {
    const int64_t plane = s->oh * s->ow, pooled = ps->oh * ps->ow, in_img = s->h * s->w, W = s->w, OW = s->ow;
    const int64_t windows = ps->ow;
    const __mmask16 lanes = pool_lanes(windows), k0 = pool_lanes(W), k1 = pool_lanes(W - 16);
    __m512i cols[4];   /* lane px <- column 2·px + off of a row's two vectors */
    for (int off = 0; off < 4; off++)
        cols[off] = _mm512_add_epi32(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                                     _mm512_set1_epi32(off));
    GG_PARALLEL_FOR(s->n * s->o * pooled * 9 >= GG_PARALLEL_MIN,
        for (int64_t o = 0; o < s->o; o++) {
            __m512 acc[9];
            for (int t = 0; t < 9; t++) acc[t] = _mm512_setzero_ps();
            for (int64_t i = 0; i < s->n; i++) {
                const float *rp = r + (i * s->o + o) * plane, *gp = g + (i * s->o + o) * pooled, *xi = x + i * in_img;
                for (int64_t py = 0; py < ps->oh; py++) {
                    __m512 a, b, c, d;
                    __m512 m = pool_max16(rp + 2 * py * OW, rp + (2 * py + 1) * OW, windows, &a, &b, &c, &d);
                    __mmask16 ea = pool_is_max16(a, m), eb = pool_is_max16(b, m) & ~ea;
                    __mmask16 ec = pool_is_max16(c, m) & ~(ea | eb), ed = (__mmask16)~(ea | eb | ec);
                    __m512 v = _mm512_maskz_loadu_ps(lanes, gp + py * windows);
                    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
                    __m512 X[4][4];   /* X[row][off]: x at input row 2·py + row, column 2·px + off */
                    for (int row = 0; row < 4; row++) {
                        const float *xr = xi + (2 * py + row) * W;
                        __m512 lo = _mm512_maskz_loadu_ps(k0, xr), hi = _mm512_maskz_loadu_ps(k1, xr + 16);
                        for (int off = 0; off < 4; off++) X[row][off] = _mm512_permutex2var_ps(lo, cols[off], hi);
                    }
                    for (int ki = 0; ki < 3; ki++)
                        for (int kj = 0; kj < 3; kj++) {
                            __m512 xs = X[ki][kj];   /* the arg-max at the window's top left (ea) */
                            xs = _mm512_mask_blend_ps(eb, xs, X[ki][kj + 1]);
                            xs = _mm512_mask_blend_ps(ec, xs, X[ki + 1][kj]);
                            xs = _mm512_mask_blend_ps(ed, xs, X[ki + 1][kj + 1]);
                            acc[3 * ki + kj] = _mm512_fmadd_ps(v, xs, acc[3 * ki + kj]);
                        }
                }
            }
            for (int t = 0; t < 9; t++) dw[o * 9 + t] = _mm512_reduce_add_ps(acc[t]);
        });
}
#endif

/* The gradient dy = max_pool2d_backward(r, g, positive) at convolution output `at` (flat in one plane of
 * r): the sum of the passing pooled gradients whose window's arg-max it is (0 when none) */
static real pooled_dy_at(const real *rp, const real *gp, const gg_pool2d_shape *ps, int64_t at) {
    const int64_t oy = at / ps->w, ox = at % ps->w;
    real v = 0;
    for (int64_t py = 0; py < ps->oh; py++) {
        int64_t y0 = py * ps->sh - ps->ph;
        if (oy < y0 || oy >= y0 + ps->kh) continue;
        for (int64_t px = 0; px < ps->ow; px++) {
            int64_t x0 = px * ps->sw - ps->pw;
            if (ox < x0 || ox >= x0 + ps->kw) continue;
            if (pool_argmax(rp, ps, py, px) == at && !(rp[at] <= 0)) v += gp[py * ps->ow + px];
        }
    }
    return v;
}

/* The dense weight gradient multiplies every x by its position's dy, zeros included, so an infinite or
 * NaN x makes NaN (0·x) in every tap whose position there has dy = 0; the pass over the arg-maxima
 * never reads those, so this adds them. Only when x holds such a value (a scan of x otherwise). */
static void pooled_dw_nonfinite(real *dw, const real *x, const real *r, const real *g, const gg_conv2d_shape *s,
                                const gg_pool2d_shape *ps) {
    const int64_t in_img = s->c * s->h * s->w, plane = s->oh * s->ow, pooled = ps->oh * ps->ow;
    int bad = 0;
    for (int64_t k = 0; k < s->n * in_img; k++) bad |= !isfinite(x[k]);
    if (!bad) return;
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t ch = 0; ch < s->c; ch++)
            for (int64_t y = 0; y < s->h; y++)
                for (int64_t xx = 0; xx < s->w; xx++) {
                    real v = x[i * in_img + (ch * s->h + y) * s->w + xx];
                    if (isfinite(v)) continue;
                    for (int64_t ki = 0; ki < s->kh; ki++)
                        for (int64_t kj = 0; kj < s->kw; kj++) {
                            int64_t oy = y + s->ph - ki * s->dh, ox = xx + s->pw - kj * s->dw;
                            if (oy < 0 || ox < 0 || oy % s->sh || ox % s->sw) continue;
                            oy /= s->sh;
                            ox /= s->sw;
                            if (oy >= s->oh || ox >= s->ow) continue;
                            for (int64_t o = 0; o < s->o; o++) {
                                const real *rp = r + (i * s->o + o) * plane, *gp = g + (i * s->o + o) * pooled;
                                if (pooled_dy_at(rp, gp, ps, oy * s->ow + ox) == 0)
                                    dw[((o * s->c + ch) * s->kh + ki) * s->kw + kj] += (real)0 * v;
                            }
                        }
                }
}

/* x is (n, c, h, w), r is (n, o, oh, ow), g is (n, o, poh, pow), dw is (o, c, kh, kw); s the convolution's
 * geometry, ps the pool's (over r) */
void KERNEL(conv2d_pooled_weight_grad)(real *dw, const real *x, const real *r, const real *g, const gg_conv2d_shape *s,
                                       const gg_pool2d_shape *ps) {
#if POOL_VEC
    if (pooled_dw_vec_ok(s, ps)) {
        pooled_dw_vec(dw, x, r, g, s, ps);
        pooled_dw_nonfinite(dw, x, r, g, s, ps);
        return;
    }
#endif
    const int64_t K = s->c * s->kh * s->kw, in_img = s->c * s->h * s->w, plane = s->oh * s->ow;
    const int64_t pooled = ps->oh * ps->ow;
    GG_PARALLEL_FOR(s->n * s->o * pooled * K >= GG_PARALLEL_MIN,
        for (int64_t o = 0; o < s->o; o++) {
            real *acc = dw + o * K;
            for (int64_t k = 0; k < K; k++) acc[k] = 0;
            for (int64_t i = 0; i < s->n; i++) {
                const real *rp = r + (i * s->o + o) * plane, *gp = g + (i * s->o + o) * pooled, *xi = x + i * in_img;
                for (int64_t py = 0; py < ps->oh; py++)
                    for (int64_t px = 0; px < ps->ow; px++) {
                        int64_t at = pool_argmax(rp, ps, py, px);
                        if (at < 0 || rp[at] <= 0) continue;   /* NaN passes, as in the positive backward */
                        real v = gp[py * ps->ow + px];
                        int64_t y0 = at / s->ow * s->sh - s->ph, x0 = at % s->ow * s->sw - s->pw;
                        for (int64_t ch = 0; ch < s->c; ch++)
                            for (int64_t ki = 0; ki < s->kh; ki++) {
                                int64_t iy = y0 + ki * s->dh;
                                if (iy < 0 || iy >= s->h) continue;
                                for (int64_t kj = 0; kj < s->kw; kj++) {
                                    int64_t ix = x0 + kj * s->dw;
                                    if (ix >= 0 && ix < s->w)
                                        acc[(ch * s->kh + ki) * s->kw + kj] += v * xi[(ch * s->h + iy) * s->w + ix];
                                }
                            }
                    }
            }
        });
    pooled_dw_nonfinite(dw, x, r, g, s, ps);
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
