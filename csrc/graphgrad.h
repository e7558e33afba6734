/* graphgrad.h — the whole C ABI of graphgrad's core, and the one header cffi reads.
 *
 * Everything between the BEGIN/END CDEF markers is plain C declarations (no macros, no
 * attributes): graphgrad/_build_ffi.py hands exactly that part to cffi's cdef.
 *
 * Conventions: outputs first, gradients named d…, every kernel exists as _f32 and _f64
 * (both compiled from one source, see csrc/kernels_f32.c), shapes in a comment above each.
 */
#ifndef GRAPHGRAD_H
#define GRAPHGRAD_H
#include <stdint.h>

/* BEGIN CDEF */

/* ---- status codes returned by gg_program_run ---- */
enum gg_status {
    GG_OK = 0,
    GG_ERR_UNKNOWN_OPCODE = 1,
    GG_ERR_BAD_DTYPE = 2,
    GG_ERR_NUMERICS = 3,
    GG_ERR_BAD_INSTR = 4,
    GG_ERR_BAD_INDEX = 5,     /* an integer label outside [0, classes) */
    GG_ERR_DIVERGED = 6,      /* gg_program_run_steps: a step's loss was NaN/Inf; its update did not run */
    GG_ERR_BAD_STEPS = 7      /* gg_program_run_steps: a row index or a buffer index out of range */
};

/* ---- dtypes of buffers ---- */
enum gg_dtype {
    GG_F32 = 0,
    GG_F64 = 1,
    GG_I64 = 2
};

/* ---- opcodes: one per OpDef in graphgrad/ops/ ---- */
enum gg_opcode {
    /* elementwise, binary with broadcasting (dims: rank, shape[rank], stride_a[rank], stride_b[rank]) */
    GG_OP_ADD = 1,
    GG_OP_SUB = 2,
    GG_OP_MUL = 3,
    GG_OP_DIV = 4,
    GG_OP_POW = 5,
    GG_OP_MAXIMUM = 6,
    GG_OP_MINIMUM = 7,
    GG_OP_MAXIMUM_MASK = 8,   /* 1 where a > b, 0.5 where a == b, else 0: maximum's gradient mask */
    GG_OP_EQUAL = 9,          /* 1 where a == b, else 0 */
    /* elementwise, unary (dims[0] = element count) */
    GG_OP_NEG = 20,
    GG_OP_ABS = 21,
    GG_OP_SIGN = 22,
    GG_OP_COPY = 23,
    GG_OP_EXP = 24,
    GG_OP_LOG = 25,
    GG_OP_SQRT = 26,
    GG_OP_POW_SCALAR = 27,    /* attrs[0] = exponent */
    GG_OP_CLIP = 28,          /* attrs[0] = lo, attrs[1] = hi */
    GG_OP_CLIP_BACKWARD = 29,
    /* activations and their backward kernels */
    GG_OP_RELU = 40,
    GG_OP_RELU_BACKWARD = 41,
    GG_OP_SIGMOID = 42,
    GG_OP_SIGMOID_BACKWARD = 43,
    GG_OP_LEAKY_RELU = 44,    /* attrs[0] = negative slope */
    GG_OP_LEAKY_RELU_BACKWARD = 45,
    GG_OP_ELU = 46,           /* attrs[0] = alpha */
    GG_OP_ELU_BACKWARD = 47,
    GG_OP_GELU = 48,          /* dims[1] = 1 for the tanh approximation, 0 for the exact erf form */
    GG_OP_GELU_BACKWARD = 49,
    GG_OP_TANH = 50,
    GG_OP_TANH_BACKWARD = 51,
    GG_OP_SOFTPLUS = 52,
    GG_OP_SOFTPLUS_BACKWARD = 53,
    /* reductions and their inverse (dims: rank, in_shape[rank], out_stride[rank]; attrs[0] = scale) */
    GG_OP_SUM = 60,
    GG_OP_EXPAND = 61,
    GG_OP_MAX = 62,           /* dims as GG_OP_SUM, no attrs */
    /* softmax family along one axis (dims: outer, n, inner: the axis has n elements, stride inner) */
    GG_OP_SOFTMAX = 63,
    GG_OP_SOFTMAX_BACKWARD = 64,
    GG_OP_LOG_SOFTMAX = 65,
    GG_OP_LOG_SOFTMAX_BACKWARD = 66,
    /* matrix product (dims: M, N, K, trans_a, trans_b, act; attrs: alpha, beta; in[2]: bias (N,) or -1;
       in[3] (optional): a float64 scalar alpha is multiplied by, e.g. the learning rate of a plain SGD
       update run as w = w - lr·a·b; act is a gg_act, 0 = none; packs into gg_program.workspace) */
    GG_OP_MATMUL = 80,
    /* losses (dims[0] = element count; attrs[0] = scale, 1/n for the mean) */
    GG_OP_MSE = 100,
    GG_OP_MSE_BACKWARD = 101,
    GG_OP_L1 = 102,
    GG_OP_L1_BACKWARD = 103,
    GG_OP_HUBER = 104,        /* attrs[1] = delta */
    GG_OP_HUBER_BACKWARD = 105,
    /* (dims[1] of a backward: 0 = gradient for the prediction/logits, 1 = for the target) */
    GG_OP_BCE = 106,          /* binary cross-entropy from logits */
    GG_OP_BCE_BACKWARD = 107,
    /* softmax cross-entropy over the last axis (dims: rows, classes; attrs[0] = scale) */
    GG_OP_SOFTMAX_CE = 108,   /* probability (or one-hot) targets, same shape as the logits */
    GG_OP_SOFTMAX_CE_BACKWARD = 109,
    GG_OP_SOFTMAX_CE_LABELS = 110,   /* int64 class labels, one per row */
    GG_OP_SOFTMAX_CE_LABELS_BACKWARD = 111,
    /* optimizer updates: write variables in place */
    GG_OP_INCREMENT = 120,
    GG_OP_SGD_UPDATE = 121,
    GG_OP_RMSPROP_UPDATE = 122,
    GG_OP_ADAM_UPDATE = 123,
    GG_OP_ADAMAX_UPDATE = 124,
    GG_OP_NADAM_UPDATE = 125,
    GG_OP_ADAGRAD_UPDATE = 126,
    GG_OP_ADADELTA_UPDATE = 127,
    GG_OP_FTRL_UPDATE = 128,
    GG_OP_LION_UPDATE = 129,
    /* gradient clipping inside the step (see csrc/optim.c) */
    GG_OP_GRAD_SUMSQ = 140,
    GG_OP_CLIP_BY_NORM = 141,
    GG_OP_CLIP_BY_VALUE = 142,
    /* shape ops: strided copies (dims: offset, rank, shape[rank], in_stride[rank]) */
    GG_OP_RESHAPE = 180,      /* dims[0] = element count: a plain copy */
    GG_OP_TRANSPOSE = 181,
    GG_OP_BROADCAST_TO = 182,
    GG_OP_SLICE = 183,
    GG_OP_SLICE_BACKWARD = 184,   /* zero the output, then write the input through the strided view */
    GG_OP_CONCAT = 185,       /* dims: outer, width of each input's block per outer index */
    GG_OP_CONCAT_PART = 186,  /* one input's block of a concat: a strided copy */
    /* a fused group (fused.c): an optional GEMM head, then up to 8 elementwise ops streamed in
     * blocks. in[0..5]: inputs (with a head, in[0] and in[1] are its operands). dims: [0] n output
     * elements, [1] n_ops, [2] has_gemm, [3] rows, [4] cols (n = rows*cols; a row input is
     * (cols,)), [5] k, [6] trans_a, [7] trans_b (the head is (rows,cols) = op(in0)·op(in1)),
     * [8..14) mode of in[k] (0 full, 1 scalar, 2 row), [14..14+n_ops) the ops, each packed as
     * opcode | (ref0+1)<<16 | (ref1+1)<<32 | (ref2+1)<<48 with refs 0..5 = in[k], 8+j = op j's
     * result, 16 = the head's result. attrs[j]: op j's real parameter (a loss's scale).
     * The last op writes the output. */
    GG_OP_FUSED = 200,
    /* randomness (dims: n, seed; attrs[0] = rate; in[0] = a float64 counter) */
    GG_OP_DROPOUT_MASK = 210
};

/* One instruction. Buffer indices refer to gg_program.buffers; -1 means "absent". */
typedef struct gg_instr {
    int32_t opcode;
    int32_t dtype;
    int32_t out;
    int32_t n_in;
    int32_t in[6];
    int64_t out_size;     /* elements in the output buffer (used by check_numerics) */
    int64_t dims[32];     /* op-specific integer parameters, see the opcode comments */
    double attrs[8];      /* op-specific real parameters */
} gg_instr;

/* A compiled program: the instruction list and the table of buffer pointers it indexes. */
typedef struct gg_program {
    int32_t n_instr;
    gg_instr *instrs;
    int32_t n_buffers;
    void **buffers;
    int32_t check_numerics;   /* nonzero: stop at the first instruction whose output is not finite */
    int32_t failed_instr;     /* set by gg_program_run when it returns an error */
    void *workspace;          /* scratch for kernels that pack (GEMM), allocated once by the runtime */
    int64_t workspace_bytes;  /* its size: gg_program_workspace_bytes(p, threads) */
    double *profile_ns;       /* NULL, or n_instr counters: nanoseconds spent in each instruction, summed over runs */
} gg_program;

/* Run every instruction once, in order. Returns a gg_status; on error sets p->failed_instr. */
int gg_program_run(gg_program *p);

/* Many steps in one call (an epoch, or a chunk of one): for each step, gather the batch's rows
 * of the full arrays into the feed buffers, run the instructions, and record what the step
 * produced. Step s of a call covers positions [first_pos + s*batch_size, first_pos + (s+1)*batch_size)
 * of `order` (a permutation of the rows); order == NULL means position == row. */
typedef struct gg_steps {
    int32_t n_feeds;
    void *feed_dst[8];            /* each feed's gather buffer (the program's feed buffers point at them) */
    const void *feed_src[8];      /* the full arrays: n_rows rows of feed_row_bytes bytes each */
    int64_t feed_row_bytes[8];
    int64_t n_rows;
    const int64_t *order;         /* row permutation, or NULL */
    int64_t batch_size;
    int64_t first_pos;
    int64_t n_steps;
    int32_t dtype;                /* gg_dtype of the loss and prediction buffers */
    int32_t split;                /* instructions [0, split) compute the loss; [split, n_instr) update */
    int32_t loss_buf;             /* buffer index of the scalar loss, -1 for none */
    int32_t stop_on_nonfinite;    /* nonzero: a NaN/Inf loss stops the call before that step's update */
    double *losses;               /* out, n_steps: each step's loss before its update (or NULL) */
    int32_t pred_buf;             /* accuracy: buffer of the (batch, pred_cols) predictions, -1 for none */
    int32_t target_feed;          /* accuracy: which feed holds the targets (the program may not read it) */
    int64_t pred_cols;
    int32_t target_is_label;      /* targets are int64 class labels (else rows like the predictions) */
    double threshold;             /* accuracy with one prediction column: predicted class = pred > threshold */
    int64_t *correct;             /* out, n_steps: correct predictions per step (or NULL) */
    int32_t out_buf;              /* predict: buffer whose rows are copied out after each step, -1 for none */
    void *out_dst;                /* the rows go to out_dst at the step's positions */
    int64_t out_row_bytes;
    int64_t steps_done;           /* out: steps completed (all their instructions ran) */
} gg_steps;

/* Run s->n_steps steps of p as described above. Returns a gg_status; on GG_ERR_DIVERGED the
 * failing step is s->steps_done; on an instruction error p->failed_instr is set too. */
int gg_program_run_steps(gg_program *p, gg_steps *s);

/* Scratch bytes p->workspace needs to run every instruction on up to `threads` threads. */
int64_t gg_program_workspace_bytes(const gg_program *p, int32_t threads);

/* The name of an opcode the interpreter executes, or NULL when it does not know it. */
const char *gg_opcode_name(int32_t opcode);

/* Threads used by the parallel kernels (GRAPHGRAD_NUM_THREADS sets the initial value). */
void gg_set_num_threads(int32_t n);
int32_t gg_get_num_threads(void);

/* ---- elementwise.c ---- */
/* out, a, b are broadcast views over shape[rank]; strides in elements, 0 on broadcast axes */
void gg_add_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_sub_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_mul_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_div_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_add_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_sub_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_mul_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_div_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_pow_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_maximum_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_minimum_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_maximum_mask_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_equal_f32(float *out, const float *a, const float *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_pow_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_maximum_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_minimum_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_maximum_mask_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
void gg_equal_f64(double *out, const double *a, const double *b, int32_t rank, const int64_t *shape, const int64_t *stride_a, const int64_t *stride_b);
/* out and x are (n,) */
void gg_neg_f32(float *out, const float *x, int64_t n);
void gg_abs_f32(float *out, const float *x, int64_t n);
void gg_sign_f32(float *out, const float *x, int64_t n);
void gg_copy_f32(float *out, const float *x, int64_t n);
void gg_relu_f32(float *out, const float *x, int64_t n);
void gg_sigmoid_f32(float *out, const float *x, int64_t n);
void gg_neg_f64(double *out, const double *x, int64_t n);
void gg_abs_f64(double *out, const double *x, int64_t n);
void gg_sign_f64(double *out, const double *x, int64_t n);
void gg_copy_f64(double *out, const double *x, int64_t n);
void gg_relu_f64(double *out, const double *x, int64_t n);
void gg_sigmoid_f64(double *out, const double *x, int64_t n);
void gg_exp_f32(float *out, const float *x, int64_t n);
void gg_log_f32(float *out, const float *x, int64_t n);
void gg_sqrt_f32(float *out, const float *x, int64_t n);
void gg_tanh_f32(float *out, const float *x, int64_t n);
void gg_softplus_f32(float *out, const float *x, int64_t n);
void gg_gelu_f32(float *out, const float *x, int64_t n);
void gg_gelu_tanh_f32(float *out, const float *x, int64_t n);
void gg_exp_f64(double *out, const double *x, int64_t n);
void gg_log_f64(double *out, const double *x, int64_t n);
void gg_sqrt_f64(double *out, const double *x, int64_t n);
void gg_tanh_f64(double *out, const double *x, int64_t n);
void gg_softplus_f64(double *out, const double *x, int64_t n);
void gg_gelu_f64(double *out, const double *x, int64_t n);
void gg_gelu_tanh_f64(double *out, const double *x, int64_t n);
/* out and x are (n,); one or two real parameters */
void gg_pow_scalar_f32(float *out, const float *x, int64_t n, double exponent);
void gg_leaky_relu_f32(float *out, const float *x, int64_t n, double slope);
void gg_elu_f32(float *out, const float *x, int64_t n, double alpha);
void gg_clip_f32(float *out, const float *x, int64_t n, double lo, double hi);
void gg_pow_scalar_f64(double *out, const double *x, int64_t n, double exponent);
void gg_leaky_relu_f64(double *out, const double *x, int64_t n, double slope);
void gg_elu_f64(double *out, const double *x, int64_t n, double alpha);
void gg_clip_f64(double *out, const double *x, int64_t n, double lo, double hi);
/* dx, x, y, dy are (n,): relu's backward reads its input x, sigmoid's reads its output y */
void gg_relu_backward_f32(float *dx, const float *x, const float *dy, int64_t n);
void gg_sigmoid_backward_f32(float *dx, const float *y, const float *dy, int64_t n);
void gg_relu_backward_f64(double *dx, const double *x, const double *dy, int64_t n);
void gg_sigmoid_backward_f64(double *dx, const double *y, const double *dy, int64_t n);
/* tanh's backward reads its output y; softplus's and gelu's read the input x */
void gg_tanh_backward_f32(float *dx, const float *y, const float *dy, int64_t n);
void gg_softplus_backward_f32(float *dx, const float *x, const float *dy, int64_t n);
void gg_gelu_backward_f32(float *dx, const float *x, const float *dy, int64_t n);
void gg_gelu_tanh_backward_f32(float *dx, const float *x, const float *dy, int64_t n);
void gg_tanh_backward_f64(double *dx, const double *y, const double *dy, int64_t n);
void gg_softplus_backward_f64(double *dx, const double *x, const double *dy, int64_t n);
void gg_gelu_backward_f64(double *dx, const double *x, const double *dy, int64_t n);
void gg_gelu_tanh_backward_f64(double *dx, const double *x, const double *dy, int64_t n);
/* dx, x, dy are (n,); the parameters as in the forward kernel */
void gg_leaky_relu_backward_f32(float *dx, const float *x, const float *dy, int64_t n, double slope);
void gg_elu_backward_f32(float *dx, const float *x, const float *dy, int64_t n, double alpha);
void gg_clip_backward_f32(float *dx, const float *x, const float *dy, int64_t n, double lo, double hi);
void gg_leaky_relu_backward_f64(double *dx, const double *x, const double *dy, int64_t n, double slope);
void gg_elu_backward_f64(double *dx, const double *x, const double *dy, int64_t n, double alpha);
void gg_clip_backward_f64(double *dx, const double *x, const double *dy, int64_t n, double lo, double hi);

/* ---- reduce.c ---- */
/* x is in_shape[rank]; out has out_n elements, out_stride is 0 on reduced axes; out = scale * sum */
void gg_sum_f32(float *out, int64_t out_n, const float *x, int32_t rank, const int64_t *in_shape, const int64_t *out_stride, double scale);
void gg_sum_f64(double *out, int64_t out_n, const double *x, int32_t rank, const int64_t *in_shape, const int64_t *out_stride, double scale);
/* out is out_shape[rank]; g is read with g_stride (0 on reduced axes); out = scale * g broadcast */
void gg_expand_f32(float *out, const float *g, int32_t rank, const int64_t *out_shape, const int64_t *g_stride, double scale);
void gg_expand_f64(double *out, const double *g, int32_t rank, const int64_t *out_shape, const int64_t *g_stride, double scale);
/* x is in_shape[rank]; out has out_n elements, out_stride is 0 on reduced axes; out = max (NaN propagates) */
void gg_max_f32(float *out, int64_t out_n, const float *x, int32_t rank, const int64_t *in_shape, const int64_t *out_stride);
void gg_max_f64(double *out, int64_t out_n, const double *x, int32_t rank, const int64_t *in_shape, const int64_t *out_stride);
/* out, x, y, dy, dx are (outer, n, inner), normalised along the n axis */
void gg_softmax_f32(float *out, const float *x, int64_t outer, int64_t n, int64_t inner);
void gg_log_softmax_f32(float *out, const float *x, int64_t outer, int64_t n, int64_t inner);
void gg_softmax_backward_f32(float *dx, const float *y, const float *dy, int64_t outer, int64_t n, int64_t inner);
void gg_log_softmax_backward_f32(float *dx, const float *y, const float *dy, int64_t outer, int64_t n, int64_t inner);
void gg_softmax_f64(double *out, const double *x, int64_t outer, int64_t n, int64_t inner);
void gg_log_softmax_f64(double *out, const double *x, int64_t outer, int64_t n, int64_t inner);
void gg_softmax_backward_f64(double *dx, const double *y, const double *dy, int64_t outer, int64_t n, int64_t inner);
void gg_log_softmax_backward_f64(double *dx, const double *y, const double *dy, int64_t outer, int64_t n, int64_t inner);
/* out is shape[rank] (contiguous); x is read at offset + sum(index[d] * stride[d]) */
void gg_strided_copy_f32(float *out, const float *x, int64_t offset, int32_t rank, const int64_t *shape, const int64_t *stride);
void gg_strided_copy_f64(double *out, const double *x, int64_t offset, int32_t rank, const int64_t *shape, const int64_t *stride);
/* out has out_n elements, zeroed; g is shape[rank] (contiguous), written at offset + sum(index[d] * stride[d]) */
void gg_strided_scatter_f32(float *out, int64_t out_n, const float *g, int64_t offset, int32_t rank, const int64_t *shape, const int64_t *stride);
void gg_strided_scatter_f64(double *out, int64_t out_n, const double *g, int64_t offset, int32_t rank, const int64_t *shape, const int64_t *stride);
/* out is (outer, sum of widths); xs[k] is (outer, widths[k]) */
void gg_concat_f32(float *out, const float *const *xs, int32_t n_in, int64_t outer, const int64_t *widths);
void gg_concat_f64(double *out, const double *const *xs, int32_t n_in, int64_t outer, const int64_t *widths);

/* ---- gemm.c ---- */
/* Activation of the GEMM epilogue. */
enum gg_act {
    GG_ACT_NONE = 0,
    GG_ACT_RELU = 1,
    GG_ACT_SIGMOID = 2
};

/* The GEMM epilogue, applied to the output while it is in cache, after alpha/beta:
 * c[i,j] = act(c[i,j] + bias[j]), bias (n,) of the GEMM's dtype or NULL, per register tile; then,
 * when hook is set, hook(ctx, c, row0, col0, rows, cols) on each finished block of C (at most MR
 * rows by 512 columns: c points at C[row0, col0], row stride n), from the thread that computed it. */
typedef struct gg_epilogue {
    const void *bias;
    int32_t act;
    void (*hook)(void *ctx, void *c, int64_t row0, int64_t col0, int64_t rows, int64_t cols);
    void *ctx;
} gg_epilogue;

/* c is (m,n) = act(alpha * op(a) op(b) + beta * c + bias); op(a) is (m,k), op(b) is (k,n); trans flags 0/1.
 * ep may be NULL (no epilogue). work is packing scratch of work_bytes (any alignment), at least
 * gg_gemm_workspace_bytes_*(m, n, k, 1); it bounds the threads used. With no room to pack it runs the
 * reference loop. With beta == 0, c is not read. */
void gg_gemm_f32(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k, int32_t trans_a, int32_t trans_b, double alpha, double beta, const gg_epilogue *ep, void *work, int64_t work_bytes);
void gg_gemm_f64(double *c, const double *a, const double *b, int64_t m, int64_t n, int64_t k, int32_t trans_a, int32_t trans_b, double alpha, double beta, const gg_epilogue *ep, void *work, int64_t work_bytes);
/* the same product by the plain loop (the tests' reference); no workspace */
void gg_gemm_ref_f32(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k, int32_t trans_a, int32_t trans_b, double alpha, double beta, const gg_epilogue *ep);
void gg_gemm_ref_f64(double *c, const double *a, const double *b, int64_t m, int64_t n, int64_t k, int32_t trans_a, int32_t trans_b, double alpha, double beta, const gg_epilogue *ep);
/* packing bytes gg_gemm_* needs for an (m,n,k) product on up to `threads` threads */
int64_t gg_gemm_workspace_bytes_f32(int64_t m, int64_t n, int64_t k, int32_t threads);
int64_t gg_gemm_workspace_bytes_f64(int64_t m, int64_t n, int64_t k, int32_t threads);
/* the micro-kernel compiled in ("avx512", "avx2", "portable") and its MR x NR register tile */
const char *gg_gemm_kernel_info_f32(int32_t *mr, int32_t *nr);
const char *gg_gemm_kernel_info_f64(int32_t *mr, int32_t *nr);

/* ---- fused.c ---- */
/* out is (dims[0],); in[k] are the instruction's inputs; dims and attrs as for GG_OP_FUSED */
/* work: GEMM packing scratch for a head (see gg_gemm_f32), may be NULL without one */
void gg_fused_f32(float *out, const float *const *in, const int64_t *dims, const double *attrs, void *work, int64_t work_bytes);
void gg_fused_f64(double *out, const double *const *in, const int64_t *dims, const double *attrs, void *work, int64_t work_bytes);

/* ---- loss.c ---- */
/* p, y are (n,); out is () = scale * sum((p - y)^2) */
void gg_mse_f32(float *out, const float *p, const float *y, int64_t n, double scale);
void gg_mse_f64(double *out, const double *p, const double *y, int64_t n, double scale);
/* dp is (n,) = dout * 2 * scale * (p - y) */
void gg_mse_backward_f32(float *dp, const float *p, const float *y, const float *dout, int64_t n, double scale);
void gg_mse_backward_f64(double *dp, const double *p, const double *y, const double *dout, int64_t n, double scale);
/* out is () = scale * sum |p - y| ; dp = dout * scale * sign(p - y) */
void gg_l1_f32(float *out, const float *p, const float *y, int64_t n, double scale);
void gg_l1_f64(double *out, const double *p, const double *y, int64_t n, double scale);
void gg_l1_backward_f32(float *dp, const float *p, const float *y, const float *dout, int64_t n, double scale);
void gg_l1_backward_f64(double *dp, const double *p, const double *y, const double *dout, int64_t n, double scale);
/* out is () = scale * sum huber_delta(p - y) ; dp = dout * scale * clip(p - y, -delta, delta) */
void gg_huber_f32(float *out, const float *p, const float *y, int64_t n, double scale, double delta);
void gg_huber_f64(double *out, const double *p, const double *y, int64_t n, double scale, double delta);
void gg_huber_backward_f32(float *dp, const float *p, const float *y, const float *dout, int64_t n, double scale, double delta);
void gg_huber_backward_f64(double *dp, const double *p, const double *y, const double *dout, int64_t n, double scale, double delta);
/* x (logits), y (targets in [0, 1]) are (n,); out is () = scale * sum(max(x,0) - x y + log(1 + exp(-|x|)));
 * backward: dx = dout * scale * (sigmoid(x) - y) (wrt 0) or dy = -dout * scale * x (wrt 1) */
void gg_bce_f32(float *out, const float *x, const float *y, int64_t n, double scale);
void gg_bce_f64(double *out, const double *x, const double *y, int64_t n, double scale);
void gg_bce_backward_f32(float *d, const float *x, const float *y, const float *dout, int64_t n, double scale, int32_t wrt);
void gg_bce_backward_f64(double *d, const double *x, const double *y, const double *dout, int64_t n, double scale, int32_t wrt);
/* x (logits) and t (target distributions) are (rows, classes); out is () = scale * sum_r sum_c t (lse_r - x);
 * backward: dx = dout * scale * (softmax(x) * sum_c t - t) (wrt 0) or dt = dout * scale * (lse - x) (wrt 1) */
void gg_softmax_ce_f32(float *out, const float *x, const float *t, int64_t rows, int64_t classes, double scale);
void gg_softmax_ce_f64(double *out, const double *x, const double *t, int64_t rows, int64_t classes, double scale);
void gg_softmax_ce_backward_f32(float *d, const float *x, const float *t, const float *dout, int64_t rows, int64_t classes, double scale, int32_t wrt);
void gg_softmax_ce_backward_f64(double *d, const double *x, const double *t, const double *dout, int64_t rows, int64_t classes, double scale, int32_t wrt);
/* x is (rows, classes), labels is (rows,) int64; out is () = scale * sum_r (lse_r - x[r, label_r]);
 * dx = dout * scale * (softmax(x) - onehot(label)). Return the number of labels outside [0, classes) (0: ok). */
int32_t gg_softmax_ce_labels_f32(float *out, const float *x, const int64_t *labels, int64_t rows, int64_t classes, double scale);
int32_t gg_softmax_ce_labels_f64(double *out, const double *x, const int64_t *labels, int64_t rows, int64_t classes, double scale);
int32_t gg_softmax_ce_labels_backward_f32(float *dx, const float *x, const int64_t *labels, const float *dout, int64_t rows, int64_t classes, double scale);
int32_t gg_softmax_ce_labels_backward_f64(double *dx, const double *x, const int64_t *labels, const double *dout, int64_t rows, int64_t classes, double scale);

/* ---- optim.c ---- */
/* Update rules: w and the state buffers are (n,) and overwritten; g is (n,); lr and step are the
 * optimizer's float64 runtime scalars; optional state is NULL when its option is off. */
/* gradient clipping: out is () float64 = acc + sum g^2 (acc may be NULL); clip_by_norm scales g by
 * min(1, max_norm / (sqrt(sumsq) + 1e-6)); clip_by_value clamps g to [-clip_value, clip_value] */
void gg_grad_sumsq_f32(double *out, const float *g, const double *acc, int64_t n);
void gg_grad_sumsq_f64(double *out, const double *g, const double *acc, int64_t n);
void gg_clip_by_norm_f32(float *out, const float *g, const double *sumsq, int64_t n, double max_norm);
void gg_clip_by_norm_f64(double *out, const double *g, const double *sumsq, int64_t n, double max_norm);
void gg_clip_by_value_f32(float *out, const float *g, int64_t n, double clip_value);
void gg_clip_by_value_f64(double *out, const double *g, int64_t n, double clip_value);
/* SGD: buf NULL when momentum == 0 */
void gg_sgd_update_f32(float *w, const float *g, float *buf, int64_t n, double lr, int64_t step, double momentum, double dampening, double weight_decay, int32_t nesterov);
void gg_sgd_update_f64(double *w, const double *g, double *buf, int64_t n, double lr, int64_t step, double momentum, double dampening, double weight_decay, int32_t nesterov);
/* RMSprop: gavg NULL unless centered, buf NULL unless momentum > 0 */
void gg_rmsprop_update_f32(float *w, const float *g, float *sq, float *gavg, float *buf, int64_t n, double lr, double alpha, double eps, double weight_decay, double momentum);
void gg_rmsprop_update_f64(double *w, const double *g, double *sq, double *gavg, double *buf, int64_t n, double lr, double alpha, double eps, double weight_decay, double momentum);
/* Adam / AdamW (decoupled = 1): vmax NULL unless amsgrad */
void gg_adam_update_f32(float *w, const float *g, float *m, float *v, float *vmax, int64_t n, double lr, int64_t step, double beta1, double beta2, double eps, double weight_decay, int32_t decoupled);
void gg_adam_update_f64(double *w, const double *g, double *m, double *v, double *vmax, int64_t n, double lr, int64_t step, double beta1, double beta2, double eps, double weight_decay, int32_t decoupled);
void gg_adamax_update_f32(float *w, const float *g, float *m, float *u, int64_t n, double lr, int64_t step, double beta1, double beta2, double eps, double weight_decay);
void gg_adamax_update_f64(double *w, const double *g, double *m, double *u, int64_t n, double lr, int64_t step, double beta1, double beta2, double eps, double weight_decay);
/* NAdam: mu_product is () float64 */
void gg_nadam_update_f32(float *w, const float *g, float *m, float *v, double *mu_product, int64_t n, double lr, int64_t step, double beta1, double beta2, double eps, double weight_decay, double momentum_decay, int32_t decoupled);
void gg_nadam_update_f64(double *w, const double *g, double *m, double *v, double *mu_product, int64_t n, double lr, int64_t step, double beta1, double beta2, double eps, double weight_decay, double momentum_decay, int32_t decoupled);
void gg_adagrad_update_f32(float *w, const float *g, float *sum, int64_t n, double lr, int64_t step, double lr_decay, double weight_decay, double eps);
void gg_adagrad_update_f64(double *w, const double *g, double *sum, int64_t n, double lr, int64_t step, double lr_decay, double weight_decay, double eps);
void gg_adadelta_update_f32(float *w, const float *g, float *sq, float *acc, int64_t n, double lr, double rho, double eps, double weight_decay);
void gg_adadelta_update_f64(double *w, const double *g, double *sq, double *acc, int64_t n, double lr, double rho, double eps, double weight_decay);
/* Ftrl (TensorFlow ApplyFtrlV2): n_acc is the squared-gradient accumulator, z the linear term */
void gg_ftrl_update_f32(float *w, const float *g, float *n_acc, float *z, int64_t n, double lr, double lr_power, double l1, double l2, double l2_shrinkage, double beta);
void gg_ftrl_update_f64(double *w, const double *g, double *n_acc, double *z, int64_t n, double lr, double lr_power, double l1, double l2, double l2_shrinkage, double beta);
void gg_lion_update_f32(float *w, const float *g, float *m, int64_t n, double lr, double beta1, double beta2, double weight_decay);
void gg_lion_update_f64(double *w, const double *g, double *m, int64_t n, double lr, double beta1, double beta2, double weight_decay);

/* ---- random.c ---- */
/* out is (n,) = 0 with probability rate, else 1/(1 - rate); a pure function of (seed, counter, index) */
void gg_dropout_mask_f32(float *out, int64_t n, uint64_t seed, uint64_t counter, double rate);
void gg_dropout_mask_f64(double *out, int64_t n, uint64_t seed, uint64_t counter, double rate);

/* ---- metrics.c ---- */
/* pred is (rows, cols); target is (rows, cols), or labels is (rows,) int64 class ids when target is NULL.
 * Returns how many rows are classified right: argmax(pred) == argmax(target) (or == label); with
 * cols == 1 the predicted class is pred > threshold and the true one target > 0.5 (or the label). */
int64_t gg_count_correct_f32(const float *pred, const float *target, const int64_t *labels, int64_t rows, int64_t cols, double threshold);
int64_t gg_count_correct_f64(const double *pred, const double *target, const int64_t *labels, int64_t rows, int64_t cols, double threshold);

/* ---- cpu.c: what this machine can run, and its caches ---- */
/* 1 when the CPU and OS can run kernel set isa ("avx512", "avx2", "generic"), 0 if not, -1 for an unknown name */
int32_t gg_cpu_supports(const char *isa);
/* bytes of the level-1 data, level-2 or level-3 cache as the machine reports it; 0 when it does not */
int64_t gg_cache_bytes(int32_t level);

/* ---- gemm.c: the blocking chosen at run time ---- */
/* the micro-kernel's ISA and MR×NR tile, the KC/NB/MB blocks, the caches they came from, the serial cut */
typedef struct {
    const char *isa;
    int32_t mr, nr;
    int64_t kc, nb, mb;
    int64_t l1d_bytes, l2_bytes, l3_bytes;
    int64_t serial_macs;
} gg_gemm_config;
void gg_gemm_config_f32(gg_gemm_config *out);
void gg_gemm_config_f64(gg_gemm_config *out);

/* END CDEF */

#endif
