/* optim.c — optimizer update rules, applied to a variable in place. Each follows its
 * published (PyTorch) definition; the docstrings in graphgrad/optim.py give the formulas.
 * Compiled through kernels_f32.c / kernels_f64.c. */
#ifndef KERNEL
#error "compile optim.c through kernels_f32.c or kernels_f64.c"
#endif

/* w, g, buf are (n,); step counts from 1. PyTorch SGD: g += wd·w; buf = g on the first step,
 * else momentum·buf + (1 − dampening)·g; the step direction is g + momentum·buf (nesterov)
 * or buf; w −= lr·direction. With momentum == 0 buf is unused (may be NULL). */
void KERNEL(sgd_update)(real *w, const real *g, real *buf, int64_t n, double lr, int64_t step,
                        double momentum, double dampening, double weight_decay, int32_t nesterov) {
    real lr_ = (real)lr, mom = (real)momentum, damp = (real)(1.0 - dampening), wd = (real)weight_decay;
    int first = step <= 1;
#pragma omp parallel for num_threads(gg_threads()) if (n >= GG_PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        real gi = g[i];
        if (weight_decay != 0.0) gi += wd * w[i];
        if (momentum != 0.0) {
            real bi = first ? gi : mom * buf[i] + damp * gi;
            buf[i] = bi;
            gi = nesterov ? gi + mom * bi : bi;
        }
        w[i] -= lr_ * gi;
    }
}
