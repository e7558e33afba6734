/* reduce.c — sum (and mean, through its scale) over any set of axes, and expand, its adjoint:
 * the broadcast of a reduced tensor back to the full shape. Compiled through kernels_f*.c. */
#ifndef KERNEL
#error "compile reduce.c through kernels_f32.c or kernels_f64.c"
#endif
#include <string.h>

/* x is in_shape[rank]; out has out_n elements; out_stride is 0 on reduced axes. */
void KERNEL(sum)(real *out, int64_t out_n, const real *x, int32_t rank, const int64_t *in_shape,
                 const int64_t *out_stride, double scale) {
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= in_shape[d];
    if (out_n == 1) {
        /* full reduction: accumulate in double for accuracy, in parallel when large */
        double acc = 0.0;
#pragma omp parallel for num_threads(gg_threads()) if (total >= GG_PARALLEL_MIN) reduction(+ : acc)
        for (int64_t i = 0; i < total; i++) acc += (double)x[i];
        out[0] = (real)(acc * scale);
        return;
    }
    memset(out, 0, (size_t)out_n * sizeof(real));
    if (total == 0) {
        /* an empty sum is 0; an empty mean is 0 * NaN = NaN, as in NumPy */
        for (int64_t i = 0; i < out_n; i++) out[i] = (real)(0.0 * scale);
        return;
    }
    int64_t inner = in_shape[rank - 1], inner_stride = out_stride[rank - 1];
    int64_t outer = total / inner;
    int64_t idx[32] = {0};
    int64_t off = 0;
    for (int64_t o = 0; o < outer; o++) {
        const real *row = x + o * inner;
        if (inner_stride == 0) {
            double acc = 0.0;
            for (int64_t i = 0; i < inner; i++) acc += (double)row[i];
            out[off] += (real)acc;
        } else {
            real *dst = out + off;
            for (int64_t i = 0; i < inner; i++) dst[i * inner_stride] += row[i];
        }
        /* odometer step over the outer axes */
        for (int32_t d = rank - 2; d >= 0; d--) {
            idx[d]++;
            off += out_stride[d];
            if (idx[d] < in_shape[d]) break;
            off -= idx[d] * out_stride[d];
            idx[d] = 0;
        }
    }
    if (scale != 1.0)
        for (int64_t i = 0; i < out_n; i++) out[i] = (real)(out[i] * scale);
}

/* out is out_shape[rank]; g is read with g_stride (0 on the axes it was reduced over). */
void KERNEL(expand)(real *out, const real *g, int32_t rank, const int64_t *out_shape,
                    const int64_t *g_stride, double scale) {
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= out_shape[d];
    if (total == 0) return;
    if (rank == 0) { out[0] = (real)(g[0] * scale); return; }
    int64_t inner = out_shape[rank - 1], inner_stride = g_stride[rank - 1];
    int64_t outer = total / inner;
    real s = (real)scale;
#pragma omp parallel for num_threads(gg_threads()) if (total >= GG_PARALLEL_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        int64_t off = 0, rem = o;
        for (int32_t d = rank - 2; d >= 0; d--) {
            off += (rem % out_shape[d]) * g_stride[d];
            rem /= out_shape[d];
        }
        real *dst = out + o * inner;
        const real *src = g + off;
        for (int64_t i = 0; i < inner; i++) dst[i] = s * src[i * inner_stride];
    }
}
