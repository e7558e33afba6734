/* loss.c — the loss functions, forward (to a scalar) and backward (gradient w.r.t. the
 * prediction). `scale` is 1/n for reduction="mean" and 1 for "sum". Compiled through kernels_f*.c. */
#ifndef KERNEL
#error "compile loss.c through kernels_f32.c or kernels_f64.c"
#endif
#include <tgmath.h>

/* p, y are (n,); out is () */
void KERNEL(mse)(real *out, const real *p, const real *y, int64_t n, double scale) {
    double acc = 0.0;
#pragma omp parallel for num_threads(gg_threads()) if (n >= GG_PARALLEL_MIN) reduction(+ : acc)
    for (int64_t i = 0; i < n; i++) {
        double d = (double)p[i] - (double)y[i];
        acc += d * d;
    }
    out[0] = (real)(acc * scale);
}

/* dp, p, y are (n,); dout is () */
void KERNEL(mse_backward)(real *dp, const real *p, const real *y, const real *dout, int64_t n, double scale) {
    real c = (real)(2.0 * scale * (double)dout[0]);
#pragma omp parallel for num_threads(gg_threads()) if (n >= GG_PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) dp[i] = c * (p[i] - y[i]);
}

/* p, y are (n,); out is () */
void KERNEL(l1)(real *out, const real *p, const real *y, int64_t n, double scale) {
    double acc = 0.0;
#pragma omp parallel for num_threads(gg_threads()) if (n >= GG_PARALLEL_MIN) reduction(+ : acc)
    for (int64_t i = 0; i < n; i++) acc += fabs((double)p[i] - (double)y[i]);
    out[0] = (real)(acc * scale);
}

/* dp, p, y are (n,); dout is (); the subgradient at p == y is 0 */
void KERNEL(l1_backward)(real *dp, const real *p, const real *y, const real *dout, int64_t n, double scale) {
    real c = (real)(scale * (double)dout[0]);
#pragma omp parallel for num_threads(gg_threads()) if (n >= GG_PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        real d = p[i] - y[i];
        dp[i] = c * (real)((d > 0) - (d < 0));
    }
}
