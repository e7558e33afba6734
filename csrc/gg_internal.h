/* gg_internal.h — what the kernel sources share and the ABI does not export: the thread
 * setting, the parallel-size threshold, and the real-type template used to compile every
 * kernel file twice (kernels_f32.c and kernels_f64.c define GG_REAL_F32 or GG_REAL_F64). */
#ifndef GG_INTERNAL_H
#define GG_INTERNAL_H
#include <stdint.h>
#include "graphgrad.h"

/* Threads the parallel kernels use (the only global of the core; see program.c). */
int gg_threads(void);

/* GG_OK when a GG_OP_FUSED dims list is one fused.c can run: counts in range, every op a fusable row of
 * the op table, every operand ref naming an input present (bit k of `present`: in[k] is given), an
 * earlier op's result or the head's product; else GG_ERR_UNKNOWN_OPCODE or GG_ERR_BAD_INSTR (program.c). */
int gg_fused_list_status(const int64_t *dims, uint32_t present);

/* Below this many elements a kernel runs serially: thread start-up costs more than it saves. */
#define GG_PARALLEL_MIN 32768

/* An OpenMP region costs about a microsecond even when its if() clause is false (measured:
 * ~2 µs on this busy 2-core machine against ~14 ns for a guarded 4-element loop), so a small
 * loop must not enter one at all. These run LOOP threaded only when COND holds and more than
 * one thread is allowed, and as the plain loop otherwise. */
#define GG_THREADED(cond) ((cond) && gg_threads() > 1)
#define GG_PARALLEL_FOR(cond, ...)                                                      \
    do {                                                                                \
        if (GG_THREADED(cond)) {                                                        \
            _Pragma("omp parallel for num_threads(gg_threads()) schedule(static)")      \
            __VA_ARGS__                                                                 \
        } else {                                                                        \
            __VA_ARGS__                                                                 \
        }                                                                               \
    } while (0)
/* the same for a loop that sums into a variable named acc */
#define GG_PARALLEL_SUM(cond, ...)                                                      \
    do {                                                                                \
        if (GG_THREADED(cond)) {                                                        \
            _Pragma("omp parallel for num_threads(gg_threads()) reduction(+ : acc)")    \
            __VA_ARGS__                                                                 \
        } else {                                                                        \
            __VA_ARGS__                                                                 \
        }                                                                               \
    } while (0)

#endif

/* The real-type template: each inclusion of this part re-binds `real` and the name suffix. */
#if defined(GG_REAL_F32)
typedef float real;
#define KERNEL(name) gg_##name##_f32
#elif defined(GG_REAL_F64)
typedef double real;
#define KERNEL(name) gg_##name##_f64
#endif
