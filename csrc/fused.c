/* fused.c — the fused instruction (GG_OP_FUSED): a short list of elementwise ops interpreted
 * per block of GG_FUSED_BLOCK elements, so intermediates live in L1-sized stack blocks and
 * never reach memory; optionally headed by a matrix product whose output row blocks the list
 * finishes while they are still in cache (matmul + bias + activation, matmul + activation
 * backward). Each op computes exactly what its own kernel in elementwise.c / loss.c computes,
 * so fused results are the same bits. The dims layout is documented at GG_OP_FUSED in
 * graphgrad.h. Compiled through kernels_f*.c, after elementwise.c and gemm.c. */
#ifndef KERNEL
#error "compile fused.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>

#ifndef GG_FUSED_CONSTANTS
#define GG_FUSED_CONSTANTS
#define GG_FUSED_BLOCK 256      /* elements per block: a handful of blocks fit in L1 */
#define GG_FUSED_MAX_OPS 8
#define GG_FUSED_MAX_IN 6
#define GG_FUSED_REF_TEMP 8
#define GG_FUSED_REF_GEMM 16
#endif

/* Run the op list over elements [s, s + len) of the output (len <= GG_FUSED_BLOCK). */
static void KERNEL(fused_block)(real *out, const real *const *in, const int64_t *dims, const double *attrs,
                                int64_t s, int64_t len) {
    real tmp[GG_FUSED_MAX_OPS][GG_FUSED_BLOCK];
    real fill[GG_FUSED_MAX_IN][GG_FUSED_BLOCK];
    const real *ref[GG_FUSED_REF_GEMM + 1] = {0};
    int64_t cols = dims[4] > 0 ? dims[4] : 1;
    for (int k = 0; k < GG_FUSED_MAX_IN; k++) {
        const real *x = in[k];
        if (!x) continue;
        if (dims[8 + k] == 1) {            /* a scalar, broadcast */
            for (int64_t t = 0; t < len; t++) fill[k][t] = x[0];
            ref[k] = fill[k];
        } else if (dims[8 + k] == 2) {     /* a (cols,) row, broadcast over the rows */
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
        int64_t packed = dims[14 + j];
        int32_t op = (int32_t)(packed & 0xffff);
        int r0 = (int)((packed >> 16) & 0xffff) - 1, r1 = (int)((packed >> 32) & 0xffff) - 1,
            r2 = (int)((packed >> 48) & 0xffff) - 1;
        const real *x = r0 >= 0 ? ref[r0] : NULL, *y = r1 >= 0 ? ref[r1] : NULL, *z = r2 >= 0 ? ref[r2] : NULL;
        real *o = j == n_ops - 1 ? out + s : tmp[j];
        switch (op) {
        case GG_OP_ADD: for (int64_t t = 0; t < len; t++) o[t] = x[t] + y[t]; break;
        case GG_OP_SUB: for (int64_t t = 0; t < len; t++) o[t] = x[t] - y[t]; break;
        case GG_OP_MUL: for (int64_t t = 0; t < len; t++) o[t] = x[t] * y[t]; break;
        case GG_OP_DIV: for (int64_t t = 0; t < len; t++) o[t] = x[t] / y[t]; break;
        case GG_OP_NEG: for (int64_t t = 0; t < len; t++) o[t] = -x[t]; break;
        case GG_OP_ABS: for (int64_t t = 0; t < len; t++) o[t] = fabs(x[t]); break;
        case GG_OP_SIGN: for (int64_t t = 0; t < len; t++) o[t] = (real)((x[t] > 0) - (x[t] < 0)); break;
        case GG_OP_COPY: for (int64_t t = 0; t < len; t++) o[t] = x[t]; break;
        case GG_OP_RELU: for (int64_t t = 0; t < len; t++) o[t] = x[t] > 0 ? x[t] : (real)0; break;
        case GG_OP_SIGMOID: for (int64_t t = 0; t < len; t++) o[t] = stable_sigmoid(x[t]); break;
        case GG_OP_RELU_BACKWARD:   /* x: relu's input (or output), y: dy */
            for (int64_t t = 0; t < len; t++) o[t] = x[t] > 0 ? y[t] : (real)0;
            break;
        case GG_OP_SIGMOID_BACKWARD:   /* x: sigmoid's output, y: dy */
            for (int64_t t = 0; t < len; t++) o[t] = y[t] * x[t] * ((real)1 - x[t]);
            break;
        case GG_OP_EXP: for (int64_t t = 0; t < len; t++) o[t] = gg_exp(x[t]); break;
        case GG_OP_LOG: for (int64_t t = 0; t < len; t++) o[t] = gg_log(x[t]); break;
        case GG_OP_SQRT: for (int64_t t = 0; t < len; t++) o[t] = sqrt(x[t]); break;
        case GG_OP_TANH: for (int64_t t = 0; t < len; t++) o[t] = gg_tanh(x[t]); break;
        case GG_OP_SOFTPLUS: for (int64_t t = 0; t < len; t++) o[t] = stable_softplus(x[t]); break;
        case GG_OP_TANH_BACKWARD:   /* x: tanh's output, y: dy */
            for (int64_t t = 0; t < len; t++) o[t] = y[t] * ((real)1 - x[t] * x[t]);
            break;
        case GG_OP_SOFTPLUS_BACKWARD:   /* x: softplus's input, y: dy */
            for (int64_t t = 0; t < len; t++) o[t] = y[t] * stable_sigmoid(x[t]);
            break;
        case GG_OP_LEAKY_RELU: {
            const real p = (real)attrs[j];
            for (int64_t t = 0; t < len; t++) o[t] = x[t] > 0 ? x[t] : p * x[t];
            break;
        }
        case GG_OP_LEAKY_RELU_BACKWARD: {   /* x: the input, y: dy */
            const real p = (real)attrs[j];
            for (int64_t t = 0; t < len; t++) o[t] = x[t] > 0 ? y[t] : p * y[t];
            break;
        }
        case GG_OP_ELU: {
            const real p = (real)attrs[j];
            for (int64_t t = 0; t < len; t++) o[t] = x[t] > 0 ? x[t] : p * gg_expm1(x[t]);
            break;
        }
        case GG_OP_ELU_BACKWARD: {   /* x: the input, y: dy */
            const real p = (real)attrs[j];
            for (int64_t t = 0; t < len; t++) o[t] = x[t] > 0 ? y[t] : y[t] * p * gg_exp(x[t]);
            break;
        }
        case GG_OP_MSE_BACKWARD: {   /* x: p, y: target, z: the scalar dout */
            real c = (real)(2.0 * attrs[j] * (double)z[0]);
            for (int64_t t = 0; t < len; t++) o[t] = c * (x[t] - y[t]);
            break;
        }
        case GG_OP_L1_BACKWARD: {
            real c = (real)(attrs[j] * (double)z[0]);
            for (int64_t t = 0; t < len; t++) {
                real d = x[t] - y[t];
                o[t] = c * (real)((d > 0) - (d < 0));
            }
            break;
        }
        default:   /* the interpreter checked the opcodes before calling */
            break;
        }
        ref[GG_FUSED_REF_TEMP + j] = o;
    }
}

/* Run the op list over output elements [begin, end) in blocks. */
static void KERNEL(fused_range)(real *out, const real *const *in, const int64_t *dims, const double *attrs,
                                int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; s += GG_FUSED_BLOCK) {
        int64_t len = end - s < GG_FUSED_BLOCK ? end - s : GG_FUSED_BLOCK;
        KERNEL(fused_block)(out, in, dims, attrs, s, len);
    }
}

/* The GEMM head's epilogue hook: the op list finishes each block of C the GEMM hands over, while it
 * is still in cache (rows row0.., columns col0.. of the (dims[3], dims[4]) product in out). */
typedef struct {
    real *out;
    const real *const *in;
    const int64_t *dims;
    const double *attrs;
} KERNEL(fused_ctx);

static void KERNEL(fused_hook)(void *ctx, void *c, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
    const KERNEL(fused_ctx) *f = ctx;
    (void)c;
    if (col0 == 0 && cols == f->dims[4]) {   /* whole rows: one contiguous range, fewer short blocks */
        KERNEL(fused_range)(f->out, f->in, f->dims, f->attrs, row0 * cols, (row0 + rows) * cols);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        int64_t s = (row0 + r) * f->dims[4] + col0;
        KERNEL(fused_range)(f->out, f->in, f->dims, f->attrs, s, s + cols);
    }
}

/* out is (dims[0],) = the op list applied to the inputs (and to the head's product, when any) */
void KERNEL(fused)(real *out, const real *const *in, const int64_t *dims, const double *attrs, void *work,
                   int64_t work_bytes) {
    int64_t n = dims[0];
    if (n <= 0) return;
    if (!dims[2]) {
        int64_t n_blocks = (n + GG_FUSED_BLOCK - 1) / GG_FUSED_BLOCK;
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t blk = 0; blk < n_blocks; blk++) {
                int64_t s = blk * GG_FUSED_BLOCK;
                KERNEL(fused_range)(out, in, dims, attrs, s, s + GG_FUSED_BLOCK < n ? s + GG_FUSED_BLOCK : n);
            }
        );
        return;
    }
    int64_t m = dims[3], cols = dims[4], k = dims[5];
    int32_t trans_a = (int32_t)dims[6], trans_b = (int32_t)dims[7];
    KERNEL(fused_ctx) ctx = {out, in, dims, attrs};
    gg_epilogue ep = {NULL, GG_ACT_NONE, KERNEL(fused_hook), &ctx};
    KERNEL(gemm)(out, in[0], in[1], m, cols, k, trans_a, trans_b, 1.0, 0.0, &ep, work, work_bytes);
}
