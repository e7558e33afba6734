/* graphgrad.h — the whole C ABI of graphgrad's core, and the one header cffi reads.
 *
 * Everything between the BEGIN/END CDEF markers is plain C declarations (no macros, no
 * attributes): graphgrad/_build_ffi.py hands that part to cffi's cdef, with the opcode enum and the
 * elementwise kernels' prototypes it writes from the op table (csrc/ops.def); below the markers C
 * gets the same two from the table through macros.
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
    GG_ERR_BAD_STEPS = 7,     /* gg_program_run_steps: a row index or a buffer index out of range */
    GG_ERR_BAD_BUFFER = 8     /* gg_program_validate: a buffer index outside the table, or -1 where required */
};

/* ---- dtypes of buffers ---- */
enum gg_dtype {
    GG_F32 = 0,
    GG_F64 = 1,
    GG_I64 = 2
};

/* ---- limits shared with Python (graphgrad/compiler reads them from the compiled module) ---- */
enum gg_limits {
    GG_MAX_INPUTS = 6,        /* input buffers of one instruction (gg_instr.in) */
    GG_MAX_DIMS = 32,         /* integer parameters of one instruction (gg_instr.dims) */
    GG_MAX_ATTRS = 8,         /* real parameters of one instruction (gg_instr.attrs) */
    GG_FUSED_MAX_OPS = 8,     /* ops in one fused list: one attrs slot each */
    GG_FUSED_MODES = 8,       /* GG_OP_FUSED: dims index of in[0]'s read mode */
    GG_FUSED_HEADER = 14,     /* GG_OP_FUSED: dims index of the first op (GG_FUSED_MODES + GG_MAX_INPUTS) */
    GG_FUSED_REF_TEMP = 8,    /* a fused op's operand ref to op j's result is GG_FUSED_REF_TEMP + j */
    GG_FUSED_REF_GEMM = 16,   /* ... and to the GEMM head's result (GG_FUSED_REF_TEMP + GG_FUSED_MAX_OPS) */
    GG_STEPS_MAX_FEEDS = 8    /* feeds gathered by gg_program_run_steps (gg_steps.feed_dst) */
};

/* ---- opcodes (enum gg_opcode): one row each in csrc/ops.def, where each op's dims and attrs are
 * described; graphgrad/_build_ffi.py writes the enum into cffi's cdef from that table ---- */

/* One instruction. Buffer indices refer to gg_program.buffers; -1 means "absent". */
typedef struct gg_instr {
    int32_t opcode;
    int32_t dtype;
    int32_t out;
    int32_t n_in;
    int32_t in[GG_MAX_INPUTS];
    int64_t out_size;     /* elements in the output buffer (used by check_numerics) */
    int64_t dims[GG_MAX_DIMS];    /* op-specific integer parameters, see csrc/ops.def */
    double attrs[GG_MAX_ATTRS];   /* op-specific real parameters */
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

/* Run every instruction once, in order. Returns a gg_status; on error sets p->failed_instr.
 * The instruction list is trusted: check it once with gg_program_validate before the first run. */
int gg_program_run(gg_program *p);

/* Check the instruction list against the op table and the buffer table, without running it:
 * known opcodes and dtypes, input counts, buffer indices in [0, n_buffers) (-1 only where an op's
 * input is optional), dims that fit their arrays, fused op lists (opcodes and operand refs).
 * Returns a gg_status (GG_OK, GG_ERR_UNKNOWN_OPCODE, GG_ERR_BAD_DTYPE, GG_ERR_BAD_INSTR,
 * GG_ERR_BAD_BUFFER) and sets p->failed_instr to the first bad instruction (-1 when all are good). */
int32_t gg_program_validate(gg_program *p);

/* A short description of a gg_status, for messages. */
const char *gg_status_name(int32_t status);

/* Many steps in one call (an epoch, or a chunk of one): for each step, gather the batch's rows
 * of the full arrays into the feed buffers, run the instructions, and record what the step
 * produced. Step s of a call covers positions [first_pos + s*batch_size, first_pos + (s+1)*batch_size)
 * of `order` (a permutation of the rows); order == NULL means position == row. */
typedef struct gg_steps {
    int32_t n_feeds;
    void *feed_dst[GG_STEPS_MAX_FEEDS];        /* each feed's gather buffer (the program's feed buffers point at them) */
    const void *feed_src[GG_STEPS_MAX_FEEDS];  /* the full arrays: n_rows rows of feed_row_bytes bytes each */
    int64_t feed_row_bytes[GG_STEPS_MAX_FEEDS];
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
    /* a per-step runtime scalar (the LR range test): before step i, step_values[i] is written
     * into the float64 scalar buffer step_value_buf; NULL for none */
    const double *step_values;
    int32_t step_value_buf;
    /* recorded statistics (GradientStats): after step i with (record_first + i) % record_every == 0,
     * the record_bytes bytes of buffer record_buf are appended to record_dst; record_every 0: none */
    int32_t record_buf;
    int64_t record_every;
    int64_t record_first;
    int64_t record_bytes;
    void *record_dst;
    int64_t records_done;         /* out: records written by this call */
} gg_steps;

/* Run s->n_steps steps of p as described above. Returns a gg_status; on GG_ERR_DIVERGED the
 * failing step is s->steps_done; on an instruction error p->failed_instr is set too. */
int gg_program_run_steps(gg_program *p, gg_steps *s);

/* Scratch bytes p->workspace needs to run every instruction on up to `threads` threads. */
int64_t gg_program_workspace_bytes(const gg_program *p, int32_t threads);

/* The name of an opcode the interpreter executes, or NULL when it does not know it. */
const char *gg_opcode_name(int32_t opcode);

/* Nonzero when the fused instruction's op list can hold this opcode (a fusable row of csrc/ops.def). */
int32_t gg_opcode_fuses(int32_t opcode);

/* Threads used by the parallel kernels (GRAPHGRAD_NUM_THREADS sets the initial value). */
void gg_set_num_threads(int32_t n);
int32_t gg_get_num_threads(void);
/* How many threads a kernel loop over n elements runs on with the current setting: the loop of the
 * GG_PARALLEL_FOR every parallel kernel uses, counting the threads that ran part of it (for tests). */
int32_t gg_parallel_team_size(int64_t n);

/* ---- elementwise.c ---- */
/* The elementwise rows of csrc/ops.def get their kernels' prototypes from the table (in C below, in
 * cffi's cdef from graphgrad/_build_ffi.py), one pair gg_<name>_f32 / _f64 per row:
 *   GG_BINARY:   (real *out, const real *a, const real *b, int32_t rank, const int64_t *shape,
 *                 const int64_t *stride_a, const int64_t *stride_b): broadcast views over shape[rank],
 *                 strides in elements, 0 on broadcast axes
 *   GG_UNARY:    (real *out, const real *x, int64_t n); _P adds (double p), _PQ (double p, double q)
 *   GG_BACKWARD: (real *dx, const real *s, const real *dy, int64_t n): s is the saved input or output;
 *                _P adds (double p), _PQ (double p, double q)
 *   GG_LOSS_BACKWARD: (real *dp, const real *p, const real *y, const real *dout, int64_t n, double scale)
 * Unary maps run in place (out == x) as well. */
/* out and x are (n,); x ** exponent, with exact fast paths for 2, 3, 1, 0.5, -1 */
void gg_pow_scalar_f32(float *out, const float *x, int64_t n, double exponent);
void gg_pow_scalar_f64(double *out, const double *x, int64_t n, double exponent);
/* out and x are (n,): gelu exact (erf) and its tanh approximation */
void gg_gelu_f32(float *out, const float *x, int64_t n);
void gg_gelu_tanh_f32(float *out, const float *x, int64_t n);
void gg_gelu_f64(double *out, const double *x, int64_t n);
void gg_gelu_tanh_f64(double *out, const double *x, int64_t n);
/* dx, x, dy are (n,): gelu's backward reads its input x */
void gg_gelu_backward_f32(float *dx, const float *x, const float *dy, int64_t n);
void gg_gelu_tanh_backward_f32(float *dx, const float *x, const float *dy, int64_t n);
void gg_gelu_backward_f64(double *dx, const double *x, const double *dy, int64_t n);
void gg_gelu_tanh_backward_f64(double *dx, const double *x, const double *dy, int64_t n);

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
/* Returns a gg_status: GG_ERR_UNKNOWN_OPCODE for an op the fused loop does not run, GG_ERR_BAD_INSTR for
 * a malformed list (counts, refs); nothing is written then. */
int32_t gg_fused_f32(float *out, const float *const *in, const int64_t *dims, const double *attrs, void *work, int64_t work_bytes);
int32_t gg_fused_f64(double *out, const double *const *in, const int64_t *dims, const double *attrs, void *work, int64_t work_bytes);

/* ---- loss.c ---- */
/* p, y are (n,); out is () = scale * sum((p - y)^2) */
void gg_mse_f32(float *out, const float *p, const float *y, int64_t n, double scale);
void gg_mse_f64(double *out, const double *p, const double *y, int64_t n, double scale);
/* out is () = scale * sum |p - y| (mse_backward and l1_backward are elementwise rows of csrc/ops.def) */
void gg_l1_f32(float *out, const float *p, const float *y, int64_t n, double scale);
void gg_l1_f64(double *out, const double *p, const double *y, int64_t n, double scale);
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
 * dx = dout * scale * (softmax(x) - onehot(label)). Return 1 when a label is outside [0, classes) (nothing
 * is written then), else 0. */
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

/* ---- conv.c ---- */
/* The geometry of a convolution: x (n, c, h, w), w (o, c, kh, kw), out (n, o, oh, ow) with
 * oh = (h + 2·ph - dh·(kh-1) - 1) / sh + 1 (and the same for ow); the field order is the layout
 * of the instruction's dims. */
typedef struct gg_conv2d_shape {
    int64_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw;
} gg_conv2d_shape;
/* The geometry of a pooling: x (n, c, h, w), out (n, c, oh, ow), window kh×kw, stride, padding. */
typedef struct gg_pool2d_shape {
    int64_t n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
} gg_pool2d_shape;
/* col is (c·kh·kw, oh·ow), the patches of one image x (c, h, w); col2im sums them back into dx (c, h, w) */
void gg_im2col_f32(float *col, const float *x, const gg_conv2d_shape *s);
void gg_im2col_f64(double *col, const double *x, const gg_conv2d_shape *s);
void gg_col2im_f32(float *dx, const float *col, const gg_conv2d_shape *s);
void gg_col2im_f64(double *dx, const double *col, const gg_conv2d_shape *s);
/* scratch elements and packing bytes a convolution kernel needs on up to `threads` threads;
 * kind 0 = conv2d, 1 = input gradient, 2 = weight gradient */
int64_t gg_conv2d_scratch_elems_f32(const gg_conv2d_shape *s, int32_t kind, int32_t threads);
int64_t gg_conv2d_scratch_elems_f64(const gg_conv2d_shape *s, int32_t kind, int32_t threads);
int64_t gg_conv2d_workspace_bytes_f32(const gg_conv2d_shape *s, int32_t kind, int32_t threads);
int64_t gg_conv2d_workspace_bytes_f64(const gg_conv2d_shape *s, int32_t kind, int32_t threads);
/* x is (n, c, h, w), w is (o, c, kh, kw), bias is (o,) or NULL, out is (n, o, oh, ow) = act(conv(x, w) + bias);
 * scratch holds the column buffers (fewer threads run when it holds fewer), work the GEMM packing */
void gg_conv2d_f32(float *out, const float *x, const float *w, const float *bias, const gg_conv2d_shape *s, int32_t act, float *scratch, int64_t scratch_elems, void *work, int64_t work_bytes);
void gg_conv2d_f64(double *out, const double *x, const double *w, const double *bias, const gg_conv2d_shape *s, int32_t act, double *scratch, int64_t scratch_elems, void *work, int64_t work_bytes);
/* dy is (n, o, oh, ow), w is (o, c, kh, kw), dx is (n, c, h, w): the gradient of conv2d's input */
void gg_conv2d_input_grad_f32(float *dx, const float *dy, const float *w, const gg_conv2d_shape *s, float *scratch, int64_t scratch_elems, void *work, int64_t work_bytes);
void gg_conv2d_input_grad_f64(double *dx, const double *dy, const double *w, const gg_conv2d_shape *s, double *scratch, int64_t scratch_elems, void *work, int64_t work_bytes);
/* x is (n, c, h, w), dy is (n, o, oh, ow), dw is (o, c, kh, kw): the gradient of conv2d's weights */
void gg_conv2d_weight_grad_f32(float *dw, const float *x, const float *dy, const gg_conv2d_shape *s, float *scratch, int64_t scratch_elems, void *work, int64_t work_bytes);
void gg_conv2d_weight_grad_f64(double *dw, const double *x, const double *dy, const gg_conv2d_shape *s, double *scratch, int64_t scratch_elems, void *work, int64_t work_bytes);
/* x, dx, g are (n, c, h, w); out, dy are (n, c, oh, ow) */
void gg_max_pool2d_f32(float *out, const float *x, const gg_pool2d_shape *s);
void gg_max_pool2d_f64(double *out, const double *x, const gg_pool2d_shape *s);
/* positive = 1: the gradient passes only where the window's maximum is not <= 0 (a ReLU's backward folded in) */
void gg_max_pool2d_backward_f32(float *dx, const float *x, const float *dy, const gg_pool2d_shape *s, int32_t positive);
void gg_max_pool2d_backward_f64(double *dx, const double *x, const double *dy, const gg_pool2d_shape *s, int32_t positive);
void gg_max_pool2d_gather_f32(float *out, const float *x, const float *g, const gg_pool2d_shape *s, int32_t positive);
void gg_max_pool2d_gather_f64(double *out, const double *x, const double *g, const gg_pool2d_shape *s, int32_t positive);
/* x is (n, c, h, w), r is (n, o, oh, ow) (the convolution's ReLU output), g is (n, o, poh, pow) (its max pool's
 * output gradient, ps the pool's geometry over r), dw is (o, c, kh, kw): conv2d_weight_grad(x,
 * max_pool2d_backward(r, g, positive = 1)) without the input-sized gradient in between */
void gg_conv2d_pooled_weight_grad_f32(float *dw, const float *x, const float *r, const float *g, const gg_conv2d_shape *s, const gg_pool2d_shape *ps);
void gg_conv2d_pooled_weight_grad_f64(double *dw, const double *x, const double *r, const double *g, const gg_conv2d_shape *s, const gg_pool2d_shape *ps);
void gg_avg_pool2d_f32(float *out, const float *x, const gg_pool2d_shape *s);
void gg_avg_pool2d_f64(double *out, const double *x, const gg_pool2d_shape *s);
void gg_avg_pool2d_backward_f32(float *dx, const float *dy, const gg_pool2d_shape *s);
void gg_avg_pool2d_backward_f64(double *dx, const double *dy, const gg_pool2d_shape *s);
/* x, y, dy, dx are (n, c, s); stats, dparams are (2, c); mean, var, gamma, beta, running_* are (c,) */
void gg_batch_norm_stats_f32(float *stats, const float *x, int64_t n, int64_t c, int64_t s);
void gg_batch_norm_stats_f64(double *stats, const double *x, int64_t n, int64_t c, int64_t s);
void gg_batch_norm_f32(float *y, const float *x, const float *mean, const float *var, const float *gamma, const float *beta, int64_t n, int64_t c, int64_t s, double eps);
void gg_batch_norm_f64(double *y, const double *x, const double *mean, const double *var, const double *gamma, const double *beta, int64_t n, int64_t c, int64_t s, double eps);
void gg_batch_norm_running_update_f32(float *running_mean, float *running_var, const float *stats, int64_t c, int64_t count, double momentum);
void gg_batch_norm_running_update_f64(double *running_mean, double *running_var, const double *stats, int64_t c, int64_t count, double momentum);
void gg_batch_norm_backward_f32(float *dx, const float *x, const float *gamma, const float *stats, const float *dy, int64_t n, int64_t c, int64_t s, double eps);
void gg_batch_norm_backward_f64(double *dx, const double *x, const double *gamma, const double *stats, const double *dy, int64_t n, int64_t c, int64_t s, double eps);
void gg_batch_norm_param_grad_f32(float *dparams, const float *x, const float *stats, const float *dy, int64_t n, int64_t c, int64_t s, double eps);
void gg_batch_norm_param_grad_f64(double *dparams, const double *x, const double *stats, const double *dy, int64_t n, int64_t c, int64_t s, double eps);

/* END CDEF */

/* ---- what cffi does not read: the opcode enum and the elementwise prototypes from the op table ---- */
enum gg_opcode {
#define GG_ANY_ROW(E, CODE, NAME) GG_OP_##E = CODE,
#include "ops_table.h"
};

#define GG_PROTOTYPES_(NAME, ARGS_F32, ARGS_F64) void gg_##NAME##_f32 ARGS_F32; void gg_##NAME##_f64 ARGS_F64;
#define GG_BINARY(E, CODE, NAME, BODY)                                                                     \
    GG_PROTOTYPES_(NAME, (float *out, const float *a, const float *b, int32_t rank, const int64_t *shape,   \
                          const int64_t *stride_a, const int64_t *stride_b),                             \
                   (double *out, const double *a, const double *b, int32_t rank, const int64_t *shape,   \
                    const int64_t *stride_a, const int64_t *stride_b))
#define GG_UNARY(E, CODE, NAME, BODY) \
    GG_PROTOTYPES_(NAME, (float *out, const float *x, int64_t n), (double *out, const double *x, int64_t n))
#define GG_UNARY_P(E, CODE, NAME, BODY)                                            \
    GG_PROTOTYPES_(NAME, (float *out, const float *x, int64_t n, double p),        \
                   (double *out, const double *x, int64_t n, double p))
#define GG_UNARY_PQ(E, CODE, NAME, BODY)                                               \
    GG_PROTOTYPES_(NAME, (float *out, const float *x, int64_t n, double p, double q),  \
                   (double *out, const double *x, int64_t n, double p, double q))
#define GG_BACKWARD(E, CODE, NAME, BODY)                                              \
    GG_PROTOTYPES_(NAME, (float *dx, const float *s, const float *dy, int64_t n),     \
                   (double *dx, const double *s, const double *dy, int64_t n))
#define GG_BACKWARD_P(E, CODE, NAME, BODY)                                                      \
    GG_PROTOTYPES_(NAME, (float *dx, const float *s, const float *dy, int64_t n, double p),     \
                   (double *dx, const double *s, const double *dy, int64_t n, double p))
#define GG_BACKWARD_PQ(E, CODE, NAME, BODY)                                                               \
    GG_PROTOTYPES_(NAME, (float *dx, const float *s, const float *dy, int64_t n, double p, double q),     \
                   (double *dx, const double *s, const double *dy, int64_t n, double p, double q))
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY)                                                              \
    GG_PROTOTYPES_(NAME, (float *dp, const float *p, const float *y, const float *dout, int64_t n, double scale), \
                   (double *dp, const double *p, const double *y, const double *dout, int64_t n, double scale))
#include "ops_table.h"
#undef GG_PROTOTYPES_

_Static_assert(GG_FUSED_HEADER == GG_FUSED_MODES + GG_MAX_INPUTS, "fused dims: the modes, then the ops");
_Static_assert(GG_FUSED_HEADER + GG_FUSED_MAX_OPS <= GG_MAX_DIMS, "a full fused list fits in dims");
_Static_assert(GG_FUSED_MAX_OPS <= GG_MAX_ATTRS, "one attrs slot per fused op");
_Static_assert(GG_FUSED_REF_TEMP >= GG_MAX_INPUTS, "fused refs: inputs below the temporaries");
_Static_assert(GG_FUSED_REF_GEMM == GG_FUSED_REF_TEMP + GG_FUSED_MAX_OPS, "fused refs: the head after the temporaries");

#endif
