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
    GG_ERR_BAD_INSTR = 4
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
    /* elementwise, unary (dims[0] = element count) */
    GG_OP_NEG = 20,
    GG_OP_ABS = 21,
    GG_OP_SIGN = 22,
    GG_OP_COPY = 23,
    /* activations and their backward kernels */
    GG_OP_RELU = 40,
    GG_OP_RELU_BACKWARD = 41,
    GG_OP_SIGMOID = 42,
    GG_OP_SIGMOID_BACKWARD = 43,
    /* reductions and their inverse (dims: rank, in_shape[rank], out_stride[rank]; attrs[0] = scale) */
    GG_OP_SUM = 60,
    GG_OP_EXPAND = 61,
    /* matrix product (dims: M, N, K, trans_a, trans_b; attrs: alpha, beta) */
    GG_OP_MATMUL = 80,
    /* losses (dims[0] = element count; attrs[0] = scale, 1/n for the mean) */
    GG_OP_MSE = 100,
    GG_OP_MSE_BACKWARD = 101,
    GG_OP_L1 = 102,
    GG_OP_L1_BACKWARD = 103,
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
    GG_OP_CLIP_BY_VALUE = 142
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
} gg_program;

/* Run every instruction once, in order. Returns a gg_status; on error sets p->failed_instr. */
int gg_program_run(gg_program *p);

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
/* dx, x, y, dy are (n,): relu's backward reads its input x, sigmoid's reads its output y */
void gg_relu_backward_f32(float *dx, const float *x, const float *dy, int64_t n);
void gg_sigmoid_backward_f32(float *dx, const float *y, const float *dy, int64_t n);
void gg_relu_backward_f64(double *dx, const double *x, const double *dy, int64_t n);
void gg_sigmoid_backward_f64(double *dx, const double *y, const double *dy, int64_t n);

/* ---- reduce.c ---- */
/* x is in_shape[rank]; out has out_n elements, out_stride is 0 on reduced axes; out = scale * sum */
void gg_sum_f32(float *out, int64_t out_n, const float *x, int32_t rank, const int64_t *in_shape, const int64_t *out_stride, double scale);
void gg_sum_f64(double *out, int64_t out_n, const double *x, int32_t rank, const int64_t *in_shape, const int64_t *out_stride, double scale);
/* out is out_shape[rank]; g is read with g_stride (0 on reduced axes); out = scale * g broadcast */
void gg_expand_f32(float *out, const float *g, int32_t rank, const int64_t *out_shape, const int64_t *g_stride, double scale);
void gg_expand_f64(double *out, const double *g, int32_t rank, const int64_t *out_shape, const int64_t *g_stride, double scale);

/* ---- gemm.c ---- */
/* c is (m,n) = alpha * op(a) op(b) + beta * c; op(a) is (m,k), op(b) is (k,n); trans flags 0/1 */
void gg_gemm_f32(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k, int32_t trans_a, int32_t trans_b, double alpha, double beta);
void gg_gemm_f64(double *c, const double *a, const double *b, int64_t m, int64_t n, int64_t k, int32_t trans_a, int32_t trans_b, double alpha, double beta);

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

/* END CDEF */

#endif
