/* gg_internal.h — what the kernel sources share and the ABI does not export: the thread
 * setting, the parallel-size threshold, and the real-type template used to compile every
 * kernel file twice (kernels_f32.c and kernels_f64.c define GG_REAL_F32 or GG_REAL_F64). */
#ifndef GG_INTERNAL_H
#define GG_INTERNAL_H
#include <stdint.h>
#include "graphgrad.h"

/* Threads the parallel kernels use (the only global of the core; see program.c). */
int gg_threads(void);

/* Below this many elements a kernel runs serially: thread start-up costs more than it saves. */
#define GG_PARALLEL_MIN 32768

#endif

/* The real-type template: each inclusion of this part re-binds `real` and the name suffix. */
#if defined(GG_REAL_F32)
typedef float real;
#define KERNEL(name) gg_##name##_f32
#elif defined(GG_REAL_F64)
typedef double real;
#define KERNEL(name) gg_##name##_f64
#endif
