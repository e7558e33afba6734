/* random.c — reproducible randomness inside a compiled step: the dropout mask. Each element's
 * uniform draw is a pure function of (seed, counter, element index) through the SplitMix64
 * mixer, so a mask needs no generator state, is the same on every thread count, and a NumPy
 * transcription (tests/op_cases.py) reproduces it exactly. Compiled through kernels_f*.c. */
#ifndef KERNEL
#error "compile random.c through kernels_f32.c or kernels_f64.c"
#endif

#ifndef GG_RANDOM_MIX
#define GG_RANDOM_MIX
/* SplitMix64's output function: a bijective mix of a 64-bit word */
static inline uint64_t gg_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
#endif

/* out is (n,): 0 where the draw u_i < rate, else 1 / (1 - rate); u_i in [0, 1) from (seed, counter, i) */
void KERNEL(dropout_mask)(real *out, int64_t n, uint64_t seed, uint64_t counter, double rate) {
    uint64_t key = gg_mix64(seed ^ gg_mix64(counter));
    real keep = (real)(1.0 / (1.0 - rate));
    GG_PARALLEL_FOR(n >= GG_PARALLEL_MIN,
        for (int64_t i = 0; i < n; i++) {
            double u = (double)(gg_mix64(key + (uint64_t)i) >> 11) * 0x1.0p-53;
            out[i] = u < rate ? (real)0 : keep;
        }
    );
}
