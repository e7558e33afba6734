/* optim.c — optimizer update rules and gradient clipping, applied in place inside the
 * training step. Each rule follows its published definition (PyTorch's for every optimizer but
 * Ftrl, which follows TensorFlow's ApplyFtrlV2 kernel, and Lion, which follows its paper);
 * the docstrings in graphgrad/optim.py give the formulas.
 *
 * Conventions: w is the variable (overwritten), g its gradient, the state buffers (momentum,
 * moments, accumulators) are the variable's shape and overwritten too; every array is (n,).
 * Per-step scalars (lr, step, bias corrections) are computed once in double, then applied
 * elementwise in `real`. Optional state is NULL when the option that needs it is off.
 * Moving averages (momentum, moments, squared averages) store 0 where they fall below the smallest
 * normal number (gg_flush_subnormal): a decaying average of zero gradients would otherwise spend
 * a hundred steps in the subnormal range, each operation there costing tens of cycles.
 * The square-root loops vectorize only under -fno-math-errno (in the default flags of
 * graphgrad/_build_ffi.py). Compiled through kernels_f32.c / kernels_f64.c. */
#ifndef KERNEL
#error "compile optim.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>

#include "gg_math.h" /* gg_flush_subnormal, gg_pow (vectorisable, unlike libm's pow) */

/* ---- gradient clipping ---- */

/* out is () float64 = acc + Σ g²; g is (n,); acc is () float64 or NULL (a chain over every gradient).
 * Summed in double, in SIMD lanes and threads (the order of a sum is not part of the rule). */
void KERNEL(grad_sumsq)(double *out, const real *g, const double *acc, int64_t n) {
    double s = 0.0;
    if (GG_THREADED(n >= GG_PARALLEL_MIN)) {
#pragma omp parallel for simd num_threads(gg_threads()) schedule(static) reduction(+ : s)
        for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    }
    out[0] = (acc ? acc[0] : 0.0) + s;
}

/* out, g are (n,); sumsq is () float64, the squared global norm. PyTorch's clip_grad_norm_:
 * out = g · min(1, max_norm / (‖g‖ + 1e-6)) */
void KERNEL(clip_by_norm)(real *out, const real *g, const double *sumsq, int64_t n, double max_norm) {
    double coef = max_norm / (sqrt(sumsq[0]) + 1e-6);
    real c = (real)(coef < 1.0 ? coef : 1.0);
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) out[i] = g[i] * c;
    );
}

/* out, g are (n,): out = clamp(g, −clip_value, clip_value); NaN stays NaN (as torch.clamp) */
void KERNEL(clip_by_value)(real *out, const real *g, int64_t n, double clip_value) {
    real hi = (real)clip_value, lo = -hi;
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real x = g[i];
            out[i] = x > hi ? hi : (x < lo ? lo : x);
        }
    );
}

/* ---- update rules ---- */

/* w, g, buf are (n,); buf NULL when momentum == 0. PyTorch SGD: g += wd·w; buf = g on the first
 * step, else momentum·buf + (1 − dampening)·g; the direction is g + momentum·buf (nesterov) or
 * buf; w −= lr·direction. */
void KERNEL(sgd_update)(real *w, const real *g, real *buf, int64_t n, double lr, int64_t step,
                        double momentum, double dampening, double weight_decay, int32_t nesterov) {
    real lr_ = (real)lr, mom = (real)momentum, damp = (real)(1.0 - dampening), wd = (real)weight_decay;
    int first = step <= 1;
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i];
            if (weight_decay != 0.0) gi += wd * w[i];
            if (buf) {
                real bi = first ? gi : gg_flush_subnormal(mom * buf[i] + damp * gi);
                buf[i] = bi;
                gi = nesterov ? gi + mom * bi : bi;
            }
            w[i] -= lr_ * gi;
        }
    );
}

/* One RMSprop element; `centered` and `momentum` are constants where it is inlined, so each of
 * the four loops below is branch-free and vectorizes. */
static inline void KERNEL(rmsprop_element)(int64_t i, real *w, const real *g, real *sq, real *gavg, real *buf,
                                           real lr, real a, real a1, real eps, real wd, real mom, int centered,
                                           int momentum) {
    real gi = g[i];
    if (wd != 0) gi += wd * w[i];
    real s = gg_flush_subnormal(a * sq[i] + a1 * gi * gi);
    sq[i] = s;
    real avg;
    if (centered) {
        real ga = gg_flush_subnormal(gavg[i] + a1 * (gi - gavg[i]));
        gavg[i] = ga;
        avg = sqrt(s - ga * ga);
    } else {
        avg = sqrt(s);
    }
    avg += eps;
    if (momentum) {
        real b = gg_flush_subnormal(mom * buf[i] + gi / avg);
        buf[i] = b;
        w[i] -= lr * b;
    } else {
        w[i] -= lr * (gi / avg);
    }
}

/* w, g, sq, gavg, buf are (n,); gavg NULL unless centered, buf NULL unless momentum > 0.
 * PyTorch RMSprop: sq = α·sq + (1−α)·g²; avg = √(sq − gavg²) (centered, gavg lerps to g by 1−α)
 * or √sq; avg += eps; then buf = momentum·buf + g/avg, w −= lr·buf, or w −= lr·g/avg. */
void KERNEL(rmsprop_update)(real *w, const real *g, real *sq, real *gavg, real *buf, int64_t n, double lr,
                            double alpha, double eps, double weight_decay, double momentum) {
    real lr_ = (real)lr, a = (real)alpha, a1 = (real)(1.0 - alpha), eps_ = (real)eps;
    real wd = (real)weight_decay, mom = (real)momentum;
#define RMSPROP_LOOP(CENTERED, MOMENTUM)                                                                 \
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++)                                 \
        KERNEL(rmsprop_element)(i, w, g, sq, gavg, buf, lr_, a, a1, eps_, wd, mom, CENTERED, MOMENTUM);)
    if (gavg && buf) RMSPROP_LOOP(1, 1);
    else if (gavg) RMSPROP_LOOP(1, 0);
    else if (buf) RMSPROP_LOOP(0, 1);
    else RMSPROP_LOOP(0, 0);
#undef RMSPROP_LOOP
}

/* One Adam element (the rule is adam_update's, below); `amsgrad` is a constant where it is inlined.
 * A loop that tested vmax itself was vectorised by GCC with masked loads from vmax even when it is
 * NULL, and on this CPU a masked load from an unmapped page takes a microcode assist: 100k weights,
 * 40 -> 360 µs. */
static inline void KERNEL(adam_element)(int64_t i, real *w, const real *g, real *m, real *v, real *vmax,
                                        real step_size, real bc2_sqrt, real eps, real b1, real b2, real b2c,
                                        real wd, real decay, int decoupled, int amsgrad) {
    real wi = w[i], gi = g[i];
    if (decoupled) wi *= decay;
    else if (wd != 0) gi += wd * wi;
    real mi = gg_flush_subnormal(m[i] + b1 * (gi - m[i]));
    real vi = gg_flush_subnormal(b2 * v[i] + b2c * gi * gi);
    m[i] = mi;
    v[i] = vi;
    if (amsgrad) {
        if (vi > vmax[i]) vmax[i] = vi;
        vi = vmax[i];
    }
    real denom = sqrt(vi) / bc2_sqrt + eps;
    w[i] = wi - step_size * (mi / denom);
}

/* w, g, m, v, vmax are (n,); vmax NULL unless amsgrad. PyTorch Adam (decoupled = 0) and AdamW
 * (decoupled = 1: w ·= 1 − lr·wd first, instead of g += wd·w): m lerps to g by 1−β1;
 * v = β2·v + (1−β2)·g²; vmax = max(vmax, v); w −= lr/(1−β1^t) · m / (√v̂/√(1−β2^t) + eps). */
void KERNEL(adam_update)(real *w, const real *g, real *m, real *v, real *vmax, int64_t n, double lr,
                         int64_t step, double beta1, double beta2, double eps, double weight_decay,
                         int32_t decoupled) {
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    real step_size = (real)(lr / bc1), bc2_sqrt = (real)sqrt(bc2), eps_ = (real)eps;
    real b1 = (real)(1.0 - beta1), b2 = (real)beta2, b2c = (real)(1.0 - beta2);
    real wd = (real)weight_decay, decay = (real)(1.0 - lr * weight_decay);
#define ADAM_LOOP(DECOUPLED, AMSGRAD)                                                                    \
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN, for (int64_t i = 0; i < n; i++)                                 \
        KERNEL(adam_element)(i, w, g, m, v, vmax, step_size, bc2_sqrt, eps_, b1, b2, b2c, wd, decay,        \
                             DECOUPLED, AMSGRAD);)
    if (decoupled && vmax) ADAM_LOOP(1, 1);
    else if (decoupled) ADAM_LOOP(1, 0);
    else if (vmax) ADAM_LOOP(0, 1);
    else ADAM_LOOP(0, 0);
#undef ADAM_LOOP
}

/* w, g, m, u are (n,). PyTorch Adamax: g += wd·w; m lerps to g by 1−β1; u = max(β2·u, |g| + eps);
 * w −= lr/(1−β1^t) · m/u. */
void KERNEL(adamax_update)(real *w, const real *g, real *m, real *u, int64_t n, double lr, int64_t step,
                           double beta1, double beta2, double eps, double weight_decay) {
    real clr = (real)(lr / (1.0 - pow(beta1, (double)step)));
    real b1 = (real)(1.0 - beta1), b2 = (real)beta2, eps_ = (real)eps, wd = (real)weight_decay;
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i];
            if (weight_decay != 0.0) gi += wd * w[i];
            real mi = gg_flush_subnormal(m[i] + b1 * (gi - m[i]));
            real a = b2 * u[i], b = fabs(gi) + eps_;
            real ui = a > b ? a : b;
            m[i] = mi;
            u[i] = ui;
            w[i] -= clr * (mi / ui);
        }
    );
}

/* w, g, m, v are (n,); mu_product is () float64, the running product of the momentum schedule.
 * PyTorch NAdam: μ_t = β1·(1 − ½·0.96^(t·ψ)); mu_product ·= μ_t; m lerps to g by 1−β1;
 * v = β2·v + (1−β2)·g²; denom = √(v/(1−β2^t)) + eps;
 * w −= lr·(1−μ_t)/(1−Πμ) · g/denom + lr·μ_{t+1}/(1−Πμ·μ_{t+1}) · m/denom.
 * Weight decay is L2 (g += wd·w) or decoupled (w ·= 1 − lr·wd). */
void KERNEL(nadam_update)(real *w, const real *g, real *m, real *v, double *mu_product, int64_t n, double lr,
                          int64_t step, double beta1, double beta2, double eps, double weight_decay,
                          double momentum_decay, int32_t decoupled) {
    double t = (double)step;
    double bc2 = 1.0 - pow(beta2, t);
    double mu = beta1 * (1.0 - 0.5 * pow(0.96, t * momentum_decay));
    double mu_next = beta1 * (1.0 - 0.5 * pow(0.96, (t + 1.0) * momentum_decay));
    double prod = mu_product[0] * mu;
    mu_product[0] = prod;
    real c_grad = (real)(-lr * (1.0 - mu) / (1.0 - prod));
    real c_avg = (real)(-lr * mu_next / (1.0 - prod * mu_next));
    real b1 = (real)(1.0 - beta1), b2 = (real)beta2, b2c = (real)(1.0 - beta2), bc2_ = (real)bc2;
    real eps_ = (real)eps, wd = (real)weight_decay, decay = (real)(1.0 - lr * weight_decay);
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real wi = w[i], gi = g[i];
            if (decoupled) wi *= decay;
            else if (weight_decay != 0.0) gi += wd * wi;
            real mi = gg_flush_subnormal(m[i] + b1 * (gi - m[i]));
            real vi = gg_flush_subnormal(b2 * v[i] + b2c * gi * gi);
            m[i] = mi;
            v[i] = vi;
            real denom = sqrt(vi / bc2_) + eps_;
            wi += c_grad * (gi / denom);
            w[i] = wi + c_avg * (mi / denom);
        }
    );
}

/* w, g, sum are (n,). PyTorch Adagrad: g += wd·w; sum += g²; w −= lr/(1 + (t−1)·lr_decay) · g/(√sum + eps). */
void KERNEL(adagrad_update)(real *w, const real *g, real *sum, int64_t n, double lr, int64_t step,
                            double lr_decay, double weight_decay, double eps) {
    real clr = (real)(lr / (1.0 + (double)(step - 1) * lr_decay)), eps_ = (real)eps, wd = (real)weight_decay;
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i];
            if (weight_decay != 0.0) gi += wd * w[i];
            real s = sum[i] + gi * gi;
            sum[i] = s;
            w[i] -= clr * (gi / (sqrt(s) + eps_));
        }
    );
}

/* w, g, sq, acc are (n,). PyTorch Adadelta: g += wd·w; sq = ρ·sq + (1−ρ)·g²;
 * δ = √(acc + eps)/√(sq + eps) · g; acc = ρ·acc + (1−ρ)·δ²; w −= lr·δ. */
void KERNEL(adadelta_update)(real *w, const real *g, real *sq, real *acc, int64_t n, double lr, double rho,
                             double eps, double weight_decay) {
    real lr_ = (real)lr, r = (real)rho, r1 = (real)(1.0 - rho), eps_ = (real)eps, wd = (real)weight_decay;
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i];
            if (weight_decay != 0.0) gi += wd * w[i];
            real s = gg_flush_subnormal(r * sq[i] + r1 * gi * gi);
            sq[i] = s;
            real delta = sqrt(acc[i] + eps_) / sqrt(s + eps_) * gi;
            acc[i] = gg_flush_subnormal(r * acc[i] + r1 * delta * delta);
            w[i] -= lr_ * delta;
        }
    );
}

/* One Ftrl element, given pw_new = n'^p and pw_old = n^p: updates z and returns the new weight. */
static inline real KERNEL(ftrl_element)(real *zi, real wi, real gi, real pw_new, real pw_old, real lr, real l1,
                                        real shrink2, real l2x2) {
    real z = *zi + ((gi + shrink2 * wi) - (pw_new - pw_old) / lr * wi);
    *zi = z;
    real sign = z > 0 ? (real)1 : (z < 0 ? (real)-1 : (real)0);
    real shrunk = (l1 * sign - z) / (pw_new / lr + l2x2);   /* computed always: a select, not a branch */
    return fabs(z) > l1 ? shrunk : (real)0;
}

/* w, g, n_acc, z are (n,). TensorFlow ApplyFtrlV2 (p = −lr_power, l2' = l2 + beta/(2·lr) as Keras
 * passes it): ĝ = g + 2·l2_shrinkage·w; n' = n + g²; z += ĝ − (n'^p − n^p)/lr · w;
 * w = (l1·sign(z) − z)/(n'^p/lr + 2·l2') where |z| > l1, else exactly 0; n = n'.
 * lr_power = −0.5 (the default) takes square roots, as TensorFlow's kernel does. */
void KERNEL(ftrl_update)(real *w, const real *g, real *n_acc, real *z, int64_t n, double lr, double lr_power,
                         double l1, double l2, double l2_shrinkage, double beta) {
    real lr_ = (real)lr, l1_ = (real)l1, p = (real)(-lr_power), shrink2 = (real)(2.0 * l2_shrinkage);
    real l2x2 = (real)(2.0 * (l2 + beta / (2.0 * lr)));
    if (lr_power == -0.5) {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) {
                real gi = g[i], old = n_acc[i], acc = old + gi * gi;
                w[i] = KERNEL(ftrl_element)(&z[i], w[i], gi, sqrt(acc), sqrt(old), lr_, l1_, shrink2, l2x2);
                n_acc[i] = acc;
            }
        );
    } else {
        GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
            for (int64_t i = 0; i < n; i++) {
                real gi = g[i], old = n_acc[i], acc = old + gi * gi;
                w[i] = KERNEL(ftrl_element)(&z[i], w[i], gi, gg_pow(acc, p), gg_pow(old, p), lr_, l1_, shrink2, l2x2);
                n_acc[i] = acc;
            }
        );
    }
}

/* w, g, m are (n,). Lion (Chen et al. 2023): w ·= 1 − lr·wd; w −= lr·sign(β1·m + (1−β1)·g);
 * then m = β2·m + (1−β2)·g. sign(0) = 0. */
void KERNEL(lion_update)(real *w, const real *g, real *m, int64_t n, double lr, double beta1, double beta2,
                         double weight_decay) {
    real lr_ = (real)lr, b1 = (real)beta1, b1c = (real)(1.0 - beta1), b2 = (real)beta2, b2c = (real)(1.0 - beta2);
    real decay = (real)(1.0 - lr * weight_decay);
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i], c = b1 * m[i] + b1c * gi;
            real sign = c > 0 ? (real)1 : (c < 0 ? (real)-1 : (real)0);
            w[i] = w[i] * decay - lr_ * sign;
            m[i] = gg_flush_subnormal(b2 * m[i] + b2c * gi);
        }
    );
}

