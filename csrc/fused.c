/* fused.c — the fused instruction (GG_OP_FUSED): a short list of elementwise ops interpreted
 * per block of GG_FUSED_BLOCK elements, so intermediates live in L1-sized stack blocks and
 * never reach memory; optionally headed by a matrix product whose output row blocks the list
 * finishes while they are still in cache (matmul + bias + activation, matmul + activation
 * backward). The ops it runs are the fusable rows of the op table (csrc/ops.def): each calls the
 * same per-element function as its own kernel (elementwise.c), so fused results are the same
 * bits. The dims layout is documented at GG_OP_FUSED in ops.def. Compiled through kernels_f*.c,
 * after elementwise.c and gemm.c. */
#ifndef KERNEL
#error "compile fused.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>

#ifndef GG_FUSED_BLOCK
#define GG_FUSED_BLOCK 256      /* elements per block: a handful of blocks fit in L1 */
#endif

/* Run the op list over elements [s, s + len) of the output (len <= GG_FUSED_BLOCK). gg_fused checked
 * the list first (gg_fused_list_status, from the same table rows as the cases here); an op without a
 * case still returns an error rather than leave the block unwritten. */
static int KERNEL(fused_block)(real *out, const real *const *in, const int64_t *dims, const double *attrs,
                                int64_t s, int64_t len) {
    real tmp[GG_FUSED_MAX_OPS][GG_FUSED_BLOCK];
    real fill[GG_MAX_INPUTS][GG_FUSED_BLOCK];
    const real *ref[GG_FUSED_REF_GEMM + 1] = {0};
    int64_t cols = dims[4] > 0 ? dims[4] : 1;
    for (int k = 0; k < GG_MAX_INPUTS; k++) {
        const real *x = in[k];
        if (!x) continue;
        if (dims[GG_FUSED_MODES + k] == 1) {            /* a scalar, broadcast */
            for (int64_t t = 0; t < len; t++) fill[k][t] = x[0];
            ref[k] = fill[k];
        } else if (dims[GG_FUSED_MODES + k] == 2) {     /* a (cols,) row, broadcast over the rows */
            int64_t c = s % cols;
            for (int64_t t = 0; t < len; t++) {
                fill[k][t] = x[c];
                if (++c == cols) c = 0;
            }
            ref[k] = fill[k];
        } else {
            ref[k] = x + s;
        }
    }
    if (dims[2]) ref[GG_FUSED_REF_GEMM] = out + s;   /* the head's result is already in out */
    int64_t n_ops = dims[1];
    for (int64_t j = 0; j < n_ops; j++) {
        int64_t packed = dims[GG_FUSED_HEADER + j];
        int32_t op = (int32_t)(packed & 0xffff);
        int r0 = (int)((packed >> 16) & 0xffff) - 1, r1 = (int)((packed >> 32) & 0xffff) - 1,
            r2 = (int)((packed >> 48) & 0xffff) - 1;
        const real *x = r0 >= 0 ? ref[r0] : NULL, *y = r1 >= 0 ? ref[r1] : NULL, *z = r2 >= 0 ? ref[r2] : NULL;
        real *o = j == n_ops - 1 ? out + s : tmp[j];
        switch (op) {
#define GG_BINARY(E, CODE, NAME, BODY) \
        case GG_OP_##E: for (int64_t t = 0; t < len; t++) o[t] = NAME##_element(x[t], y[t]); break;
#define GG_UNARY(E, CODE, NAME, BODY) \
        case GG_OP_##E: for (int64_t t = 0; t < len; t++) o[t] = NAME##_element(x[t]); break;
#define GG_UNARY_P(E, CODE, NAME, BODY)                                                 \
        case GG_OP_##E: {                                                               \
            const real p = (real)attrs[j];                                              \
            for (int64_t t = 0; t < len; t++) o[t] = NAME##_element(x[t], p);           \
            break;                                                                      \
        }
/* x: the saved tensor, y: dy */
#define GG_BACKWARD(E, CODE, NAME, BODY) \
        case GG_OP_##E: for (int64_t t = 0; t < len; t++) o[t] = NAME##_element(x[t], y[t]); break;
#define GG_BACKWARD_P(E, CODE, NAME, BODY)                                              \
        case GG_OP_##E: {                                                               \
            const real p = (real)attrs[j];                                              \
            for (int64_t t = 0; t < len; t++) o[t] = NAME##_element(x[t], y[t], p);     \
            break;                                                                      \
        }
/* x: the prediction, y: the target, z: the scalar dout; attrs[j]: the scale */
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY)                                     \
        case GG_OP_##E: {                                                               \
            const real c = NAME##_coefficient(attrs[j], (double)z[0]);                  \
            for (int64_t t = 0; t < len; t++) o[t] = NAME##_element(c, x[t], y[t]);     \
            break;                                                                      \
        }
#include "ops_table.h"
        default:
            return GG_ERR_UNKNOWN_OPCODE;
        }
        ref[GG_FUSED_REF_TEMP + j] = o;
    }
    return GG_OK;
}

/* Run the op list over output elements [begin, end) in blocks; stops at the first error. */
static int KERNEL(fused_range)(real *out, const real *const *in, const int64_t *dims, const double *attrs,
                               int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; s += GG_FUSED_BLOCK) {
        int64_t len = end - s < GG_FUSED_BLOCK ? end - s : GG_FUSED_BLOCK;
        int status = KERNEL(fused_block)(out, in, dims, attrs, s, len);
        if (status != GG_OK) return status;
    }
    return GG_OK;
}

/* The GEMM head's epilogue hook: the op list finishes each block of C the GEMM hands over, while it
 * is still in cache (rows row0.., columns col0.. of the (dims[3], dims[4]) product in out). */
typedef struct {
    real *out;
    const real *const *in;
    const int64_t *dims;
    const double *attrs;
    int status;             /* GG_OK, or the first error a block returned */
} KERNEL(fused_ctx);

static void KERNEL(fused_hook)(void *ctx, void *c, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
    KERNEL(fused_ctx) *f = ctx;
    (void)c;
    if (col0 == 0 && cols == f->dims[4]) {   /* whole rows: one contiguous range, fewer short blocks */
        int status = KERNEL(fused_range)(f->out, f->in, f->dims, f->attrs, row0 * cols, (row0 + rows) * cols);
        if (status != GG_OK) f->status = status;
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        int64_t s = (row0 + r) * f->dims[4] + col0;
        int status = KERNEL(fused_range)(f->out, f->in, f->dims, f->attrs, s, s + cols);
        if (status != GG_OK) f->status = status;
    }
}

/* out is (dims[0],) = the op list applied to the inputs (and to the head's product, when any). The list
 * is checked before anything is written; a block's error can only be an op the check let through,
 * which the shared table rows rule out (the status is written by at most the failing threads). */
int32_t KERNEL(fused)(real *out, const real *const *in, const int64_t *dims, const double *attrs, void *work,
                      int64_t work_bytes) {
    uint32_t present = 0;
    for (int k = 0; k < GG_MAX_INPUTS; k++)
        if (in[k]) present |= 1u << k;
    int status = gg_fused_list_status(dims, present);
    if (status != GG_OK) return status;
    int64_t n = dims[0];
    if (n <= 0) return GG_OK;
    if (!dims[2]) {
        int64_t n_blocks = (n + GG_FUSED_BLOCK - 1) / GG_FUSED_BLOCK;
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t blk = 0; blk < n_blocks; blk++) {
                int64_t s = blk * GG_FUSED_BLOCK;
                int st = KERNEL(fused_range)(out, in, dims, attrs, s, s + GG_FUSED_BLOCK < n ? s + GG_FUSED_BLOCK : n);
                if (st != GG_OK) status = st;
            }
        );
        return status;
    }
    int64_t m = dims[3], cols = dims[4], k = dims[5];
    int32_t trans_a = (int32_t)dims[6], trans_b = (int32_t)dims[7];
    KERNEL(fused_ctx) ctx = {out, in, dims, attrs, GG_OK};
    gg_epilogue ep = {NULL, GG_ACT_NONE, KERNEL(fused_hook), &ctx};
    KERNEL(gemm)(out, in[0], in[1], m, cols, k, trans_a, trans_b, 1.0, 0.0, &ep, work, work_bytes);
    return ctx.status;
}
