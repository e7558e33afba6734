/* gemm.c — the matrix product C = act(alpha·op(A)·op(B) + beta·C + bias) in its four transpose
 * forms, compiled through kernels_f32.c / kernels_f64.c (`real` is float or double).
 *
 * Two implementations live here:
 *  - gg_gemm_ref_*: the plain loop, kept as the reference the tests compare against.
 *  - gg_gemm_*: a GotoBLAS/BLIS-style GEMM. op(A) and op(B) are copied ("packed") block by block
 *    into contiguous, aligned, zero-padded panels in the order the micro-kernel reads them, so the
 *    transposes cost nothing beyond the packing. A register-blocked micro-kernel (AVX-512, else
 *    AVX2+FMA, else SSE2, else portable C; picked at compile time by the kernel set being built) multiplies one MR-row
 *    panel of A by one NR-column panel of B over KC steps into MR×NR accumulators held in vector
 *    registers, and writes the tile once: alpha/beta, then the epilogue (bias + activation) while
 *    the tile is still in L1.
 *
 * Loop nest (one thread; rows [i0,i1) × columns [j0,j1) of C):
 *   for ib over M in MB rows       A block MB×KC packed once, lives in L2/L3
 *     for pb over K in KC steps
 *       pack A block
 *       for jb over N in NB columns     B block KC×NB packed, lives in L2
 *         pack B block
 *         for ir over the block's rows in MR     A micro-panel MR×KC stays in L1
 *           for jr over the block's columns in NR    B micro-panels stream from L2
 *             micro-kernel
 * The vector axis of the micro-kernel is along N (rows of C are contiguous), so it is the A
 * micro-panel (broadcast operand) that is reused from L1 and the B micro-panels that stream.
 * Packing only pays when a panel is reused: a thread with few rows (small batch) reads an untransposed
 * B in place (masked loads at its right edge), one with few columns reads A's whole panels in place
 * (its last rows are copied as they are). Transposed operands are packed with 4×4 register transposes.
 * After the last K pass, each finished MR×NB block goes to the epilogue hook while still in cache (the
 * fused instructions of csrc/fused.c run their elementwise op list there).
 *
 * Threads: C is cut into a tm×tn grid of blocks (aligned to MR/NR), one per thread, each thread
 * running the loop nest above with its own packing buffers: no barriers, and the duplicated packing
 * is O(1/n) or O(1/m) of the work. Products below GEMM_SERIAL_MACS multiply-adds run serially.
 * (Shared packed blocks with a barrier per B block and a dynamic schedule over A panels, as BLIS
 * does, were tried and not kept: on this shared 2-core host each barrier waits out whichever thread
 * another process has preempted; docs/performance.md has the numbers.)
 *
 * Memory: the packing buffers come from the caller (the program's workspace, sized once by
 * gg_gemm_workspace_bytes; the runtime allocates it per compiled program); nothing is allocated here.
 * Edges are handled by zero-padding the packed panels, masked loads/stores and writing back only
 * the valid part of a tile, so no access leaves A, B or C.
 */
#ifndef KERNEL
#error "compile gemm.c through kernels_f32.c or kernels_f64.c"
#endif

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gg_math.h" /* gg_sigmoid (already included by elementwise.c, with tgmath.h) */

#if defined(__SSE2__)
#include <immintrin.h>
#endif

/* ---- the vector type and its five operations, per ISA and real type ----
 * VL: reals per vector; NV: vectors per tile row (NR = NV·VL); MR: tile rows.
 * The accumulators are MR·NV vectors; with two B vectors and a broadcast that must fit the
 * register file (32 zmm with AVX-512, 16 ymm with AVX2) so the tile never spills. */
#if defined(__AVX512F__)
#define GEMM_ISA "avx512"
#if defined(GG_REAL_F32)
typedef __m512 vec;
#define VL 16
#define VLOAD(p) _mm512_load_ps(p)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VZERO() _mm512_setzero_ps()
#define VADD(a, b) _mm512_add_ps(a, b)
#define VMAX(a, b) _mm512_max_ps(a, b)
typedef __mmask16 vmask;
#define VMASK(cnt) ((vmask)((1u << ((cnt) < 0 ? 0 : (cnt) > VL ? VL : (cnt))) - 1u))
#define VLOADM(p, mk) _mm512_maskz_loadu_ps(mk, p)
#define VSTOREM(p, mk, v) _mm512_mask_storeu_ps(p, mk, v)
#else
typedef __m512d vec;
#define VL 8
#define VLOAD(p) _mm512_load_pd(p)
#define VLOADU(p) _mm512_loadu_pd(p)
#define VSTOREU(p, v) _mm512_storeu_pd(p, v)
#define VBCAST(p) _mm512_set1_pd(*(p))
#define VSET1(x) _mm512_set1_pd(x)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VMUL(a, b) _mm512_mul_pd(a, b)
#define VZERO() _mm512_setzero_pd()
#define VADD(a, b) _mm512_add_pd(a, b)
#define VMAX(a, b) _mm512_max_pd(a, b)
typedef __mmask8 vmask;
#define VMASK(cnt) ((vmask)((1u << ((cnt) < 0 ? 0 : (cnt) > VL ? VL : (cnt))) - 1u))
#define VLOADM(p, mk) _mm512_maskz_loadu_pd(mk, p)
#define VSTOREM(p, mk, v) _mm512_mask_storeu_pd(p, mk, v)
#endif
#define NV 2
#define MR 12
#elif defined(__AVX2__) && defined(__FMA__)
#define GEMM_ISA "avx2"
#if defined(GG_REAL_F32)
typedef __m256 vec;
#define VL 8
#define VLOAD(p) _mm256_load_ps(p)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VZERO() _mm256_setzero_ps()
#define VADD(a, b) _mm256_add_ps(a, b)
#define VMAX(a, b) _mm256_max_ps(a, b)
typedef __m256i vmask;
#define VMASK(cnt) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cnt)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADM(p, mk) _mm256_maskload_ps(p, mk)
#define VSTOREM(p, mk, v) _mm256_maskstore_ps(p, mk, v)
#else
typedef __m256d vec;
#define VL 4
#define VLOAD(p) _mm256_load_pd(p)
#define VLOADU(p) _mm256_loadu_pd(p)
#define VSTOREU(p, v) _mm256_storeu_pd(p, v)
#define VBCAST(p) _mm256_broadcast_sd(p)
#define VSET1(x) _mm256_set1_pd(x)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VMUL(a, b) _mm256_mul_pd(a, b)
#define VZERO() _mm256_setzero_pd()
#define VADD(a, b) _mm256_add_pd(a, b)
#define VMAX(a, b) _mm256_max_pd(a, b)
typedef __m256i vmask;
#define VMASK(cnt) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(cnt)), _mm256_setr_epi64x(0, 1, 2, 3))
#define VLOADM(p, mk) _mm256_maskload_pd(p, mk)
#define VSTOREM(p, mk, v) _mm256_maskstore_pd(p, mk, v)
#endif
#define NV 2
#define MR 6
#elif defined(__SSE2__)
/* SSE2 (every x86-64; the generic kernel set): 128-bit vectors, no FMA (multiply then add) and no
 * masked moves: a partial vector goes through a small copy. 6×2 accumulators + 2 B + 1 broadcast fill
 * the 16 xmm registers. */
#define GEMM_ISA "sse2"
typedef int vmask; /* how many leading lanes are valid */
#define VMASK(cnt) ((cnt) < 0 ? 0 : (cnt) > VL ? VL : (int)(cnt))
#if defined(GG_REAL_F32)
typedef __m128 vec;
#define VL 4
#define VLOAD(p) _mm_load_ps(p)
#define VLOADU(p) _mm_loadu_ps(p)
#define VSTOREU(p, v) _mm_storeu_ps(p, v)
#define VBCAST(p) _mm_set1_ps(*(p))
#define VSET1(x) _mm_set1_ps(x)
#define VMUL(a, b) _mm_mul_ps(a, b)
#define VZERO() _mm_setzero_ps()
#define VADD(a, b) _mm_add_ps(a, b)
#define VMAX(a, b) _mm_max_ps(a, b)
#else
typedef __m128d vec;
#define VL 2
#define VLOAD(p) _mm_load_pd(p)
#define VLOADU(p) _mm_loadu_pd(p)
#define VSTOREU(p, v) _mm_storeu_pd(p, v)
#define VBCAST(p) _mm_set1_pd(*(p))
#define VSET1(x) _mm_set1_pd(x)
#define VMUL(a, b) _mm_mul_pd(a, b)
#define VZERO() _mm_setzero_pd()
#define VADD(a, b) _mm_add_pd(a, b)
#define VMAX(a, b) _mm_max_pd(a, b)
#endif
#define VFMA(a, b, c) VADD(VMUL(a, b), c)
static inline vec gemm_sse_loadm(const real *p, int cnt) {
    real t[VL] = {0};
    for (int i = 0; i < cnt; i++) t[i] = p[i];
    return VLOADU(t);
}
static inline void gemm_sse_storem(real *p, int cnt, vec v) {
    real t[VL];
    VSTOREU(t, v);
    for (int i = 0; i < cnt; i++) p[i] = t[i];
}
#define VLOADM(p, mk) gemm_sse_loadm(p, mk)
#define VSTOREM(p, mk, v) gemm_sse_storem(p, mk, v)
#define NV 2
#define MR 6
#else
/* portable C: a "vector" is one real; 4×4 scalar accumulators the compiler keeps in registers */
#define GEMM_ISA "portable"
typedef real vec;
#define VL 1
#define VLOAD(p) (*(p))
#define VLOADU(p) (*(p))
#define VSTOREU(p, v) (*(p) = (v))
#define VBCAST(p) (*(p))
#define VSET1(x) (x)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define VZERO() ((real)0)
#define VADD(a, b) ((a) + (b))
#define VMAX(a, b) ((a) > (b) ? (a) : (b))
typedef int vmask;
#define VMASK(cnt) ((cnt) > 0)
#define VLOADM(p, mk) ((mk) ? *(p) : (real)0)
#define VSTOREM(p, mk, v) ((mk) ? (void)(*(p) = (v)) : (void)0)
#define NV 4
#define MR 4
#endif
#define NR (NV * VL)

/* ---- cache blocking, from the caches this machine reports (gg_cache_bytes, cpu.c) ----
 * KC: the A micro-panel (MR×KC) is reused from L1 by every micro-kernel call of a B block, while
 *     the B micro-panels (KC×NR) stream through; it gets about a third of L1d so the streaming B
 *     lines do not evict it, rounded to a multiple of 64 in [64, 512]. A larger KC amortises the C
 *     tile's load/store better. (Zen 4, 32 KiB: f32 256, f64 128; Sapphire Rapids, 48 KiB: 320, 192.)
 * NB: the packed B block (KC×NB) must stay in L2 while every A micro-panel of the A block passes
 *     over it; half of L2 leaves room for the A panels and C tiles; a multiple of NR in [4·NR, 4096].
 *     (Zen 4, 1 MiB: 512 for both; Sapphire Rapids, 2 MiB: f32 800, f64 672.)
 * MB: the packed A block (MB×KC) is read once per B block, so it only has to fit in a quarter of
 *     L3 (next to the other cores' blocks); at most 2048 rows, which also bounds the workspace.
 * When the machine reports nothing: L1d 32 KiB, L2 512 KiB, L3 8 MiB. GRAPHGRAD_GEMM_BLOCKS="kc,nb,mb"
 * overrides the result (for experiments; each value is clamped to the same ranges). Computed once per
 * process (the GEMM's only state besides the thread setting: it never changes after). */
typedef struct {
    int64_t kc, nb, mb;
    int64_t l1d, l2, l3; /* the cache sizes used (reported or fallback) */
} gemm_blocks;

static gemm_blocks gemm_blocks_chosen;
static pthread_once_t gemm_blocks_once = PTHREAD_ONCE_INIT;

static int64_t gemm_clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static void gemm_blocks_init(void) {
    gemm_blocks *g = &gemm_blocks_chosen;
    int64_t s = (int64_t)sizeof(real);
    g->l1d = gg_cache_bytes(1) > 0 ? gg_cache_bytes(1) : 32 * 1024;
    g->l2 = gg_cache_bytes(2) > 0 ? gg_cache_bytes(2) : 512 * 1024;
    g->l3 = gg_cache_bytes(3) > 0 ? gg_cache_bytes(3) : 8 * 1024 * 1024;
    int64_t kc = (g->l1d / 3 / (MR * s) + 32) / 64 * 64;
    int64_t nb = 0, mb = 0;
    const char *env = getenv("GRAPHGRAD_GEMM_BLOCKS");
    long ekc = 0, enb = 0, emb = 0;
    if (env && sscanf(env, "%ld,%ld,%ld", &ekc, &enb, &emb) >= 1 && ekc > 0) kc = ekc;
    g->kc = kc = gemm_clamp(kc, 64, 512) / 8 * 8;
    nb = enb > 0 ? enb : g->l2 / 2 / (kc * s);
    g->nb = gemm_clamp(nb / NR * NR, 4 * NR, 4096 / NR * NR);
    mb = emb > 0 ? emb : g->l3 / 4 / (kc * s);
    g->mb = gemm_clamp(mb / MR * MR, 8 * MR, 2048 / MR * MR);
}

static inline const gemm_blocks *gemm_blocking(void) {
    pthread_once(&gemm_blocks_once, gemm_blocks_init);
    return &gemm_blocks_chosen;
}

/* Products with fewer multiply-adds run on one thread. Measured on this 2-core machine while it was
 * quiet: 128³ (2.1M) runs 1.65× faster on 2 threads (150-157 vs 92 GFLOP/s) and 64×784×128 (6.4M)
 * 1.8×; at 96³ the whole product takes ~18 µs on one core, while a fork/join costs ~2 µs with warm
 * threads and tens of µs when they have gone to sleep, so the cut sits there. */
#ifndef GEMM_SERIAL_MACS
#define GEMM_SERIAL_MACS (96 * 96 * 96)
#endif

#define GEMM_ALIGN 64
#define ROUND_UP(x, r) (((x) + (r)-1) / (r) * (r))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- epilogue: bias over columns, then the activation, on rows×cols of c (row stride ldc) ----
 * The sigmoid is gg_math.h's, the one the sigmoid op uses, so an epilogue gives the same bits as
 * the separate ops (and GCC vectorises it). */
/* c is (rows, cols) with row stride ldc; bias is (cols,) or NULL */
static void gemm_epilogue(real *c, int64_t ldc, int64_t rows, int64_t cols, const real *bias, int32_t act) {
    for (int64_t i = 0; i < rows; i++) {
        real *ci = c + i * ldc;
        if (bias)
            for (int64_t j = 0; j < cols; j++) ci[j] += bias[j];
        if (act == GG_ACT_RELU) {
            for (int64_t j = 0; j < cols; j++) ci[j] = ci[j] < 0 ? (real)0 : ci[j];   /* NaN kept: the relu op's body */
        } else if (act == GG_ACT_SIGMOID) {
            for (int64_t j = 0; j < cols; j++) ci[j] = gg_sigmoid(ci[j]);
        }
    }
}

/* ---- the reference: the plain loop ---- */

/* c is (m,n) = act(alpha·op(a)·op(b) + beta·c + bias); op(a) is (m,k), op(b) is (k,n) */
void KERNEL(gemm_ref)(real *c, const real *a, const real *b, int64_t m, int64_t n, int64_t k, int32_t trans_a,
                      int32_t trans_b, double alpha, double beta, const gg_epilogue *ep) {
    real al = (real)alpha, be = (real)beta;
#pragma omp parallel for num_threads(gg_threads()) if (m * n * k >= 4 * GG_PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < m; i++) {
        real *ci = c + i * n;
        if (beta == 0.0) {
            for (int64_t j = 0; j < n; j++) ci[j] = 0;
        } else if (beta != 1.0) {
            for (int64_t j = 0; j < n; j++) ci[j] *= be;
        }
        if (!trans_b) {
            /* ci += sum_p A(i,p) * B(p,:) — unit stride over B's rows */
            for (int64_t p = 0; p < k; p++) {
                real av = al * (trans_a ? a[p * m + i] : a[i * k + p]);
                const real *bp = b + p * n;
                for (int64_t j = 0; j < n; j++) ci[j] += av * bp[j];
            }
        } else {
            /* ci[j] += dot(A(i,:), B(:,j)) with B(:,j) a contiguous row of b */
            for (int64_t j = 0; j < n; j++) {
                const real *bj = b + j * k;
                real acc = 0;
                if (!trans_a) {
                    const real *ai = a + i * k;
                    for (int64_t p = 0; p < k; p++) acc += ai[p] * bj[p];
                } else {
                    for (int64_t p = 0; p < k; p++) acc += a[p * m + i] * bj[p];
                }
                ci[j] += al * acc;
            }
        }
        if (ep) {
            gemm_epilogue(ci, n, 1, n, (const real *)ep->bias, ep->act);
            if (ep->hook) ep->hook(ep->ctx, ci, i, 0, 1, n);
        }
    }
}

/* ---- packing ---- */

/* 4×4 transposes for the packing of transposed operands: dst rows 0..3 (row stride R) get the
 * columns of the four source rows s0..s3 (4 consecutive reals each). */
#if defined(__AVX__)
#define GEMM_T4 1
static inline void gemm_transpose4(real *restrict dst, int64_t R, const real *s0, const real *s1, const real *s2,
                                   const real *s3) {
#if defined(GG_REAL_F32)
    __m128 r0 = _mm_loadu_ps(s0), r1 = _mm_loadu_ps(s1), r2 = _mm_loadu_ps(s2), r3 = _mm_loadu_ps(s3);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(dst, r0);
    _mm_storeu_ps(dst + R, r1);
    _mm_storeu_ps(dst + 2 * R, r2);
    _mm_storeu_ps(dst + 3 * R, r3);
#else
    __m256d r0 = _mm256_loadu_pd(s0), r1 = _mm256_loadu_pd(s1), r2 = _mm256_loadu_pd(s2), r3 = _mm256_loadu_pd(s3);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(dst + R, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(dst + 2 * R, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(dst + 3 * R, _mm256_permute2f128_pd(t1, t3, 0x31));
#endif
}
#endif

/* dst is (kc, R) = the transpose of the (r, kc) rows src[i·ld + p], zero-padded to R columns; blocked
 * over p so the R-wide destination rows being filled stay in L1 while the r source rows stream. */
#define GEMM_PACK_T_BLOCK 32
#define GEMM_LINE_REALS (64 / (int)sizeof(real)) /* reals per cache line */
#define GEMM_PF_ROWS 16                          /* rows of B prefetched ahead when packing */
static inline void gemm_pack_transposed(real *restrict dst, const real *restrict src, int64_t ld, int64_t r,
                                        int64_t kc, int R) {
    int64_t quads = 0; /* rows done four at a time by 4×4 transposes */
#if defined(GEMM_T4)
    if (R % 4 == 0) quads = r / 4 * 4;
#endif
    for (int64_t p0 = 0; p0 < kc; p0 += GEMM_PACK_T_BLOCK) {
        int64_t pe = MIN(kc, p0 + GEMM_PACK_T_BLOCK);
        /* the r source rows lie a row stride apart, each in its own page, where the hardware prefetcher
         * does not follow: ask for the next block of every row while this one is copied */
        int64_t pn = MIN(kc, pe + GEMM_PACK_T_BLOCK);
        for (int64_t i = 0; i < r && pe < pn; i++) {
            for (int64_t q = pe; q < pn; q += GEMM_LINE_REALS) __builtin_prefetch(src + i * ld + q, 0, 2);
            __builtin_prefetch(src + i * ld + pn - 1, 0, 2);
        }
        int64_t pv = quads ? p0 + (pe - p0) / 4 * 4 : p0;
#if defined(GEMM_T4)
        for (int64_t i = 0; i < quads; i += 4) {
            const real *s = src + i * ld;
            for (int64_t p = p0; p < pv; p += 4)
                gemm_transpose4(dst + p * R + i, R, s + p, s + ld + p, s + 2 * ld + p, s + 3 * ld + p);
        }
#endif
        for (int64_t i = 0; i < quads; i++)
            for (int64_t p = pv; p < pe; p++) dst[p * R + i] = src[i * ld + p];
        for (int64_t i = quads; i < r; i++) {
            const real *s = src + i * ld;
            for (int64_t p = p0; p < pe; p++) dst[p * R + i] = s[p];
        }
        for (int64_t i = r; i < R; i++)
            for (int64_t p = p0; p < pe; p++) dst[p * R + i] = 0;
    }
}

/* ap is ceil(mc/MR) panels of (kc, MR): ap[panel][p][i] = op(A)(i0+panel·MR+i, p0+p), 0 past row mc */
static void gemm_pack_a(real *restrict ap, const real *restrict a, int64_t m, int64_t k, int32_t trans_a, int64_t i0,
                        int64_t mc, int64_t p0, int64_t kc) {
    for (int64_t ir = 0; ir < mc; ir += MR) {
        int64_t mr = MIN(MR, mc - ir);
        real *dst = ap + ir * kc;
        if (trans_a) {
            /* a is (k, m): the MR values of one k step are contiguous */
            for (int64_t p = 0; p < kc; p++) {
                const real *src = a + (p0 + p) * m + i0 + ir;
                real *d = dst + p * MR;
                int64_t i = 0;
                for (; i < mr; i++) d[i] = src[i];
                for (; i < MR; i++) d[i] = 0;
            }
        } else {
            /* a is (m, k): MR rows, each contiguous, become MR-wide rows of the panel */
            gemm_pack_transposed(dst, a + (i0 + ir) * k + p0, k, mr, kc, MR);
        }
    }
}

/* bp is ceil(nc/NR) panels of (kc, NR): bp[panel][p][j] = op(B)(p0+p, j0+panel·NR+j), 0 past column nc */
static void gemm_pack_b(real *restrict bp, const real *restrict b, int64_t n, int64_t k, int32_t trans_b, int64_t p0,
                        int64_t kc, int64_t j0, int64_t nc) {
    for (int64_t jr = 0; jr < nc; jr += NR) {
        int64_t nr = MIN(NR, nc - jr);
        real *dst = bp + jr * kc;
        if (!trans_b) {
            /* b is (k, n): the NR values of one k step are contiguous */
            const real *src = b + p0 * n + j0 + jr;
            if (nr == NR) {
                for (int64_t p = 0; p < kc; p++) {
                    /* B's rows lie n reals apart (a page or more for wide layers), out of the hardware
                     * prefetcher's reach: ask for the row GEMM_PF_ROWS ahead (a cold weight matrix
                     * otherwise costs a memory latency per row) */
                    if (p + GEMM_PF_ROWS < kc) {
                        __builtin_prefetch(src + (p + GEMM_PF_ROWS) * n, 0, 2);
                        __builtin_prefetch(src + (p + GEMM_PF_ROWS) * n + NR - 1, 0, 2);
                    }
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) VSTOREU(dst + p * NR + v * VL, VLOADU(src + p * n + v * VL));
                }
            } else {
                for (int64_t p = 0; p < kc; p++) {
                    int64_t j = 0;
                    for (; j < nr; j++) dst[p * NR + j] = src[p * n + j];
                    for (; j < NR; j++) dst[p * NR + j] = 0;
                }
            }
        } else {
            /* b is (n, k): NR rows, each contiguous, become NR-wide rows of the panel */
            gemm_pack_transposed(dst, b + (j0 + jr) * k + p0, k, nr, kc, NR);
        }
    }
}

/* ---- the micro-kernel ---- */

/* acc += A·B over kc steps for the first `rows` rows of the tile: A(i,p) = ap[i·a_rs + p·a_cs],
 * B(p,:) = bp[p·ldb ..]; masked: B loads read only the columns mk allows. Inlined into each caller
 * with constant strides and row count, so every variant keeps its accumulators in registers. */
static inline __attribute__((always_inline)) void gemm_kloop(vec acc[MR][NV], const int rows, const int nv, int64_t kc,
                                                             const real *restrict ap, int64_t a_rs, int64_t a_cs,
                                                             const real *restrict bp, int64_t ldb, int masked,
                                                             const vmask *mk) {
    for (int64_t p = 0; p < kc; p++) {
        vec bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = masked ? VLOADM(bp + v * VL, mk[v]) : VLOADU(bp + v * VL);
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++) {
            vec av = VBCAST(ap + i * a_rs);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = VFMA(av, bv[v], acc[i][v]);
        }
        ap += a_cs;
        bp += ldb;
    }
}

/* c is the (mr, nr) corner of an MR×NR tile with row stride ldc; `rows` (a constant ≥ mr) is how many
 * accumulator rows the k loop computes, so a short last tile (a batch of 10 or 64 rows) does not pay
 * for MR. A(i,p) = ap[i·a_rs + p·a_cs]: a packed panel (1, MR), or A read in place ((1, m) transposed,
 * (k, 1) not); B(p,j) = bp[p·ldb + j]: a packed panel (ldb = NR) or B read in place (ldb = n, masked at
 * the right edge). c = alpha·A·B + beta·c (beta == 0: c is not read); with ep (the last K pass) then
 * + bias and the activation, in registers where possible. */
static inline __attribute__((always_inline)) void gemm_tile(const int rows, const int nv, int64_t kc,
                                                            const real *restrict ap,
                                                            int64_t a_rs, int64_t a_cs, const real *restrict bp,
                                                            int64_t ldb, real *restrict c, int64_t ldc, int64_t mr,
                                                            int64_t nr, real alpha, real beta, const gg_epilogue *ep,
                                                            const real *bias) {
    vec acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < rows; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] = VZERO();

    vmask mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) mk[v] = VMASK(nr - v * VL);
    int masked = ldb != NR && nr != NR;   /* the right edge of an unpacked B: read nothing past column nr */
#if defined(__AVX__)
    /* C's tile arrives while the loop runs (not worth it for a few k steps): every line of each row,
     * which is three, not two, when C's rows do not start on a line (a NumPy array starts 16 bytes
     * into one); a line left out is a demand miss, from memory for a large C, at the write-back */
    if (kc >= 32) {
        for (int64_t i = 0; i < mr; i++) {
            for (int o = 0; o < NR; o += GEMM_LINE_REALS) _mm_prefetch((const char *)(c + i * ldc + o), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
        }
    }
#endif

    if (a_rs == 1 && a_cs == MR) {
        if (masked) gemm_kloop(acc, rows, nv, kc, ap, 1, MR, bp, ldb, 1, mk);
        else gemm_kloop(acc, rows, nv, kc, ap, 1, MR, bp, ldb, 0, mk);
    } else if (a_rs == 1) {
        if (masked) gemm_kloop(acc, rows, nv, kc, ap, 1, a_cs, bp, ldb, 1, mk);
        else gemm_kloop(acc, rows, nv, kc, ap, 1, a_cs, bp, ldb, 0, mk);
    } else {
        if (masked) gemm_kloop(acc, rows, nv, kc, ap, a_rs, 1, bp, ldb, 1, mk);
        else gemm_kloop(acc, rows, nv, kc, ap, a_rs, 1, bp, ldb, 0, mk);
    }

    /* write back in two passes, every read of C before any write: a masked store that ends a row
     * leaves lanes that overlap the next row's first vector, and a load after such a store stalls
     * until it retires (a 784×30 update: 4.5 µs of 11). Rows past mr are skipped, so nothing
     * outside C is touched. */
    int32_t act = ep ? ep->act : GG_ACT_NONE;
    int whole = nr == NR;
    vec va = VSET1(alpha), vb = VSET1(beta), zero = VZERO();
    /* alpha is 1 in nearly every call (a program's matmuls): skip the multiply, a tenth of a tile's
     * work when K is shallow (Xᵀ·dY with a batch of 10: 10 k steps of MR·NV FMAs) */
    if (alpha != 1) {
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = VMUL(va, acc[i][v]);
    }
    if (beta != 0) {
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++) {
            if (i >= mr) break;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                const real *ct = c + i * ldc + v * VL;
                acc[i][v] = VFMA(vb, whole ? VLOADU(ct) : VLOADM(ct, mk[v]), acc[i][v]);
            }
        }
    }
    if (!ep && mr == rows) {
        /* the common case (no epilogue, every row in C) on its own: plain stores through one row
         * pointer; the general loop below keeps 2·MR row addresses live, and GCC spills them */
        real *ct = c;
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++, ct += ldc)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                if (whole) VSTOREU(ct + v * VL, acc[i][v]);
                else VSTOREM(ct + v * VL, mk[v], acc[i][v]);
            }
        return;
    }
    vec vbias[NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) vbias[v] = bias ? VLOADM(bias + v * VL, mk[v]) : zero;
    if (act == GG_ACT_SIGMOID) {
        /* through an aligned copy of the whole tile: the sigmoid loop then has no scalar remainder */
        real tile[MR * NR] __attribute__((aligned(64)));
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) VSTOREU(tile + i * NR + v * VL, bias ? VADD(acc[i][v], vbias[v]) : acc[i][v]);
        for (int i = 0; i < rows; i++)
            for (int t = 0; t < nv * VL; t++) tile[i * NR + t] = gg_sigmoid(tile[i * NR + t]);
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = VLOADU(tile + i * NR + v * VL);
    }
#pragma GCC unroll 16
    for (int i = 0; i < rows; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            real *ct = c + i * ldc + v * VL;
            vec r = acc[i][v];
            if (act != GG_ACT_SIGMOID) {
                if (bias) r = VADD(r, vbias[v]);
                if (act == GG_ACT_RELU) r = VMAX(zero, r);   /* max(0, NaN) is the second operand: NaN kept */
            }
            if (whole) VSTOREU(ct, r);
            else VSTOREM(ct, mk[v], r);
        }
    }
}

/* One tile: the k loop is compiled for row counts in steps of MR/3 (MR/2 for the portable 4×4), and
 * a tile with mr rows runs the smallest that covers them (gemm_tile_rows). */
static inline int64_t gemm_tile_rows(int64_t mr) {
#if MR % 3 == 0
    return mr <= MR / 3 ? MR / 3 : mr <= 2 * MR / 3 ? 2 * MR / 3 : mr <= 5 * MR / 6 ? 5 * MR / 6 : MR;
#else
    return mr <= MR / 2 ? MR / 2 : MR;
#endif
}

static void gemm_micro(int64_t kc, const real *restrict ap, int64_t a_rs, int64_t a_cs, const real *restrict bp,
                       int64_t ldb, real *restrict c, int64_t ldc, int64_t mr, int64_t nr, real alpha, real beta,
                       const gg_epilogue *ep, const real *bias) {
    /* a tile at most one vector wide (an output layer of 10 classes) runs a k loop over one vector:
     * the second one's multiply-adds would all be masked off */
#define GEMM_TILE(rows) \
    (NV > 1 && nr <= VL ? gemm_tile(rows, 1, kc, ap, a_rs, a_cs, bp, ldb, c, ldc, mr, nr, alpha, beta, ep, bias) \
                        : gemm_tile(rows, NV, kc, ap, a_rs, a_cs, bp, ldb, c, ldc, mr, nr, alpha, beta, ep, bias))
    switch (gemm_tile_rows(mr)) {
#if MR % 3 == 0
    case MR / 3: GEMM_TILE(MR / 3); break;
    case 2 * MR / 3: GEMM_TILE(2 * MR / 3); break;
    case 5 * MR / 6: GEMM_TILE(5 * MR / 6); break;
#else
    case MR / 2: GEMM_TILE(MR / 2); break;
#endif
    default: GEMM_TILE(MR); break;
    }
#undef GEMM_TILE
}

/* When a thread's share has at most DIRECT_B_MAX_ROWS rows, B (untransposed) is read in place instead of
 * being packed: each B panel is then used by only a few A panels, too few to repay the copy. A wide B
 * (more than DIRECT_B_NARROW_COLS columns in the share) gets a lower bar, DIRECT_B_WIDE_MAX_ROWS: its rows
 * lie a page or more apart, so an unpacked panel's KC rows fall into the same few L1 sets and every A
 * panel reloads them from L2 (on a Zen 4, 1024-wide layers at 128 rows: 3.3-4.5 ms unpacked, 2.7-3.3
 * packed; at 48 rows unpacked still wins, 1.1-1.3 against 1.2-1.6 ms). */
#define DIRECT_B_MAX_ROWS (12 * MR)
#define DIRECT_B_WIDE_MAX_ROWS (6 * MR)
#define DIRECT_B_NARROW_COLS (4 * NR)
/* When it has at most this many columns, A's whole MR-row panels are read in place too: each is then
 * used by only a few B panels. The last, partial panel is always packed (zero rows, no reads past m). */
#define DIRECT_A_MAX_COLS (4 * NR)

/* The step that cuts `total` into as few blocks of at most `most` as possible, all of about the same
 * size (a multiple of `align`; `most` is one): 2048 rows with MB = 2040 run as 1032 + 1016, not as
 * 2040 + 8, whose B packing would serve 8 rows. */
static inline int64_t gemm_even_step(int64_t total, int64_t most, int64_t align) {
    int64_t blocks = (total + most - 1) / most;
    if (blocks < 1) blocks = 1;
    return ROUND_UP((total + blocks - 1) / blocks, align);
}

/* ---- one thread's share: C[i0:i1, j0:j1] with its own packing buffers ---- */
static void gemm_block(real *c, const real *a, const real *b, int64_t m, int64_t n, int64_t k, int32_t trans_a,
                       int32_t trans_b, real alpha, real beta, const gg_epilogue *ep, int64_t i0, int64_t i1,
                       int64_t j0, int64_t j1, real *ap, real *bp) {
    const real *bias = ep ? (const real *)ep->bias : NULL;
    int64_t direct_b_rows = j1 - j0 <= DIRECT_B_NARROW_COLS ? DIRECT_B_MAX_ROWS : DIRECT_B_WIDE_MAX_ROWS;
    int direct_b = !trans_b && i1 - i0 <= direct_b_rows;
    int direct_a = j1 - j0 <= DIRECT_A_MAX_COLS;
    const gemm_blocks *bl = gemm_blocking();
    int64_t mb_step = gemm_even_step(i1 - i0, bl->mb, MR), nb_step = gemm_even_step(j1 - j0, bl->nb, NR);
    int64_t kc_step = gemm_even_step(k, bl->kc, 8);
    for (int64_t ib = i0; ib < i1; ib += mb_step) {
        int64_t mb = MIN(mb_step, i1 - ib);
        /* rows of A read in place: whole panels, and a last one whose row count has its own k loop
         * (that loop reads exactly those rows; any other count is copied into a padded panel) */
        int64_t a_whole = direct_a ? mb / MR * MR : 0;
        if (direct_a && gemm_tile_rows(mb - a_whole) == mb - a_whole) a_whole = mb;
        for (int64_t pb = 0; pb < k; pb += kc_step) {
            int64_t kc = MIN(kc_step, k - pb);
            real be = pb == 0 ? beta : (real)1;             /* later K blocks accumulate */
            const gg_epilogue *last = pb + kc >= k ? ep : NULL; /* epilogue on the final pass only */
            if (a_whole < mb && direct_a && !trans_a) {
                /* the last rows of an in-place A: copy them as they are (cheap, no transpose) into an MR-row
                 * block padded with zero rows, read like A itself with row stride kc */
                real *dst = ap + a_whole * kc;
                int64_t rows = mb - a_whole;
                for (int64_t i = 0; i < rows; i++)
                    memcpy(dst + i * kc, a + (ib + a_whole + i) * k + pb, (size_t)kc * sizeof(real));
                memset(dst + rows * kc, 0, (size_t)((MR - rows) * kc) * sizeof(real));
            } else if (a_whole < mb) {
                gemm_pack_a(ap + a_whole * kc, a, m, k, trans_a, ib + a_whole, mb - a_whole, pb, kc);
            }
            for (int64_t jb = j0; jb < j1; jb += nb_step) {
                int64_t nb = MIN(nb_step, j1 - jb);
                if (!direct_b) gemm_pack_b(bp, b, n, k, trans_b, pb, kc, jb, nb);
                for (int64_t ir = 0; ir < mb; ir += MR) {
                    const real *apanel = ap + ir * kc;
                    int64_t a_rs = 1, a_cs = MR;
                    if (ir < a_whole) {
                        apanel = trans_a ? a + pb * m + ib + ir : a + (ib + ir) * k + pb;
                        a_rs = trans_a ? 1 : k;
                        a_cs = trans_a ? m : 1;
                    } else if (direct_a && !trans_a) {
                        a_rs = kc;   /* the copied last rows */
                        a_cs = 1;
                    }
                    for (int64_t jr = 0; jr < nb; jr += NR) {
                        const real *bpanel = direct_b ? b + pb * n + jb + jr : bp + jr * kc;
                        gemm_micro(kc, apanel, a_rs, a_cs, bpanel, direct_b ? n : NR, c + (ib + ir) * n + jb + jr, n,
                                   MIN(MR, mb - ir), MIN(NR, nb - jr), alpha, be, last,
                                   last && bias ? bias + jb + jr : NULL);
                    }
                    if (last && last->hook)
                        last->hook(last->ctx, c + (ib + ir) * n + jb, ib + ir, jb, MIN(MR, mb - ir), nb);
                }
            }
        }
    }
}

/* Bytes of packing buffer one thread needs for an (m,n,k) product: an A block and a B block. */
static int64_t gemm_thread_bytes(int64_t m, int64_t n, int64_t k) {
    const gemm_blocks *bl = gemm_blocking();
    int64_t kc = MIN(bl->kc, k);
    int64_t a_bytes = ROUND_UP(MIN(bl->mb, m), MR) * kc * (int64_t)sizeof(real);
    int64_t b_bytes = kc * ROUND_UP(MIN(bl->nb, n), NR) * (int64_t)sizeof(real);
    return ROUND_UP(a_bytes, GEMM_ALIGN) + ROUND_UP(b_bytes, GEMM_ALIGN);
}

/* Workspace for an (m,n,k) product on up to `threads` threads (0 when nothing needs packing). */
int64_t KERNEL(gemm_workspace_bytes)(int64_t m, int64_t n, int64_t k, int32_t threads) {
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    if (threads < 1) threads = 1;
    return GEMM_ALIGN + threads * gemm_thread_bytes(m, n, k);
}

/* The tm×tn thread grid with the least work on the busiest thread (its padded block's multiply-adds
 * plus its packing), over the factorisations of nt; *rows, *cols get the block sizes. (A rule that
 * preferred row splits, cut rows in steps of MR/3 and counted a partial tile's real k loop was tried
 * and not kept: faster in a C harness's fastest calls, slower for square float64 in bench/gemm.py;
 * docs/performance.md has the numbers.) */
static void gemm_grid(int64_t m, int64_t n, int64_t k, int nt, int64_t *rows, int64_t *cols) {
    double best = -1;
    for (int tm = 1; tm <= nt; tm++) {
        if (nt % tm) continue;
        int tn = nt / tm;
        int64_t r = ROUND_UP((m + tm - 1) / tm, MR), cl = ROUND_UP((n + tn - 1) / tn, NR);
        double cost = (double)r * cl * k + 4.0 * (double)(r + cl) * k;
        if (best < 0 || cost < best) {
            best = cost;
            *rows = r;
            *cols = cl;
        }
    }
}

/* c is (m,n) = act(alpha·op(a)·op(b) + beta·c + bias); op(a) is (m,k), op(b) is (k,n);
 * work holds work_bytes of packing space (see gemm_workspace_bytes) */
void KERNEL(gemm)(real *c, const real *a, const real *b, int64_t m, int64_t n, int64_t k, int32_t trans_a,
                  int32_t trans_b, double alpha, double beta, const gg_epilogue *ep, void *work, int64_t work_bytes) {
    if (m <= 0 || n <= 0) return;
    if (ep && ep->bias == NULL && ep->act == GG_ACT_NONE && ep->hook == NULL) ep = NULL;
    if (k <= 0) {
        /* no product: C = beta·C, then the epilogue */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * n + j] = beta == 0 ? (real)0 : (real)beta * c[i * n + j];
        if (ep) gemm_epilogue(c, n, m, n, (const real *)ep->bias, ep->act);
        if (ep && ep->hook)
            for (int64_t i = 0; i < m; i += MR)
                for (int64_t j = 0; j < n; j += gemm_blocking()->nb)
                    ep->hook(ep->ctx, c + i * n + j, i, j, MIN(MR, m - i), MIN(gemm_blocking()->nb, n - j));
        return;
    }
    /* align the workspace and see how many threads it can hold */
    uintptr_t base = (uintptr_t)work, aligned = ROUND_UP(base, (uintptr_t)GEMM_ALIGN);
    int64_t usable = work ? work_bytes - (int64_t)(aligned - base) : 0;
    int64_t per_thread = gemm_thread_bytes(m, n, k);
    int64_t fit = usable > 0 ? usable / per_thread : 0;
    if (fit < 1) {
        /* no room to pack (a caller without a workspace): the plain loop is still correct */
        KERNEL(gemm_ref)(c, a, b, m, n, k, trans_a, trans_b, alpha, beta, ep);
        return;
    }
    int nt = gg_threads();
    if ((double)m * n * k < (double)GEMM_SERIAL_MACS) nt = 1;
    if (nt > fit) nt = (int)fit;
    int64_t rows = ROUND_UP(m, MR), cols = ROUND_UP(n, NR);
    if (nt > 1) gemm_grid(m, n, k, nt, &rows, &cols);
    int64_t tm = (m + rows - 1) / rows, tn = (n + cols - 1) / cols;
    nt = (int)(tm * tn);
    char *ws = (char *)aligned;
    const gemm_blocks *bl = gemm_blocking();
    int64_t a_bytes = ROUND_UP(ROUND_UP(MIN(bl->mb, m), MR) * MIN(bl->kc, k) * (int64_t)sizeof(real), GEMM_ALIGN);
    real al = (real)alpha, be = (real)beta;
    if (nt == 1) {   /* no parallel region at all: small products are common in programs */
        gemm_block(c, a, b, m, n, k, trans_a, trans_b, al, be, ep, 0, m, 0, n, (real *)ws, (real *)(ws + a_bytes));
        return;
    }

#pragma omp parallel num_threads(nt)
    {
        /* the runtime may give fewer threads (nested in another parallel region): loop over the blocks */
        for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
            int64_t i0 = (t / tn) * rows, j0 = (t % tn) * cols;
            int64_t i1 = MIN(m, i0 + rows), j1 = MIN(n, j0 + cols);
            real *ap = (real *)(ws + t * per_thread), *bp = (real *)(ws + t * per_thread + a_bytes);
            if (i0 < i1 && j0 < j1)
                gemm_block(c, a, b, m, n, k, trans_a, trans_b, al, be, ep, i0, i1, j0, j1, ap, bp);
        }
    }
}

/* The ISA the micro-kernel was compiled for ("avx512", "avx2", "sse2" or "portable") and its tile. */
const char *KERNEL(gemm_kernel_info)(int32_t *mr, int32_t *nr) {
    if (mr) *mr = MR;
    if (nr) *nr = NR;
    return GEMM_ISA;
}

/* The micro-kernel's ISA and tile, the cache blocks chosen for this machine and the cache sizes
 * they came from (reported, or the fallbacks). */
void KERNEL(gemm_config)(gg_gemm_config *out) {
    const gemm_blocks *bl = gemm_blocking();
    out->isa = GEMM_ISA;
    out->mr = MR;
    out->nr = NR;
    out->kc = bl->kc;
    out->nb = bl->nb;
    out->mb = bl->mb;
    out->l1d_bytes = bl->l1d;
    out->l2_bytes = bl->l2;
    out->l3_bytes = bl->l3;
    out->serial_macs = GEMM_SERIAL_MACS;
}

#undef GEMM_ISA
#undef VL
#undef VLOAD
#undef VLOADU
#undef VSTOREU
#undef VBCAST
#undef VSET1
#undef VFMA
#undef VMUL
#undef VZERO
#undef VADD
#undef VMAX
#undef VMASK
#undef VLOADM
#undef VSTOREM
#undef NV
#undef MR
#undef NR
#undef MIN
#undef GEMM_LINE_REALS
#undef GEMM_PF_ROWS
#undef GEMM_PACK_T_BLOCK
#undef ROUND_UP
