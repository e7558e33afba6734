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

/* ---- helpers ---- */
#define BUF(p, i) ((p)->buffers[(i)])
#define F32(p, i) ((float *)BUF(p, i))
#define F64(p, i) ((double *)BUF(p, i))
#define SCALAR_F64(p, i) (((const double *)BUF(p, i))[0])
#define OPT(p, i) ((i) >= 0 ? BUF(p, i) : NULL)              /* an optional buffer: -1 means absent */
#define STEP(p, i) ((int64_t)SCALAR_F64(p, i))               /* the optimizer's step count */

/* Call kernel NAME for the instruction's dtype with the argument list written once. */
#define DISPATCH(ins, NAME, F32_ARGS, F64_ARGS)                  \
    do {                                                         \
        if ((ins)->dtype == GG_F32) gg_##NAME##_f32 F32_ARGS;    \
        else if ((ins)->dtype == GG_F64) gg_##NAME##_f64 F64_ARGS; \
        else return GG_ERR_BAD_DTYPE;                            \
    } while (0)

#define BINARY(NAME)                                                                         \
    DISPATCH(ins, NAME,                                                                      \
             (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), (int32_t)d[0], d + 1, \
              d + 1 + d[0], d + 1 + 2 * d[0]),                                               \
             (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), (int32_t)d[0], d + 1, \
              d + 1 + d[0], d + 1 + 2 * d[0]))

#define UNARY(NAME) \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), d[0]), (F64(p, ins->out), F64(p, ins->in[0]), d[0]))

#define BACKWARD(NAME)                                                               \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0]), \
             (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0]))

#define LOSS(NAME)                                                                            \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], a[0]), \
             (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], a[0]))

#define LOSS_BACKWARD(NAME)                                                                  \
    DISPATCH(ins, NAME,                                                                      \
             (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), d[0], a[0]), \
             (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), d[0], a[0]))

#define UNARY_P(NAME) \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), d[0], a[0]), (F64(p, ins->out), F64(p, ins->in[0]), d[0], a[0]))

#define UNARY_PQ(NAME)                                                                   \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), d[0], a[0], a[1]),        \
             (F64(p, ins->out), F64(p, ins->in[0]), d[0], a[0], a[1]))

#define BACKWARD_P(NAME)                                                                     \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], a[0]), \
             (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], a[0]))

#define BACKWARD_PQ(NAME)                                                                          \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], a[0], a[1]), \
             (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], a[0], a[1]))

/* softmax family: dims outer, n, inner */
#define ALONG_AXIS(NAME) \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), d[0], d[1], d[2]), \
             (F64(p, ins->out), F64(p, ins->in[0]), d[0], d[1], d[2]))

#define ALONG_AXIS_BACKWARD(NAME)                                                                   \
    DISPATCH(ins, NAME, (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], d[1], d[2]), \
             (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], d[1], d[2]))

/* shape ops: dims offset, rank, shape[rank], stride[rank] */
#define STRIDED(NAME, ...)                                                                               \
    DISPATCH(ins, NAME, (F32(p, ins->out), __VA_ARGS__ F32(p, ins->in[0]), d[0], (int32_t)d[1], d + 2, d + 2 + d[1]), \
             (F64(p, ins->out), __VA_ARGS__ F64(p, ins->in[0]), d[0], (int32_t)d[1], d + 2, d + 2 + d[1]))

#define LABELS(p, i) ((const int64_t *)BUF(p, i))

/* Execute one instruction. */
static int execute(gg_program *p, const gg_instr *ins) {
    const int64_t *d = ins->dims;
    const double *a = ins->attrs;
    switch (ins->opcode) {
    case GG_OP_ADD: BINARY(add); break;
    case GG_OP_SUB: BINARY(sub); break;
    case GG_OP_MUL: BINARY(mul); break;
    case GG_OP_DIV: BINARY(div); break;
    case GG_OP_NEG: UNARY(neg); break;
    case GG_OP_ABS: UNARY(abs); break;
    case GG_OP_SIGN: UNARY(sign); break;
    case GG_OP_COPY: UNARY(copy); break;
    case GG_OP_RELU: UNARY(relu); break;
    case GG_OP_SIGMOID: UNARY(sigmoid); break;
    case GG_OP_RELU_BACKWARD: BACKWARD(relu_backward); break;
    case GG_OP_SIGMOID_BACKWARD: BACKWARD(sigmoid_backward); break;
    case GG_OP_POW: BINARY(pow); break;
    case GG_OP_MAXIMUM: BINARY(maximum); break;
    case GG_OP_MINIMUM: BINARY(minimum); break;
    case GG_OP_MAXIMUM_MASK: BINARY(maximum_mask); break;
    case GG_OP_EQUAL: BINARY(equal); break;
    case GG_OP_EXP: UNARY(exp); break;
    case GG_OP_LOG: UNARY(log); break;
    case GG_OP_SQRT: UNARY(sqrt); break;
    case GG_OP_POW_SCALAR: UNARY_P(pow_scalar); break;
    case GG_OP_CLIP: UNARY_PQ(clip); break;
    case GG_OP_CLIP_BACKWARD: BACKWARD_PQ(clip_backward); break;
    case GG_OP_LEAKY_RELU: UNARY_P(leaky_relu); break;
    case GG_OP_LEAKY_RELU_BACKWARD: BACKWARD_P(leaky_relu_backward); break;
    case GG_OP_ELU: UNARY_P(elu); break;
    case GG_OP_ELU_BACKWARD: BACKWARD_P(elu_backward); break;
    case GG_OP_GELU:
        if (d[1]) UNARY(gelu_tanh);
        else UNARY(gelu);
        break;
    case GG_OP_GELU_BACKWARD:
        if (d[1]) BACKWARD(gelu_tanh_backward);
        else BACKWARD(gelu_backward);
        break;
    case GG_OP_TANH: UNARY(tanh); break;
    case GG_OP_TANH_BACKWARD: BACKWARD(tanh_backward); break;
    case GG_OP_SOFTPLUS: UNARY(softplus); break;
    case GG_OP_SOFTPLUS_BACKWARD: BACKWARD(softplus_backward); break;
    case GG_OP_MAX:
        DISPATCH(ins, max,
                 (F32(p, ins->out), ins->out_size, F32(p, ins->in[0]), (int32_t)d[0], d + 1, d + 1 + d[0]),
                 (F64(p, ins->out), ins->out_size, F64(p, ins->in[0]), (int32_t)d[0], d + 1, d + 1 + d[0]));
        break;
    case GG_OP_SOFTMAX: ALONG_AXIS(softmax); break;
    case GG_OP_LOG_SOFTMAX: ALONG_AXIS(log_softmax); break;
    case GG_OP_SOFTMAX_BACKWARD: ALONG_AXIS_BACKWARD(softmax_backward); break;
    case GG_OP_LOG_SOFTMAX_BACKWARD: ALONG_AXIS_BACKWARD(log_softmax_backward); break;
    case GG_OP_RESHAPE: UNARY(copy); break;
    case GG_OP_TRANSPOSE:
    case GG_OP_BROADCAST_TO:
    case GG_OP_SLICE:
    case GG_OP_CONCAT_PART: STRIDED(strided_copy); break;
    case GG_OP_SLICE_BACKWARD: STRIDED(strided_scatter, ins->out_size,); break;
    case GG_OP_CONCAT: {
        /* dims: outer, widths[n_in]; the input pointers gathered on the stack */
        if (ins->n_in < 1 || ins->n_in > 6) return GG_ERR_BAD_INSTR;
        const void *xs[6];
        for (int32_t k = 0; k < ins->n_in; k++) xs[k] = BUF(p, ins->in[k]);
        DISPATCH(ins, concat, (F32(p, ins->out), (const float *const *)xs, ins->n_in, d[0], d + 1),
                 (F64(p, ins->out), (const double *const *)xs, ins->n_in, d[0], d + 1));
        break;
    }
    case GG_OP_SUM:
        DISPATCH(ins, sum,
                 (F32(p, ins->out), ins->out_size, F32(p, ins->in[0]), (int32_t)d[0], d + 1, d + 1 + d[0], a[0]),
                 (F64(p, ins->out), ins->out_size, F64(p, ins->in[0]), (int32_t)d[0], d + 1, d + 1 + d[0], a[0]));
        break;
    case GG_OP_EXPAND:
        DISPATCH(ins, expand,
                 (F32(p, ins->out), F32(p, ins->in[0]), (int32_t)d[0], d + 1, d + 1 + d[0], a[0]),
                 (F64(p, ins->out), F64(p, ins->in[0]), (int32_t)d[0], d + 1, d + 1 + d[0], a[0]));
        break;
    case GG_OP_MATMUL: {
        /* optional epilogue: bias buffer in[2], activation dims[5]; optional float64 scalar in[3]
         * multiplying alpha (a plain SGD update: alpha = -1 · lr, beta = 1, out = the variable) */
        gg_epilogue ep = {ins->n_in > 2 && ins->in[2] >= 0 ? BUF(p, ins->in[2]) : NULL, (int32_t)d[5]};
        const gg_epilogue *epp = ep.bias || ep.act ? &ep : NULL;
        double alpha = ins->n_in > 3 && ins->in[3] >= 0 ? a[0] * SCALAR_F64(p, ins->in[3]) : a[0];
        DISPATCH(ins, gemm,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], d[1], d[2], (int32_t)d[3],
                  (int32_t)d[4], alpha, a[1], epp, p->workspace, p->workspace_bytes),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], d[1], d[2], (int32_t)d[3],
                  (int32_t)d[4], alpha, a[1], epp, p->workspace, p->workspace_bytes));
        break;
    }
    case GG_OP_MSE: LOSS(mse); break;
    case GG_OP_MSE_BACKWARD: LOSS_BACKWARD(mse_backward); break;
    case GG_OP_L1: LOSS(l1); break;
    case GG_OP_L1_BACKWARD: LOSS_BACKWARD(l1_backward); break;
    case GG_OP_HUBER:
        DISPATCH(ins, huber, (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], a[0], a[1]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], a[0], a[1]));
        break;
    case GG_OP_HUBER_BACKWARD:
        DISPATCH(ins, huber_backward,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), d[0], a[0], a[1]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), d[0], a[0], a[1]));
        break;
    case GG_OP_BCE: LOSS(bce); break;
    case GG_OP_BCE_BACKWARD:
        DISPATCH(ins, bce_backward,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), d[0], a[0], (int32_t)d[1]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), d[0], a[0], (int32_t)d[1]));
        break;
    case GG_OP_SOFTMAX_CE:
        DISPATCH(ins, softmax_ce, (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], d[1], a[0]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], d[1], a[0]));
        break;
    case GG_OP_SOFTMAX_CE_BACKWARD:
        DISPATCH(ins, softmax_ce_backward,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), d[0], d[1], a[0], (int32_t)d[2]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), d[0], d[1], a[0], (int32_t)d[2]));
        break;
    case GG_OP_SOFTMAX_CE_LABELS: {
        /* labels are an int64 buffer; a label outside [0, classes) is reported, never read */
        int32_t bad = 0;
        if (ins->dtype == GG_F32)
            bad = gg_softmax_ce_labels_f32(F32(p, ins->out), F32(p, ins->in[0]), LABELS(p, ins->in[1]), d[0], d[1], a[0]);
        else if (ins->dtype == GG_F64)
            bad = gg_softmax_ce_labels_f64(F64(p, ins->out), F64(p, ins->in[0]), LABELS(p, ins->in[1]), d[0], d[1], a[0]);
        else return GG_ERR_BAD_DTYPE;
        if (bad) return GG_ERR_BAD_INDEX;
        break;
    }
    case GG_OP_SOFTMAX_CE_LABELS_BACKWARD: {
        int32_t bad = 0;
        if (ins->dtype == GG_F32)
            bad = gg_softmax_ce_labels_backward_f32(F32(p, ins->out), F32(p, ins->in[0]), LABELS(p, ins->in[1]),
                                                    F32(p, ins->in[2]), d[0], d[1], a[0]);
        else if (ins->dtype == GG_F64)
            bad = gg_softmax_ce_labels_backward_f64(F64(p, ins->out), F64(p, ins->in[0]), LABELS(p, ins->in[1]),
                                                    F64(p, ins->in[2]), d[0], d[1], a[0]);
        else return GG_ERR_BAD_DTYPE;
        if (bad) return GG_ERR_BAD_INDEX;
        break;
    }
    case GG_OP_DROPOUT_MASK:
        DISPATCH(ins, dropout_mask, (F32(p, ins->out), d[0], (uint64_t)d[1], (uint64_t)SCALAR_F64(p, ins->in[0]), a[0]),
                 (F64(p, ins->out), d[0], (uint64_t)d[1], (uint64_t)SCALAR_F64(p, ins->in[0]), a[0]));
        break;
    case GG_OP_INCREMENT:
        /* a float64 counter variable, e.g. the optimizer's step count */
        F64(p, ins->out)[0] += a[0];
        break;
    /* optimizer updates: out is the variable (written in place), in[0] its gradient, then the
     * state buffers (-1 when absent), then the lr and step scalars; layouts in ops/updates.py */
    case GG_OP_SGD_UPDATE:
        DISPATCH(ins, sgd_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), (float *)OPT(p, ins->in[1]), d[0], SCALAR_F64(p, ins->in[2]),
                  STEP(p, ins->in[3]), a[0], a[1], a[2], (int32_t)d[1]),
                 (F64(p, ins->out), F64(p, ins->in[0]), (double *)OPT(p, ins->in[1]), d[0], SCALAR_F64(p, ins->in[2]),
                  STEP(p, ins->in[3]), a[0], a[1], a[2], (int32_t)d[1]));
        break;
    case GG_OP_RMSPROP_UPDATE:
        DISPATCH(ins, rmsprop_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), (float *)OPT(p, ins->in[2]),
                  (float *)OPT(p, ins->in[3]), d[0], SCALAR_F64(p, ins->in[4]), a[0], a[1], a[2], a[3]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), (double *)OPT(p, ins->in[2]),
                  (double *)OPT(p, ins->in[3]), d[0], SCALAR_F64(p, ins->in[4]), a[0], a[1], a[2], a[3]));
        break;
    case GG_OP_ADAM_UPDATE:
        DISPATCH(ins, adam_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]),
                  (float *)OPT(p, ins->in[3]), d[0], SCALAR_F64(p, ins->in[4]), STEP(p, ins->in[5]), a[0], a[1],
                  a[2], a[3], (int32_t)d[1]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]),
                  (double *)OPT(p, ins->in[3]), d[0], SCALAR_F64(p, ins->in[4]), STEP(p, ins->in[5]), a[0], a[1],
                  a[2], a[3], (int32_t)d[1]));
        break;
    case GG_OP_ADAMAX_UPDATE:
        DISPATCH(ins, adamax_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), d[0],
                  SCALAR_F64(p, ins->in[3]), STEP(p, ins->in[4]), a[0], a[1], a[2], a[3]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), d[0],
                  SCALAR_F64(p, ins->in[3]), STEP(p, ins->in[4]), a[0], a[1], a[2], a[3]));
        break;
    case GG_OP_NADAM_UPDATE:
        DISPATCH(ins, nadam_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), F64(p, ins->in[3]),
                  d[0], SCALAR_F64(p, ins->in[4]), STEP(p, ins->in[5]), a[0], a[1], a[2], a[3], a[4], (int32_t)d[1]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), F64(p, ins->in[3]),
                  d[0], SCALAR_F64(p, ins->in[4]), STEP(p, ins->in[5]), a[0], a[1], a[2], a[3], a[4], (int32_t)d[1]));
        break;
    case GG_OP_ADAGRAD_UPDATE:
        DISPATCH(ins, adagrad_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], SCALAR_F64(p, ins->in[2]),
                  STEP(p, ins->in[3]), a[0], a[1], a[2]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], SCALAR_F64(p, ins->in[2]),
                  STEP(p, ins->in[3]), a[0], a[1], a[2]));
        break;
    case GG_OP_ADADELTA_UPDATE:
        DISPATCH(ins, adadelta_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), d[0],
                  SCALAR_F64(p, ins->in[3]), a[0], a[1], a[2]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), d[0],
                  SCALAR_F64(p, ins->in[3]), a[0], a[1], a[2]));
        break;
    case GG_OP_FTRL_UPDATE:
        DISPATCH(ins, ftrl_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), F32(p, ins->in[2]), d[0],
                  SCALAR_F64(p, ins->in[3]), a[0], a[1], a[2], a[3], a[4]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), F64(p, ins->in[2]), d[0],
                  SCALAR_F64(p, ins->in[3]), a[0], a[1], a[2], a[3], a[4]));
        break;
    case GG_OP_LION_UPDATE:
        DISPATCH(ins, lion_update,
                 (F32(p, ins->out), F32(p, ins->in[0]), F32(p, ins->in[1]), d[0], SCALAR_F64(p, ins->in[2]), a[0],
                  a[1], a[2]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], SCALAR_F64(p, ins->in[2]), a[0],
                  a[1], a[2]));
        break;
    /* clipping: grad_sumsq's output is float64 whatever the gradient's dtype, so dims[1] names
     * the gradient's dtype */
    case GG_OP_GRAD_SUMSQ:
        if (d[1] == GG_F32) gg_grad_sumsq_f32(F64(p, ins->out), F32(p, ins->in[0]), (const double *)OPT(p, ins->in[1]), d[0]);
        else if (d[1] == GG_F64) gg_grad_sumsq_f64(F64(p, ins->out), F64(p, ins->in[0]), (const double *)OPT(p, ins->in[1]), d[0]);
        else return GG_ERR_BAD_DTYPE;
        break;
    case GG_OP_CLIP_BY_NORM:
        DISPATCH(ins, clip_by_norm, (F32(p, ins->out), F32(p, ins->in[0]), F64(p, ins->in[1]), d[0], a[0]),
                 (F64(p, ins->out), F64(p, ins->in[0]), F64(p, ins->in[1]), d[0], a[0]));
        break;
    case GG_OP_CLIP_BY_VALUE:
        DISPATCH(ins, clip_by_value, (F32(p, ins->out), F32(p, ins->in[0]), d[0], a[0]),
                 (F64(p, ins->out), F64(p, ins->in[0]), d[0], a[0]));
        break;
    case GG_OP_FUSED: {
        if (d[1] < 1 || d[1] > 8 || ins->n_in > 6 || (d[2] && (ins->n_in < 2 || ins->in[0] < 0 || ins->in[1] < 0)))
            return GG_ERR_BAD_INSTR;
        const void *in[6] = {0};
        for (int32_t k = 0; k < ins->n_in && k < 6; k++) in[k] = ins->in[k] >= 0 ? BUF(p, ins->in[k]) : NULL;
        DISPATCH(ins, fused, (F32(p, ins->out), (const float *const *)in, d, a, p->workspace, p->workspace_bytes),
                 (F64(p, ins->out), (const double *const *)in, d, a, p->workspace, p->workspace_bytes));
        break;
    }
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
    if (s->n_feeds < 0 || s->n_feeds > 8 || s->batch_size <= 0 || s->n_steps < 0 || s->first_pos < 0) return 0;
    if (s->split < 0 || s->split > p->n_instr) return 0;
    if (s->first_pos + s->n_steps * s->batch_size > s->n_rows) return 0;
    for (int32_t f = 0; f < s->n_feeds; f++)
        if (s->feed_dst[f] == NULL || s->feed_src[f] == NULL || s->feed_row_bytes[f] < 0) return 0;
    if (s->dtype != GG_F32 && s->dtype != GG_F64) return 0;
    if (s->loss_buf >= 0 && !valid_buf(p, s->loss_buf)) return 0;
    if (s->pred_buf >= 0 && (!valid_buf(p, s->pred_buf) || s->target_feed < 0 || s->target_feed >= s->n_feeds ||
                             s->pred_cols <= 0)) return 0;
    if (s->out_buf >= 0 && (!valid_buf(p, s->out_buf) || s->out_dst == NULL)) return 0;
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
    p->failed_instr = -1;
    if (!steps_are_valid(p, s)) return GG_ERR_BAD_STEPS;
    for (int64_t step = 0; step < s->n_steps; step++) {
        int64_t pos = s->first_pos + step * s->batch_size;
        gather_batch(s, pos);
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
        }
        if (bytes > need) need = bytes;
    }
    return need;
}

const char *gg_opcode_name(int32_t opcode) {
    switch (opcode) {
    case GG_OP_ADD: return "add";
    case GG_OP_SUB: return "sub";
    case GG_OP_MUL: return "mul";
    case GG_OP_DIV: return "div";
    case GG_OP_NEG: return "neg";
    case GG_OP_ABS: return "abs";
    case GG_OP_SIGN: return "sign";
    case GG_OP_COPY: return "copy";
    case GG_OP_RELU: return "relu";
    case GG_OP_RELU_BACKWARD: return "relu_backward";
    case GG_OP_SIGMOID: return "sigmoid";
    case GG_OP_SIGMOID_BACKWARD: return "sigmoid_backward";
    case GG_OP_SUM: return "sum";
    case GG_OP_EXPAND: return "expand";
    case GG_OP_MATMUL: return "matmul";
    case GG_OP_MSE: return "mse";
    case GG_OP_MSE_BACKWARD: return "mse_backward";
    case GG_OP_L1: return "l1";
    case GG_OP_L1_BACKWARD: return "l1_backward";
    case GG_OP_DROPOUT_MASK: return "dropout_mask";
    case GG_OP_INCREMENT: return "increment";
    case GG_OP_SGD_UPDATE: return "sgd_update";
    case GG_OP_RMSPROP_UPDATE: return "rmsprop_update";
    case GG_OP_ADAM_UPDATE: return "adam_update";
    case GG_OP_ADAMAX_UPDATE: return "adamax_update";
    case GG_OP_NADAM_UPDATE: return "nadam_update";
    case GG_OP_ADAGRAD_UPDATE: return "adagrad_update";
    case GG_OP_ADADELTA_UPDATE: return "adadelta_update";
    case GG_OP_FTRL_UPDATE: return "ftrl_update";
    case GG_OP_LION_UPDATE: return "lion_update";
    case GG_OP_GRAD_SUMSQ: return "grad_sumsq";
    case GG_OP_CLIP_BY_NORM: return "clip_by_norm";
    case GG_OP_CLIP_BY_VALUE: return "clip_by_value";
    case GG_OP_POW: return "pow";
    case GG_OP_MAXIMUM: return "maximum";
    case GG_OP_MINIMUM: return "minimum";
    case GG_OP_MAXIMUM_MASK: return "maximum_mask";
    case GG_OP_EQUAL: return "equal";
    case GG_OP_EXP: return "exp";
    case GG_OP_LOG: return "log";
    case GG_OP_SQRT: return "sqrt";
    case GG_OP_POW_SCALAR: return "pow_scalar";
    case GG_OP_CLIP: return "clip";
    case GG_OP_CLIP_BACKWARD: return "clip_backward";
    case GG_OP_LEAKY_RELU: return "leaky_relu";
    case GG_OP_LEAKY_RELU_BACKWARD: return "leaky_relu_backward";
    case GG_OP_ELU: return "elu";
    case GG_OP_ELU_BACKWARD: return "elu_backward";
    case GG_OP_GELU: return "gelu";
    case GG_OP_GELU_BACKWARD: return "gelu_backward";
    case GG_OP_TANH: return "tanh";
    case GG_OP_TANH_BACKWARD: return "tanh_backward";
    case GG_OP_SOFTPLUS: return "softplus";
    case GG_OP_SOFTPLUS_BACKWARD: return "softplus_backward";
    case GG_OP_MAX: return "max";
    case GG_OP_SOFTMAX: return "softmax";
    case GG_OP_SOFTMAX_BACKWARD: return "softmax_backward";
    case GG_OP_LOG_SOFTMAX: return "log_softmax";
    case GG_OP_LOG_SOFTMAX_BACKWARD: return "log_softmax_backward";
    case GG_OP_HUBER: return "huber";
    case GG_OP_HUBER_BACKWARD: return "huber_backward";
    case GG_OP_BCE: return "binary_cross_entropy";
    case GG_OP_BCE_BACKWARD: return "binary_cross_entropy_backward";
    case GG_OP_SOFTMAX_CE: return "softmax_cross_entropy";
    case GG_OP_SOFTMAX_CE_BACKWARD: return "softmax_cross_entropy_backward";
    case GG_OP_SOFTMAX_CE_LABELS: return "softmax_cross_entropy_labels";
    case GG_OP_SOFTMAX_CE_LABELS_BACKWARD: return "softmax_cross_entropy_labels_backward";
    case GG_OP_RESHAPE: return "reshape";
    case GG_OP_TRANSPOSE: return "transpose";
    case GG_OP_BROADCAST_TO: return "broadcast_to";
    case GG_OP_SLICE: return "slice";
    case GG_OP_SLICE_BACKWARD: return "slice_backward";
    case GG_OP_CONCAT: return "concat";
    case GG_OP_CONCAT_PART: return "concat_part";
    case GG_OP_FUSED: return "fused";
    default: return NULL;
    }
}
