/* program.c — the interpreter: runs a compiled gg_program's instruction list in one call
 * (forward, backward and optimizer update alike), plus the thread setting. It never
 * allocates, prints or exits: errors come back as a gg_status and the failing instruction.
 * gg_program_run_steps is the epoch loop: many steps per call, each gathering its batch from
 * the full arrays by a row permutation, so Python is not involved between steps. */
#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <omp.h>
#include "gg_internal.h"

/* ---- threads: the core's one global ---- */
static int gg_num_threads = 0; /* 0 = not yet read from the environment */

int gg_threads(void) {
    if (gg_num_threads <= 0) {
        const char *env = getenv("GRAPHGRAD_NUM_THREADS");
        int n = env ? atoi(env) : 0;
        gg_num_threads = n > 0 ? n : omp_get_max_threads();
    }
    return gg_num_threads;
}

void gg_set_num_threads(int32_t n) { gg_num_threads = n > 0 ? n : omp_get_max_threads(); }

int32_t gg_get_num_threads(void) { return gg_threads(); }

int32_t gg_parallel_team_size(int64_t n) {
    enum { MAX_SEEN = 256 };
    unsigned char seen[MAX_SEEN] = {0};   /* each thread marks only its own slot */
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) seen[omp_get_thread_num() % MAX_SEEN] = 1;
    );
    int32_t team = 0;
    for (int t = 0; t < MAX_SEEN; t++) team += seen[t];
    return team;
}

/* ---- helpers ---- */
#define BUF(p, i) ((p)->buffers[(i)])
#define F32(p, i) ((float *)BUF(p, i))
#define F64(p, i) ((double *)BUF(p, i))
#define SCALAR_F64(p, i) (((const double *)BUF(p, i))[0])
#define OPT(p, i) ((i) >= 0 ? BUF(p, i) : NULL)              /* an optional buffer: -1 means absent */
#define STEP(p, i) ((int64_t)SCALAR_F64(p, i))               /* the optimizer's step count */
#define LABELS(p, i) ((const int64_t *)BUF(p, i))
/* the instruction's output and input k as untyped pointers: C converts a void * to the kernel's
 * float * or double * parameter, so one argument list serves both dtypes */
#define OUT BUF(p, ins->out)
#define IN(k) BUF(p, ins->in[k])

/* Call kernel NAME for the instruction's dtype; the argument list ARGS is written once, for both.
 * DISPATCH_TO also keeps the kernel's result in RESULT. */
#define DISPATCH_TO(RESULT, NAME, ARGS)                                  \
    do {                                                                 \
        if (ins->dtype == GG_F32) RESULT gg_##NAME##_f32 ARGS;           \
        else if (ins->dtype == GG_F64) RESULT gg_##NAME##_f64 ARGS;      \
        else return GG_ERR_BAD_DTYPE;                                    \
    } while (0)
#define DISPATCH(NAME, ARGS) DISPATCH_TO(, NAME, ARGS)

/* How each RUN kind of the op table calls kernel K (d: dims, a: attrs; NAME, the op's name, is for OWN). */
#define RUN_BINARY(K, NAME) DISPATCH(K, (OUT, IN(0), IN(1), (int32_t)d[0], d + 1, d + 1 + d[0], d + 1 + 2 * d[0]))
#define RUN_UNARY(K, NAME) DISPATCH(K, (OUT, IN(0), d[0]))
#define RUN_UNARY_P(K, NAME) DISPATCH(K, (OUT, IN(0), d[0], a[0]))
#define RUN_UNARY_PQ(K, NAME) DISPATCH(K, (OUT, IN(0), d[0], a[0], a[1]))
#define RUN_BACKWARD(K, NAME) DISPATCH(K, (OUT, IN(0), IN(1), d[0]))
#define RUN_BACKWARD_P(K, NAME) DISPATCH(K, (OUT, IN(0), IN(1), d[0], a[0]))
#define RUN_BACKWARD_PQ(K, NAME) DISPATCH(K, (OUT, IN(0), IN(1), d[0], a[0], a[1]))
#define RUN_LOSS(K, NAME) DISPATCH(K, (OUT, IN(0), IN(1), d[0], a[0]))
#define RUN_LOSS_BACKWARD(K, NAME) DISPATCH(K, (OUT, IN(0), IN(1), IN(2), d[0], a[0]))
/* softmax family: dims outer, n, inner */
#define RUN_ALONG_AXIS(K, NAME) DISPATCH(K, (OUT, IN(0), d[0], d[1], d[2]))
#define RUN_ALONG_AXIS_BACKWARD(K, NAME) DISPATCH(K, (OUT, IN(0), IN(1), d[0], d[1], d[2]))
/* shape ops: dims offset, rank, shape[rank], stride[rank] */
#define RUN_STRIDED(K, NAME) DISPATCH(K, (OUT, IN(0), d[0], (int32_t)d[1], d + 2, d + 2 + d[1]))

/* The ops whose call does not follow a pattern: one function each, run_<name> (RUN kind OWN). */
#define OWN_RUNNER(NAME) static int run_##NAME(gg_program *p, const gg_instr *ins, const int64_t *d, const double *a)

OWN_RUNNER(gelu) {
    (void)a;
    if (d[1]) DISPATCH(gelu_tanh, (OUT, IN(0), d[0]));
    else DISPATCH(gelu, (OUT, IN(0), d[0]));
    return GG_OK;
}

OWN_RUNNER(gelu_backward) {
    (void)a;
    if (d[1]) DISPATCH(gelu_tanh_backward, (OUT, IN(0), IN(1), d[0]));
    else DISPATCH(gelu_backward, (OUT, IN(0), IN(1), d[0]));
    return GG_OK;
}

OWN_RUNNER(sum) {
    DISPATCH(sum, (OUT, ins->out_size, IN(0), (int32_t)d[0], d + 1, d + 1 + d[0], a[0]));
    return GG_OK;
}

OWN_RUNNER(expand) {
    DISPATCH(expand, (OUT, IN(0), (int32_t)d[0], d + 1, d + 1 + d[0], a[0]));
    return GG_OK;
}

OWN_RUNNER(max) {
    (void)a;
    DISPATCH(max, (OUT, ins->out_size, IN(0), (int32_t)d[0], d + 1, d + 1 + d[0]));
    return GG_OK;
}

OWN_RUNNER(matmul) {
    /* optional epilogue: bias buffer in[2], activation dims[5]; optional float64 scalar in[3]
     * multiplying alpha (a plain SGD update: alpha = -1 · lr, beta = 1, out = the variable) */
    gg_epilogue ep = {ins->n_in > 2 && ins->in[2] >= 0 ? IN(2) : NULL, (int32_t)d[5]};
    const gg_epilogue *epp = ep.bias || ep.act ? &ep : NULL;
    double alpha = ins->n_in > 3 && ins->in[3] >= 0 ? a[0] * SCALAR_F64(p, ins->in[3]) : a[0];
    DISPATCH(gemm, (OUT, IN(0), IN(1), d[0], d[1], d[2], (int32_t)d[3], (int32_t)d[4], alpha, a[1], epp,
                    p->workspace, p->workspace_bytes));
    return GG_OK;
}

OWN_RUNNER(huber) {
    DISPATCH(huber, (OUT, IN(0), IN(1), d[0], a[0], a[1]));
    return GG_OK;
}

OWN_RUNNER(huber_backward) {
    DISPATCH(huber_backward, (OUT, IN(0), IN(1), IN(2), d[0], a[0], a[1]));
    return GG_OK;
}

OWN_RUNNER(binary_cross_entropy_backward) {
    DISPATCH(bce_backward, (OUT, IN(0), IN(1), IN(2), d[0], a[0], (int32_t)d[1]));
    return GG_OK;
}

OWN_RUNNER(softmax_cross_entropy) {
    DISPATCH(softmax_ce, (OUT, IN(0), IN(1), d[0], d[1], a[0]));
    return GG_OK;
}

OWN_RUNNER(softmax_cross_entropy_backward) {
    DISPATCH(softmax_ce_backward, (OUT, IN(0), IN(1), IN(2), d[0], d[1], a[0], (int32_t)d[2]));
    return GG_OK;
}

/* labels are an int64 buffer; a label outside [0, classes) is reported, never read */
OWN_RUNNER(softmax_cross_entropy_labels) {
    int32_t bad = 0;
    DISPATCH_TO(bad =, softmax_ce_labels, (OUT, IN(0), LABELS(p, ins->in[1]), d[0], d[1], a[0]));
    return bad ? GG_ERR_BAD_INDEX : GG_OK;
}

OWN_RUNNER(softmax_cross_entropy_labels_backward) {
    int32_t bad = 0;
    DISPATCH_TO(bad =, softmax_ce_labels_backward, (OUT, IN(0), LABELS(p, ins->in[1]), IN(2), d[0], d[1], a[0]));
    return bad ? GG_ERR_BAD_INDEX : GG_OK;
}

OWN_RUNNER(dropout_mask) {
    DISPATCH(dropout_mask, (OUT, d[0], (uint64_t)d[1], (uint64_t)SCALAR_F64(p, ins->in[0]), a[0]));
    return GG_OK;
}

/* a float64 counter variable, e.g. the optimizer's step count */
OWN_RUNNER(increment) {
    (void)d;
    F64(p, ins->out)[0] += a[0];
    return GG_OK;
}

/* optimizer updates: out is the variable (written in place), in[0] its gradient, then the state
 * buffers (-1 when absent), then the lr and step scalars; layouts in ops/updates.py */
OWN_RUNNER(sgd_update) {
    DISPATCH(sgd_update, (OUT, IN(0), OPT(p, ins->in[1]), d[0], SCALAR_F64(p, ins->in[2]), STEP(p, ins->in[3]), a[0],
                          a[1], a[2], (int32_t)d[1]));
    return GG_OK;
}

OWN_RUNNER(rmsprop_update) {
    DISPATCH(rmsprop_update, (OUT, IN(0), IN(1), OPT(p, ins->in[2]), OPT(p, ins->in[3]), d[0],
                              SCALAR_F64(p, ins->in[4]), a[0], a[1], a[2], a[3]));
    return GG_OK;
}

OWN_RUNNER(adam_update) {
    DISPATCH(adam_update, (OUT, IN(0), IN(1), IN(2), OPT(p, ins->in[3]), d[0], SCALAR_F64(p, ins->in[4]),
                           STEP(p, ins->in[5]), a[0], a[1], a[2], a[3], (int32_t)d[1]));
    return GG_OK;
}

OWN_RUNNER(adamax_update) {
    DISPATCH(adamax_update, (OUT, IN(0), IN(1), IN(2), d[0], SCALAR_F64(p, ins->in[3]), STEP(p, ins->in[4]), a[0],
                             a[1], a[2], a[3]));
    return GG_OK;
}

OWN_RUNNER(nadam_update) {
    DISPATCH(nadam_update, (OUT, IN(0), IN(1), IN(2), F64(p, ins->in[3]), d[0], SCALAR_F64(p, ins->in[4]),
                            STEP(p, ins->in[5]), a[0], a[1], a[2], a[3], a[4], (int32_t)d[1]));
    return GG_OK;
}

OWN_RUNNER(adagrad_update) {
    DISPATCH(adagrad_update, (OUT, IN(0), IN(1), d[0], SCALAR_F64(p, ins->in[2]), STEP(p, ins->in[3]), a[0], a[1],
                              a[2]));
    return GG_OK;
}

OWN_RUNNER(adadelta_update) {
    DISPATCH(adadelta_update, (OUT, IN(0), IN(1), IN(2), d[0], SCALAR_F64(p, ins->in[3]), a[0], a[1], a[2]));
    return GG_OK;
}

OWN_RUNNER(ftrl_update) {
    DISPATCH(ftrl_update, (OUT, IN(0), IN(1), IN(2), d[0], SCALAR_F64(p, ins->in[3]), a[0], a[1], a[2], a[3], a[4]));
    return GG_OK;
}

OWN_RUNNER(lion_update) {
    DISPATCH(lion_update, (OUT, IN(0), IN(1), d[0], SCALAR_F64(p, ins->in[2]), a[0], a[1], a[2]));
    return GG_OK;
}

/* clipping: grad_sumsq's output is float64 whatever the gradient's dtype, so dims[1] names the
 * gradient's dtype */
OWN_RUNNER(grad_sumsq) {
    (void)a;
    if (d[1] == GG_F32) gg_grad_sumsq_f32(F64(p, ins->out), F32(p, ins->in[0]), OPT(p, ins->in[1]), d[0]);
    else if (d[1] == GG_F64) gg_grad_sumsq_f64(F64(p, ins->out), F64(p, ins->in[0]), OPT(p, ins->in[1]), d[0]);
    else return GG_ERR_BAD_DTYPE;
    return GG_OK;
}

OWN_RUNNER(clip_by_norm) {
    DISPATCH(clip_by_norm, (OUT, IN(0), F64(p, ins->in[1]), d[0], a[0]));
    return GG_OK;
}

OWN_RUNNER(slice_backward) {
    (void)a;
    DISPATCH(strided_scatter, (OUT, ins->out_size, IN(0), d[0], (int32_t)d[1], d + 2, d + 2 + d[1]));
    return GG_OK;
}

/* dims: outer, widths[n_in]; the input pointers gathered on the stack */
OWN_RUNNER(concat) {
    (void)a;
    if (ins->n_in < 1 || ins->n_in > GG_MAX_INPUTS) return GG_ERR_BAD_INSTR;
    const void *xs[GG_MAX_INPUTS];
    for (int32_t k = 0; k < ins->n_in; k++) xs[k] = IN(k);
    DISPATCH(concat, (OUT, (const void *)xs, ins->n_in, d[0], d + 1));
    return GG_OK;
}

OWN_RUNNER(fused) {
    if (ins->n_in < 0 || ins->n_in > GG_MAX_INPUTS) return GG_ERR_BAD_INSTR;
    const void *in[GG_MAX_INPUTS] = {0};
    for (int32_t k = 0; k < ins->n_in; k++) in[k] = ins->in[k] >= 0 ? IN(k) : NULL;
    int32_t status = GG_OK;
    DISPATCH_TO(status =, fused, (OUT, (const void *)in, d, a, p->workspace, p->workspace_bytes));
    return status;
}

/* ---- convolution, pooling, batch normalisation (conv.c) ---- */

/* The geometry of a convolution or pooling instruction: its first dims, field by field. */
static gg_conv2d_shape conv_shape_of(const int64_t *d) {
    gg_conv2d_shape s = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14]};
    return s;
}

static gg_pool2d_shape pool_shape_of(const int64_t *d) {
    gg_pool2d_shape s = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11]};
    return s;
}

/* A convolution's geometry and scratch, checked: the sizes positive, the output size the one the
 * input, kernel, stride, padding and dilation give, and room for at least one thread's columns. */
static int conv_geometry_ok(const gg_conv2d_shape *s) {
    if (s->n < 0 || s->c <= 0 || s->h <= 0 || s->w <= 0 || s->o <= 0 || s->kh <= 0 || s->kw <= 0 || s->sh <= 0 ||
        s->sw <= 0 || s->ph < 0 || s->pw < 0 || s->dh <= 0 || s->dw <= 0)
        return 0;
    return s->oh == (s->h + 2 * s->ph - s->dh * (s->kh - 1) - 1) / s->sh + 1 && s->oh > 0 &&
           s->ow == (s->w + 2 * s->pw - s->dw * (s->kw - 1) - 1) / s->sw + 1 && s->ow > 0;
}

static int conv_checked(const gg_program *p, const gg_instr *ins, int32_t kind, gg_conv2d_shape *s, void **scratch,
                        int64_t *scratch_elems) {
    *s = conv_shape_of(ins->dims);
    int32_t slot = kind == 0 ? 3 : 2;
    if (ins->n_in <= slot || ins->in[slot] < 0) return GG_ERR_BAD_INSTR;
    if (!conv_geometry_ok(s)) return GG_ERR_BAD_INSTR;
    *scratch = BUF(p, ins->in[slot]);
    *scratch_elems = ins->dims[kind == 0 ? 16 : 15];
    int64_t need = ins->dtype == GG_F64 ? gg_conv2d_scratch_elems_f64(s, kind, 1) : gg_conv2d_scratch_elems_f32(s, kind, 1);
    return *scratch_elems < need ? GG_ERR_BAD_INSTR : GG_OK;
}

OWN_RUNNER(conv2d) {
    (void)a;
    gg_conv2d_shape s;
    void *scratch;
    int64_t elems;
    int status = conv_checked(p, ins, 0, &s, &scratch, &elems);
    if (status != GG_OK) return status;
    DISPATCH(conv2d, (OUT, IN(0), IN(1), OPT(p, ins->in[2]), &s, (int32_t)d[15], scratch, elems, p->workspace,
                      p->workspace_bytes));
    return GG_OK;
}

OWN_RUNNER(conv2d_input_grad) {
    (void)a;
    gg_conv2d_shape s;
    void *scratch;
    int64_t elems;
    int status = conv_checked(p, ins, 1, &s, &scratch, &elems);
    if (status != GG_OK) return status;
    (void)d;
    DISPATCH(conv2d_input_grad, (OUT, IN(0), IN(1), &s, scratch, elems, p->workspace, p->workspace_bytes));
    return GG_OK;
}

OWN_RUNNER(conv2d_weight_grad) {
    (void)a;
    gg_conv2d_shape s;
    void *scratch;
    int64_t elems;
    int status = conv_checked(p, ins, 2, &s, &scratch, &elems);
    if (status != GG_OK) return status;
    (void)d;
    DISPATCH(conv2d_weight_grad, (OUT, IN(0), IN(1), &s, scratch, elems, p->workspace, p->workspace_bytes));
    return GG_OK;
}

/* A pooling's geometry, checked as a convolution's (dilation 1). */
static int pool_checked(const int64_t *d, gg_pool2d_shape *s) {
    *s = pool_shape_of(d);
    if (s->n < 0 || s->c < 0 || s->h <= 0 || s->w <= 0 || s->kh <= 0 || s->kw <= 0 || s->sh <= 0 || s->sw <= 0 ||
        s->ph < 0 || s->pw < 0 || 2 * s->ph > s->kh || 2 * s->pw > s->kw)
        return GG_ERR_BAD_INSTR;
    if (s->oh != (s->h + 2 * s->ph - s->kh) / s->sh + 1 || s->oh <= 0 ||
        s->ow != (s->w + 2 * s->pw - s->kw) / s->sw + 1 || s->ow <= 0)
        return GG_ERR_BAD_INSTR;
    return GG_OK;
}

#define POOL_RUNNER(NAME, ARGS)                          \
    OWN_RUNNER(NAME) {                                   \
        (void)a;                                         \
        gg_pool2d_shape s;                               \
        if (pool_checked(d, &s) != GG_OK) return GG_ERR_BAD_INSTR; \
        DISPATCH(NAME, ARGS);                            \
        return GG_OK;                                    \
    }
POOL_RUNNER(max_pool2d, (OUT, IN(0), &s))
POOL_RUNNER(max_pool2d_backward, (OUT, IN(0), IN(1), &s, d[12] != 0))
POOL_RUNNER(max_pool2d_gather, (OUT, IN(0), IN(1), &s, d[12] != 0))
POOL_RUNNER(avg_pool2d, (OUT, IN(0), &s))
POOL_RUNNER(avg_pool2d_backward, (OUT, IN(0), &s))
#undef POOL_RUNNER

/* the convolution's geometry, then the pool's over its output (conv.c) */
OWN_RUNNER(conv2d_pooled_weight_grad) {
    (void)a;
    gg_conv2d_shape s = conv_shape_of(d);
    gg_pool2d_shape ps;
    if (!conv_geometry_ok(&s) || pool_checked(d + 15, &ps) != GG_OK) return GG_ERR_BAD_INSTR;
    if (ps.n != s.n || ps.c != s.o || ps.h != s.oh || ps.w != s.ow) return GG_ERR_BAD_INSTR;
    DISPATCH(conv2d_pooled_weight_grad, (OUT, IN(0), IN(1), IN(2), &s, &ps));
    return GG_OK;
}

OWN_RUNNER(batch_norm_stats) {
    (void)a;
    DISPATCH(batch_norm_stats, (OUT, IN(0), d[0], d[1], d[2]));
    return GG_OK;
}

OWN_RUNNER(batch_norm) {
    /* dims[3] = 1: in[1] and in[2] are one (2, c) stats buffer, the variance at offset c */
    int64_t var_at = d[3] ? d[1] : 0;
    if (ins->dtype == GG_F32)
        gg_batch_norm_f32(OUT, IN(0), IN(1), (const float *)IN(2) + var_at, IN(3), IN(4), d[0], d[1], d[2], a[0]);
    else if (ins->dtype == GG_F64)
        gg_batch_norm_f64(OUT, IN(0), IN(1), (const double *)IN(2) + var_at, IN(3), IN(4), d[0], d[1], d[2], a[0]);
    else return GG_ERR_BAD_DTYPE;
    return GG_OK;
}

OWN_RUNNER(batch_norm_running_update) {
    DISPATCH(batch_norm_running_update, (OUT, IN(0), IN(1), d[0], d[1], a[0]));
    return GG_OK;
}

OWN_RUNNER(batch_norm_backward) {
    DISPATCH(batch_norm_backward, (OUT, IN(0), IN(1), IN(2), IN(3), d[0], d[1], d[2], a[0]));
    return GG_OK;
}

OWN_RUNNER(batch_norm_param_grad) {
    DISPATCH(batch_norm_param_grad, (OUT, IN(0), IN(1), IN(2), d[0], d[1], d[2], a[0]));
    return GG_OK;
}

/* ---- the fused op list (GG_OP_FUSED), checked before fused.c runs it ---- */

/* How many operands a fusable op reads (its refs), or 0 for an op the fused loop does not run:
 * the fusable rows of the op table, the same rows fused.c has cases for. */
static int fused_arity(int32_t opcode) {
    switch (opcode) {
#define GG_BINARY(E, CODE, NAME, BODY) case GG_OP_##E: return 2;
#define GG_UNARY(E, CODE, NAME, BODY) case GG_OP_##E: return 1;
#define GG_UNARY_P(E, CODE, NAME, BODY) case GG_OP_##E: return 1;
#define GG_BACKWARD(E, CODE, NAME, BODY) case GG_OP_##E: return 2;
#define GG_BACKWARD_P(E, CODE, NAME, BODY) case GG_OP_##E: return 2;
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY) case GG_OP_##E: return 3;
#include "ops_table.h"
    default: return 0;
    }
}

int32_t gg_opcode_fuses(int32_t opcode) { return fused_arity(opcode) > 0; }

int gg_fused_list_status(const int64_t *dims, uint32_t present) {
    int64_t n_ops = dims[1], has_gemm = dims[2];
    if (n_ops < 1 || n_ops > GG_FUSED_MAX_OPS || (has_gemm != 0 && has_gemm != 1) || dims[0] < 0)
        return GG_ERR_BAD_INSTR;
    if (has_gemm && ((present & 3u) != 3u || dims[3] < 0 || dims[4] < 0 || dims[5] < 0 || dims[3] * dims[4] != dims[0]))
        return GG_ERR_BAD_INSTR;
    for (int k = 0; k < GG_MAX_INPUTS; k++) {
        int64_t mode = dims[GG_FUSED_MODES + k];
        if (mode < 0 || mode > 2 || (mode == 2 && dims[4] <= 0)) return GG_ERR_BAD_INSTR;
    }
    for (int64_t j = 0; j < n_ops; j++) {
        int64_t packed = dims[GG_FUSED_HEADER + j];
        int arity = fused_arity((int32_t)(packed & 0xffff));
        if (arity == 0) return GG_ERR_UNKNOWN_OPCODE;
        for (int r = 0; r < 3; r++) {
            int64_t ref = ((packed >> (16 * (r + 1))) & 0xffff) - 1;
            int ok;
            if (r >= arity) ok = ref == -1;                                  /* no operand beyond the op's own */
            else if (ref >= 0 && ref < GG_MAX_INPUTS) ok = (present >> ref) & 1u;      /* an input that is there */
            else if (ref >= GG_FUSED_REF_TEMP && ref < GG_FUSED_REF_TEMP + j) ok = 1;  /* an earlier op's result */
            else ok = ref == GG_FUSED_REF_GEMM && has_gemm;                  /* the head's product */
            if (!ok) return GG_ERR_BAD_INSTR;
        }
    }
    return GG_OK;
}

/* ---- checking an instruction list once, before it first runs ---- */

/* What bounds an instruction's dims (the LAYOUT column of the op table) */
enum { LAYOUT_FLAT, LAYOUT_BROADCAST, LAYOUT_REDUCE, LAYOUT_STRIDED, LAYOUT_CONCAT, LAYOUT_FUSED };

/* The op table's row for an opcode: the inputs the interpreter reads ("r" required, "o" optional,
 * "*" any count) and the dims layout; 0 when the opcode has no row. */
static int row_of(int32_t opcode, const char **inputs, int *layout) {
    switch (opcode) {
#define ROW_(E, INPUTS, LAYOUT) case GG_OP_##E: *inputs = INPUTS; *layout = LAYOUT; return 1;
#define GG_BINARY(E, CODE, NAME, BODY) ROW_(E, "rr", LAYOUT_BROADCAST)
#define GG_UNARY(E, CODE, NAME, BODY) ROW_(E, "r", LAYOUT_FLAT)
#define GG_UNARY_P(E, CODE, NAME, BODY) ROW_(E, "r", LAYOUT_FLAT)
#define GG_UNARY_PQ(E, CODE, NAME, BODY) ROW_(E, "r", LAYOUT_FLAT)
#define GG_BACKWARD(E, CODE, NAME, BODY) ROW_(E, "rr", LAYOUT_FLAT)
#define GG_BACKWARD_P(E, CODE, NAME, BODY) ROW_(E, "rr", LAYOUT_FLAT)
#define GG_BACKWARD_PQ(E, CODE, NAME, BODY) ROW_(E, "rr", LAYOUT_FLAT)
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY) ROW_(E, "rrr", LAYOUT_FLAT)
#define GG_OP(E, CODE, NAME, KERNEL, RUN, INPUTS, LAYOUT) ROW_(E, INPUTS, LAYOUT_##LAYOUT)
#include "ops_table.h"
#undef ROW_
    default: return 0;
    }
}

static int buffer_index_ok(const gg_program *p, int32_t i, int optional) {
    return (i >= 0 && i < p->n_buffers) || (optional && i == -1);
}

/* GG_OK when one instruction can run without reading or writing outside what it is given. */
static int instr_status(const gg_program *p, const gg_instr *ins) {
    const char *inputs;
    int layout;
    if (!row_of(ins->opcode, &inputs, &layout)) return GG_ERR_UNKNOWN_OPCODE;
    if (ins->dtype != GG_F32 && ins->dtype != GG_F64) return GG_ERR_BAD_DTYPE;
    if (ins->n_in < 0 || ins->n_in > GG_MAX_INPUTS || ins->out_size < 0) return GG_ERR_BAD_INSTR;
    if (!buffer_index_ok(p, ins->out, 0)) return GG_ERR_BAD_BUFFER;
    uint32_t present = 0;
    if (inputs[0] == '*') {
        /* every input is required, except in a fused list, which names the ones it reads */
        if (ins->n_in < 1) return GG_ERR_BAD_INSTR;
        for (int32_t k = 0; k < ins->n_in; k++) {
            if (!buffer_index_ok(p, ins->in[k], layout == LAYOUT_FUSED)) return GG_ERR_BAD_BUFFER;
            if (ins->in[k] >= 0) present |= 1u << k;
        }
    } else {
        int32_t slots = (int32_t)strlen(inputs), required = 0;
        for (int32_t k = 0; k < slots; k++)
            if (inputs[k] == 'r') required = k + 1;
        if (ins->n_in < required || ins->n_in > slots) return GG_ERR_BAD_INSTR;
        for (int32_t k = 0; k < ins->n_in; k++)
            if (!buffer_index_ok(p, ins->in[k], inputs[k] == 'o')) return GG_ERR_BAD_BUFFER;
    }
    const int64_t *d = ins->dims;
    switch (layout) {
    case LAYOUT_BROADCAST: return d[0] >= 0 && 1 + 3 * d[0] <= GG_MAX_DIMS ? GG_OK : GG_ERR_BAD_INSTR;
    case LAYOUT_REDUCE: return d[0] >= 0 && 1 + 2 * d[0] <= GG_MAX_DIMS ? GG_OK : GG_ERR_BAD_INSTR;
    case LAYOUT_STRIDED: return d[1] >= 0 && 2 + 2 * d[1] <= GG_MAX_DIMS ? GG_OK : GG_ERR_BAD_INSTR;
    case LAYOUT_CONCAT: return 1 + ins->n_in <= GG_MAX_DIMS ? GG_OK : GG_ERR_BAD_INSTR;
    case LAYOUT_FUSED: return gg_fused_list_status(d, present);
    default: return GG_OK;
    }
}

int32_t gg_program_validate(gg_program *p) {
    if (p->n_instr < 0 || p->n_buffers < 0 || (p->n_instr > 0 && p->instrs == NULL) ||
        (p->n_buffers > 0 && p->buffers == NULL)) {
        p->failed_instr = -1;
        return GG_ERR_BAD_INSTR;
    }
    for (int32_t i = 0; i < p->n_instr; i++) {
        int status = instr_status(p, &p->instrs[i]);
        if (status != GG_OK) {
            p->failed_instr = i;
            return status;
        }
    }
    p->failed_instr = -1;
    return GG_OK;
}

const char *gg_status_name(int32_t status) {
    switch (status) {
    case GG_OK: return "ok";
    case GG_ERR_UNKNOWN_OPCODE: return "an opcode the interpreter does not know";
    case GG_ERR_BAD_DTYPE: return "a dtype the instruction cannot compute in";
    case GG_ERR_NUMERICS: return "an output that is not finite (check_numerics)";
    case GG_ERR_BAD_INSTR: return "a malformed instruction (input count, dims or fused op list)";
    case GG_ERR_BAD_INDEX: return "a class label outside [0, classes)";
    case GG_ERR_DIVERGED: return "a loss that is not finite (the step's update did not run)";
    case GG_ERR_BAD_STEPS: return "a malformed gg_steps description";
    case GG_ERR_BAD_BUFFER: return "a buffer index outside the buffer table, or -1 where the op needs a buffer";
    default: return "an unknown status";
    }
}

/* Execute one instruction: the op table's row for its opcode says how. */
static int execute(gg_program *p, const gg_instr *ins) {
    const int64_t *d = ins->dims;
    const double *a = ins->attrs;
    switch (ins->opcode) {
#define GG_BINARY(E, CODE, NAME, BODY) case GG_OP_##E: RUN_BINARY(NAME, NAME); break;
#define GG_UNARY(E, CODE, NAME, BODY) case GG_OP_##E: RUN_UNARY(NAME, NAME); break;
#define GG_UNARY_P(E, CODE, NAME, BODY) case GG_OP_##E: RUN_UNARY_P(NAME, NAME); break;
#define GG_UNARY_PQ(E, CODE, NAME, BODY) case GG_OP_##E: RUN_UNARY_PQ(NAME, NAME); break;
#define GG_BACKWARD(E, CODE, NAME, BODY) case GG_OP_##E: RUN_BACKWARD(NAME, NAME); break;
#define GG_BACKWARD_P(E, CODE, NAME, BODY) case GG_OP_##E: RUN_BACKWARD_P(NAME, NAME); break;
#define GG_BACKWARD_PQ(E, CODE, NAME, BODY) case GG_OP_##E: RUN_BACKWARD_PQ(NAME, NAME); break;
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY) case GG_OP_##E: RUN_LOSS_BACKWARD(NAME, NAME); break;
#define RUN_OWN(K, NAME) return run_##NAME(p, ins, d, a)
#define GG_OP(E, CODE, NAME, KERNEL, RUN, INPUTS, LAYOUT) case GG_OP_##E: RUN_##RUN(KERNEL, NAME); break;
#include "ops_table.h"
#undef RUN_OWN
    default:
        return GG_ERR_UNKNOWN_OPCODE;
    }
    return GG_OK;
}

/* Nonzero when every element of the instruction's output is finite. */
static int output_is_finite(const gg_program *p, const gg_instr *ins) {
    if (ins->dtype == GG_F32) {
        const float *x = F32(p, ins->out);
        for (int64_t i = 0; i < ins->out_size; i++)
            if (!isfinite(x[i])) return 0;
    } else if (ins->dtype == GG_F64) {
        const double *x = F64(p, ins->out);
        for (int64_t i = 0; i < ins->out_size; i++)
            if (!isfinite(x[i])) return 0;
    }
    return 1;
}

/* Run instructions [begin, end). */
/* Monotonic clock in nanoseconds, for profile mode. */
static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int run_range(gg_program *p, int32_t begin, int32_t end) {
    for (int32_t i = begin; i < end; i++) {
        const gg_instr *ins = &p->instrs[i];
        int status;
        if (p->profile_ns) {
            /* profile mode: time each instruction here, in C, so no Python timer distorts it */
            double start = now_ns();
            status = execute(p, ins);
            p->profile_ns[i] += now_ns() - start;
        } else {
            status = execute(p, ins);
        }
        if (status == GG_OK && p->check_numerics && !output_is_finite(p, ins)) status = GG_ERR_NUMERICS;
        if (status != GG_OK) {
            p->failed_instr = i;
            return status;
        }
    }
    return GG_OK;
}

int gg_program_run(gg_program *p) {
    int status = run_range(p, 0, p->n_instr);
    if (status == GG_OK) p->failed_instr = -1;
    return status;
}

/* ---- many steps in one call ---- */

static int valid_buf(const gg_program *p, int32_t i) { return i >= 0 && i < p->n_buffers && BUF(p, i) != NULL; }

/* Nonzero when the gg_steps description is consistent with the program (checked once per call). */
static int steps_are_valid(const gg_program *p, const gg_steps *s) {
    if (s->n_feeds < 0 || s->n_feeds > GG_STEPS_MAX_FEEDS || s->batch_size <= 0 || s->n_steps < 0 || s->first_pos < 0) return 0;
    if (s->split < 0 || s->split > p->n_instr) return 0;
    if (s->first_pos + s->n_steps * s->batch_size > s->n_rows) return 0;
    for (int32_t f = 0; f < s->n_feeds; f++)
        if (s->feed_dst[f] == NULL || s->feed_src[f] == NULL || s->feed_row_bytes[f] < 0) return 0;
    if (s->dtype != GG_F32 && s->dtype != GG_F64) return 0;
    if (s->loss_buf >= 0 && !valid_buf(p, s->loss_buf)) return 0;
    if (s->pred_buf >= 0 && (!valid_buf(p, s->pred_buf) || s->target_feed < 0 || s->target_feed >= s->n_feeds ||
                             s->pred_cols <= 0)) return 0;
    if (s->out_buf >= 0 && (!valid_buf(p, s->out_buf) || s->out_dst == NULL)) return 0;
    if (s->step_values != NULL && !valid_buf(p, s->step_value_buf)) return 0;
    if (s->record_every < 0 || (s->record_every > 0 && (!valid_buf(p, s->record_buf) || s->record_dst == NULL ||
                                                         s->record_bytes <= 0 || s->record_first < 0))) return 0;
    if (s->order != NULL) {
        const int64_t *o = s->order + s->first_pos;
        for (int64_t i = 0; i < s->n_steps * s->batch_size; i++)
            if (o[i] < 0 || o[i] >= s->n_rows) return 0;
    }
    return 1;
}

/* Copy the rows of positions [pos, pos + batch) of every full array into its gather buffer. */
static void gather_batch(const gg_steps *s, int64_t pos) {
    for (int32_t f = 0; f < s->n_feeds; f++) {
        char *dst = (char *)s->feed_dst[f];
        const char *src = (const char *)s->feed_src[f];
        int64_t row = s->feed_row_bytes[f];
        if (s->order == NULL) {
            memcpy(dst, src + pos * row, (size_t)(s->batch_size * row));
        } else {
            for (int64_t i = 0; i < s->batch_size; i++)
                memcpy(dst + i * row, src + s->order[pos + i] * row, (size_t)row);
        }
    }
}

static double read_scalar(const gg_program *p, int32_t buf, int32_t dtype) {
    return dtype == GG_F32 ? (double)F32(p, buf)[0] : F64(p, buf)[0];
}

static int64_t count_correct(const gg_program *p, const gg_steps *s) {
    const void *target = s->feed_dst[s->target_feed];
    const int64_t *labels = s->target_is_label ? (const int64_t *)target : NULL;
    if (s->dtype == GG_F32)
        return gg_count_correct_f32(F32(p, s->pred_buf), labels ? NULL : (const float *)target, labels,
                                    s->batch_size, s->pred_cols, s->threshold);
    return gg_count_correct_f64(F64(p, s->pred_buf), labels ? NULL : (const double *)target, labels,
                                s->batch_size, s->pred_cols, s->threshold);
}

int gg_program_run_steps(gg_program *p, gg_steps *s) {
    s->steps_done = 0;
    s->records_done = 0;
    p->failed_instr = -1;
    if (!steps_are_valid(p, s)) return GG_ERR_BAD_STEPS;
    for (int64_t step = 0; step < s->n_steps; step++) {
        int64_t pos = s->first_pos + step * s->batch_size;
        gather_batch(s, pos);
        if (s->step_values != NULL) F64(p, s->step_value_buf)[0] = s->step_values[step];
        int status = run_range(p, 0, s->split);
        if (status != GG_OK) return status;
        if (s->loss_buf >= 0) {
            double loss = read_scalar(p, s->loss_buf, s->dtype);
            if (s->losses) s->losses[step] = loss;
            if (s->stop_on_nonfinite && !isfinite(loss)) return GG_ERR_DIVERGED;
        }
        /* the predictions are read before the update overwrites anything */
        if (s->pred_buf >= 0 && s->correct) s->correct[step] = count_correct(p, s);
        status = run_range(p, s->split, p->n_instr);
        if (status != GG_OK) return status;
        if (s->out_buf >= 0)
            memcpy((char *)s->out_dst + pos * s->out_row_bytes, BUF(p, s->out_buf),
                   (size_t)(s->batch_size * s->out_row_bytes));
        if (s->record_every > 0 && (s->record_first + step) % s->record_every == 0)
            memcpy((char *)s->record_dst + s->records_done++ * s->record_bytes, BUF(p, s->record_buf),
                   (size_t)s->record_bytes);
        s->steps_done = step + 1;
    }
    return GG_OK;
}

int64_t gg_program_workspace_bytes(const gg_program *p, int32_t threads) {
    int64_t need = 0;
    for (int32_t i = 0; i < p->n_instr; i++) {
        const gg_instr *ins = &p->instrs[i];
        int64_t bytes = 0;
        if (ins->opcode == GG_OP_MATMUL) {
            const int64_t *d = ins->dims;
            bytes = ins->dtype == GG_F64 ? gg_gemm_workspace_bytes_f64(d[0], d[1], d[2], threads)
                                         : gg_gemm_workspace_bytes_f32(d[0], d[1], d[2], threads);
        } else if (ins->opcode == GG_OP_FUSED && ins->dims[2]) {
            const int64_t *d = ins->dims;  /* the GEMM head: rows, cols, k */
            bytes = ins->dtype == GG_F64 ? gg_gemm_workspace_bytes_f64(d[3], d[4], d[5], threads)
                                         : gg_gemm_workspace_bytes_f32(d[3], d[4], d[5], threads);
        } else if (ins->opcode >= GG_OP_CONV2D && ins->opcode <= GG_OP_CONV2D_WEIGHT_GRAD) {
            gg_conv2d_shape s = conv_shape_of(ins->dims);   /* each thread's own GEMM packing */
            int32_t kind = ins->opcode - GG_OP_CONV2D;
            bytes = ins->dtype == GG_F64 ? gg_conv2d_workspace_bytes_f64(&s, kind, threads)
                                         : gg_conv2d_workspace_bytes_f32(&s, kind, threads);
        }
        if (bytes > need) need = bytes;
    }
    return need;
}

const char *gg_opcode_name(int32_t opcode) {
    switch (opcode) {
#define GG_ANY_ROW(E, CODE, NAME) case GG_OP_##E: return #NAME;
#include "ops_table.h"
    default: return NULL;
    }
}
