/* metrics.c — what the training loop measures besides the loss: the number of correctly
 * classified rows of a batch (accuracy), counted inside the epoch loop so that fit reports
 * accuracy without fetching predictions to Python. Compiled through kernels_f*.c. */
#ifndef KERNEL
#error "compile metrics.c through kernels_f32.c or kernels_f64.c"
#endif

/* index of the largest of x[0..n) (the first one on ties; NaN never wins) */
static int64_t KERNEL(argmax_row)(const real *x, int64_t n) {
    int64_t best = 0;
    for (int64_t j = 1; j < n; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

/* pred is (rows, cols); target is (rows, cols) or labels is (rows,) */
int64_t KERNEL(count_correct)(const real *pred, const real *target, const int64_t *labels, int64_t rows,
                              int64_t cols, double threshold) {
    int64_t correct = 0;
    for (int64_t i = 0; i < rows; i++) {
        const real *p = pred + i * cols;
        int64_t guess, truth;
        if (cols == 1) {
            guess = (double)p[0] > threshold;
            truth = labels ? labels[i] : (double)target[i] > 0.5;
        } else {
            guess = KERNEL(argmax_row)(p, cols);
            truth = labels ? labels[i] : KERNEL(argmax_row)(target + i * cols, cols);
        }
        correct += guess == truth;
    }
    return correct;
}
