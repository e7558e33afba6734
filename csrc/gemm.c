/* gemm.c — the matrix product C = alpha·op(A)·op(B) + beta·C in its four transpose forms.
 * This is the plain, cache-friendly reference loop (row of C at a time, unit-stride inner
 * loops where the layout allows); OpenMP over rows of C. Compiled through kernels_f*.c. */
#ifndef KERNEL
#error "compile gemm.c through kernels_f32.c or kernels_f64.c"
#endif

/* c is (m,n); op(a) is (m,k): a is (m,k), or (k,m) when trans_a; op(b) is (k,n): b is (k,n), or (n,k) when trans_b */
void KERNEL(gemm)(real *c, const real *a, const real *b, int64_t m, int64_t n, int64_t k,
                  int32_t trans_a, int32_t trans_b, double alpha, double beta) {
    real al = (real)alpha, be = (real)beta;
#pragma omp parallel for num_threads(gg_threads()) if (m * n * k >= 4 * GG_PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < m; i++) {
        real *ci = c + i * n;
        if (beta == 0.0) {
            for (int64_t j = 0; j < n; j++) ci[j] = 0;
        } else if (beta != 1.0) {
            for (int64_t j = 0; j < n; j++) ci[j] *= be;
        }
        if (!trans_b) {
            /* ci += sum_p A(i,p) * B(p,:) — unit stride over B's rows */
            for (int64_t p = 0; p < k; p++) {
                real av = al * (trans_a ? a[p * m + i] : a[i * k + p]);
                const real *bp = b + p * n;
                for (int64_t j = 0; j < n; j++) ci[j] += av * bp[j];
            }
        } else {
            /* ci[j] += dot(A(i,:), B(:,j)) with B(:,j) a contiguous row of b */
            for (int64_t j = 0; j < n; j++) {
                const real *bj = b + j * k;
                real acc = 0;
                if (!trans_a) {
                    const real *ai = a + i * k;
                    for (int64_t p = 0; p < k; p++) acc += ai[p] * bj[p];
                } else {
                    for (int64_t p = 0; p < k; p++) acc += a[p * m + i] * bj[p];
                }
                ci[j] += al * acc;
            }
        }
    }
}
